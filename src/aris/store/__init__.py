"""The job store: jobs, items, results and the audit trail (SQLite by default, PostgreSQL by URL)."""

from aris.store.models import ItemStatus, JobStatus
from aris.store.store import (
    AuditView,
    ItemView,
    JobBusyError,
    JobNotFoundError,
    JobView,
    NewItem,
    Store,
    default_url,
)

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
