"""Clinical tasks by name. A task module is imported only when its task is chosen."""

from __future__ import annotations

from aris.registry import resolve
from aris.tasks.base import Task

TASKS: dict[str, str] = {
    "cxr-report": "aris.tasks.cxr:CxrReport",
    "cxr-compare": "aris.tasks.cxr:CxrCompare",
    "cxr-localize": "aris.tasks.localize:CxrLocalize",
    "ct": "aris.tasks.volume:CtTask",
    "mri": "aris.tasks.volume:MriTask",
    "wsi": "aris.tasks.wsi:WsiDescribe",
    "classify": "aris.tasks.classify:Classify",
    "vqa": "aris.tasks.qa:Vqa",
    "text-qa": "aris.tasks.qa:TextQa",
    "lab-extract": "aris.tasks.lab:LabExtract",
    "ehr-summary": "aris.tasks.ehr:EhrSummary",
    "ehr-ask": "aris.tasks.ehr:EhrAsk",
    "trends": "aris.tasks.trends:Trends",
    "intake": "aris.tasks.intake:Intake",
}


def get_task(name: str) -> Task:
    """A task instance by name; ``ConfigError`` listing the names when unknown."""
    cls = resolve(TASKS, name, "task")
    return cls()  # type: ignore[no-any-return]


def list_tasks() -> list[Task]:
    return [get_task(name) for name in TASKS]


__all__ = ["TASKS", "Task", "get_task", "list_tasks"]
