"""Library entry points: ``aris.run("cxr-report", ["chest.dcm"], engine=...)``.

The same path as ``aris run``: read each input the way the task's recipe needs it, then
``Task.run``. Pass an engine to reuse a loaded model across calls; without one, an engine is built
from settings (flags > ``ARIS_*`` > config file) and closed afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aris.config import ArisSettings
from aris.engines.base import Engine
from aris.inputs.base import PreparedInput
from aris.result import Result
from aris.tasks import Task, get_task
from aris.tasks.base import OnToken
from aris.types import GenerationParams

InputLike = str | Path | PreparedInput | Sequence[str | Path]


def prepare_inputs(
    task: Task, inputs: Sequence[InputLike], *, kind: str | None = None
) -> list[PreparedInput]:
    """Read paths with the task's kind and options (e.g. ``pad_square`` for localization).

    A list of paths inside ``inputs`` is one input (the files of one DICOM series).
    """
    from aris.inputs import read

    out: list[PreparedInput] = []
    for item in inputs:
        if isinstance(item, PreparedInput):
            out.append(item)
        else:
            out.append(read(item, kind=kind or task.read_kind, **task.read_options))
    return out


def run(
    task: str | Task,
    inputs: Sequence[InputLike] | InputLike = (),
    *,
    engine: Engine | None = None,
    question: str | None = None,
    kind: str | None = None,
    settings: ArisSettings | None = None,
    params: GenerationParams | None = None,
    max_new_tokens: int | None = None,
    think: bool | None = None,
    on_token: OnToken | None = None,
    **options: Any,
) -> Result:
    """Run a clinical task on files (or prepared inputs) and return its validated Result.

    ``options`` are the task's own (``choices=``, ``labels=``, ``organ=``, ``procedure=``,
    ``out_dir=``, ``mode=`` ...); an unknown one is a ``ConfigError``. A reply that fails validation
    even after the one repair comes back as a Result with ``errors``, not as an exception.
    """
    t = get_task(task) if isinstance(task, str) else task
    if isinstance(inputs, str | Path | PreparedInput):
        inputs = [inputs]
    t0 = time.perf_counter()
    prepared = prepare_inputs(t, list(inputs), kind=kind)
    prepare_s = time.perf_counter() - t0
    if think is not None:
        options["think"] = think
    own = engine is None
    if engine is None:
        from aris.engines import load_engine

        engine = load_engine(settings or ArisSettings.from_flags())
    if (
        params is None
        and max_new_tokens is None
        and settings is not None
        and "max_new_tokens" in settings.model_fields_set
    ):
        max_new_tokens = settings.max_new_tokens  # set by flag, env or file; else the task's own default
    if params is None and max_new_tokens is not None:
        params = GenerationParams(max_new_tokens=max_new_tokens)
    try:
        result = t.run(engine, prepared, question, options=options, params=params, on_token=on_token)
    finally:
        if own:
            engine.close()
    result.timings.prepare_s += prepare_s
    result.timings.total_s += prepare_s
    return result
