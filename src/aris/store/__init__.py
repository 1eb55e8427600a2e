"""The job store: jobs, items, results and the audit trail (SQLite by default, PostgreSQL by URL)."""

from aris.store.db import JobBusyError, JobNotFoundError, default_url
from aris.store.models import ItemStatus, JobStatus
from aris.store.store import Store
from aris.store.views import AuditView, ItemView, JobView, NewItem

__all__ = [
    "AuditView",
    "ItemStatus",
    "ItemView",
    "JobBusyError",
    "JobNotFoundError",
    "JobStatus",
    "JobView",
    "NewItem",
    "Store",
    "default_url",
]
