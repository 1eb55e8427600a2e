"""Clinical tasks by name: one registration each. A task module is imported only when chosen.

A third-party task registers through the ``aris.tasks`` entry-point group
(``name = "package.module:TaskClass"``); it then shows in ``aris run --help``, the server's task list
and MCP's tools, and runs through :func:`aris.runner.run_task` like the built-ins.
"""

from __future__ import annotations

from aris.registry import Registry
from aris.tasks.base import Task

TASKS: Registry[type[Task]] = Registry("task")
TASKS.register("cxr-report", "aris.tasks.cxr:CxrReport")
TASKS.register("cxr-compare", "aris.tasks.cxr:CxrCompare")
TASKS.register("cxr-localize", "aris.tasks.localize:CxrLocalize")
TASKS.register("ct", "aris.tasks.volume:CtTask")
TASKS.register("mri", "aris.tasks.volume:MriTask")
TASKS.register("wsi", "aris.tasks.wsi:WsiDescribe")
TASKS.register("classify", "aris.tasks.classify:Classify")
TASKS.register("vqa", "aris.tasks.qa:Vqa")
TASKS.register("text-qa", "aris.tasks.qa:TextQa")
TASKS.register("lab-extract", "aris.tasks.lab:LabExtract")
TASKS.register("ehr-summary", "aris.tasks.ehr:EhrSummary")
TASKS.register("ehr-ask", "aris.tasks.ehr:EhrAsk")
TASKS.register("trends", "aris.tasks.trends:Trends")
TASKS.register("intake", "aris.tasks.intake:Intake")
TASKS.register("dictation-report", "aris.speech.dictation:DictationReport")
TASKS.register("zero-shot", "aris.embed.task:ZeroShot")
TASKS.register("probe", "aris.embed.task:ProbePredict")


def get_task(name: str) -> Task:
    """A task instance by name; ``ConfigError`` listing the names when unknown."""
    return TASKS.get(name)()


def list_tasks() -> list[Task]:
    return [get_task(name) for name in TASKS]


__all__ = ["TASKS", "Task", "get_task", "list_tasks"]
