"""Batch worklists: many inputs through one task, resumable, spread over engines or endpoints."""

from aris.batch.manifest import WorkItem, item_key, load_worklist, path_digest
from aris.batch.runner import BatchOptions, Progress, Summary, run_batch, run_job

__all__ = [
    "BatchOptions",
    "Progress",
    "Summary",
    "WorkItem",
    "item_key",
    "load_worklist",
    "path_digest",
    "run_batch",
    "run_job",
]
