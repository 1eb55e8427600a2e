"""Library entry point: ``aris.run("cxr-report", ["chest.dcm"], engine=...)``.

A thin front end over :func:`aris.runner.run_task`, the path every front end takes. Pass an engine to
reuse a loaded model across calls; without one, the models a task needs are built from settings
(flags > ``ARIS_*`` > config file) and closed afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aris.config import ArisSettings
from aris.context import Models
from aris.engines.base import Engine
from aris.result import Result
from aris.runner import InputLike, prepare_inputs, run_task
from aris.tasks import Task
from aris.tasks.base import OnToken


def run(
    task: str | Task,
    inputs: Sequence[InputLike] | InputLike = (),
    *,
    engine: Engine | Models | None = None,
    question: str | None = None,
    kind: str | None = None,
    settings: ArisSettings | None = None,
    max_new_tokens: int | None = None,
    think: bool | None = None,
    on_token: OnToken | None = None,
    files_dir: str | Path | None = None,
    **options: Any,
) -> Result:
    """Run a clinical task on files (or prepared inputs) and return its validated Result.

    ``options`` are the task's own (``choices=``, ``labels=``, ``findings=``, ``organ=``, ``mode=`` ...);
    an unknown one is a ``ConfigError``. A reply that fails validation even after the one repair comes
    back as a Result with ``errors``, not as an exception.
    """
    return run_task(
        task,
        inputs,
        models=engine,
        settings=settings,
        question=question,
        kind=kind,
        options=options,
        max_new_tokens=max_new_tokens,
        think=think,
        on_token=on_token,
        files_dir=Path(files_dir) if files_dir is not None else None,
    )


__all__ = ["prepare_inputs", "run"]
