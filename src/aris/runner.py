"""THE task path. Every front end (CLI ``run`` and ``demo``, the library, server jobs, MCP, batch and
eval) runs a task through :func:`run_task`, so a fix here lands everywhere at once::

    resolve task -> check options -> read inputs (the task's reader settings) -> settle generation
    settings (the task's own defaults unless the caller overrides) -> Task.run (prompt, constrained
    decoding, parse, repair once) -> Result with timings

Nothing else calls a task's ``run``. Batch splits the path in two (:func:`prepare_inputs` on one worker,
:func:`run_task` on prepared inputs on another) and the store records the Result
(:mod:`aris.store`); the halves are the same functions.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aris.config import ArisSettings
from aris.context import Models, RunContext
from aris.engines.base import Engine
from aris.inputs.base import PreparedInput
from aris.result import Result
from aris.tasks import Task, get_task
from aris.tasks.base import OnToken, TaskOptions
from aris.types import GenerationParams

logger = logging.getLogger(__name__)

# A path, a prepared input, or a list of paths that together are ONE input (the files of a series).
InputLike = str | Path | PreparedInput | Sequence[str | Path]


def resolve_task(task: str | Task) -> Task:
    return get_task(task) if isinstance(task, str) else task


def check_options(task: str | Task, options: Mapping[str, Any] | TaskOptions | None) -> TaskOptions:
    """The task's options validated against its ``Options`` model: a bad one fails before any work.

    ``ConfigError`` names the task and the field (``task ct: findings: ...``).
    """
    t = resolve_task(task)
    validated: TaskOptions = t.opts(options if isinstance(options, TaskOptions) else dict(options or {}))
    return validated


def _as_list(inputs: Sequence[InputLike] | InputLike) -> list[InputLike]:
    if isinstance(inputs, str | Path | PreparedInput):
        return [inputs]
    return list(inputs)


def prepare_inputs(
    task: str | Task,
    inputs: Sequence[InputLike] | InputLike,
    *,
    kind: str | None = None,
    read_options: Mapping[str, Any] | None = None,
) -> list[PreparedInput]:
    """Read each input the way the task's recipe needs it.

    The kind is the caller's explicit ``kind`` or else the task's ``read_kind``; the task's
    ``read_options`` (e.g. ``pad_square`` for localization) apply when reading with the task's own kind,
    and ``read_options`` from the caller are added on top. Several paths given to a task that takes one
    input are the files of that one input (a DICOM series, a DICOM-SM pyramid).
    """
    from aris.inputs import read

    t = resolve_task(task)
    items = _as_list(inputs)
    if t.n_inputs[1] == 1 and len(items) > 1 and all(isinstance(i, str | Path) for i in items):
        items = [[Path(str(i)) for i in items]]
    chosen = kind if kind and kind != "auto" else t.read_kind
    opts = dict(t.read_options) if chosen == t.read_kind else {}
    opts.update(read_options or {})
    out: list[PreparedInput] = []
    for item in items:
        if isinstance(item, PreparedInput):
            out.append(item)
        else:
            out.append(read(item, kind=chosen, **opts))
    return out


def generation_params(
    task: str | Task,
    *,
    max_new_tokens: int | None = None,
    think: bool | None = None,
    settings: ArisSettings | None = None,
) -> GenerationParams:
    """Decoding settings: the task's own unless the caller overrides.

    ``settings.max_new_tokens`` counts only when it was set (flag, ``ARIS_*`` or config file), so a
    lab report keeps ``lab-extract``'s 2048 whichever front end it comes through.
    """
    t = resolve_task(task)
    if max_new_tokens is None and settings is not None and "max_new_tokens" in settings.model_fields_set:
        max_new_tokens = settings.max_new_tokens
    return GenerationParams(
        max_new_tokens=max_new_tokens or t.max_new_tokens,
        think=t.think if think is None else think,
    )


def recipe_digest(task: str | Task) -> str:
    """A digest of the code that turns inputs into this task's prompt and reads its reply.

    Part of every result key: a changed reader, prompt or parser must not serve answers made with
    the old one (the key is made before the input is read, from the file's bytes).
    """
    return _recipe_digest(type(resolve_task(task)))


# What turns a file into the model's prompt and its reply into a result, besides the task's own class:
# the readers, the prompt layouts (``tasks/report_prompts.py``), parsing, the thought split and generate.
RECIPE_SOURCES = ("tasks", "inputs", "prompt.py", "thinking.py", "generate.py")


@functools.cache
def _recipe_digest(cls: type) -> str:
    """sha256 over the source files themselves (read from disk, so the digest never depends on which
    modules this process happened to import), plus any module the task class comes from outside them."""
    import inspect

    root, shared = _shared_sources()
    own: set[Path] = set()
    for c in cls.__mro__:
        if c.__module__ not in ("builtins", "abc"):
            try:
                source = inspect.getsourcefile(c)
            except TypeError:
                source = None
            if source and Path(source) not in shared:
                own.add(Path(source))
    return _digest_files(root, {**shared, **_read_sources(root, own)})


@functools.cache
def _shared_sources() -> tuple[Path, dict[Path, bytes]]:
    """The recipe files every task shares, read once per process."""
    import aris

    root = Path(aris.__file__).parent
    files: set[Path] = set()
    for name in RECIPE_SOURCES:
        files |= set((root / name).rglob("*.py")) if (root / name).is_dir() else {root / name}
    return root, _read_sources(root, files)


def _read_sources(root: Path, files: set[Path]) -> dict[Path, bytes]:
    import aris

    out: dict[Path, bytes] = {}
    for path in files:
        try:
            out[path] = path.read_bytes()
        except OSError:  # no source (a frozen build): the file's name and Aris's version
            out[path] = f"{_label(root, path)}@{aris.__version__}".encode()
    return out


def _label(root: Path, path: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else path.name


def _digest_files(root: Path, sources: dict[Path, bytes]) -> str:
    import hashlib

    h = hashlib.sha256()
    for path in sorted(sources):
        h.update(_label(root, path).encode() + b"\0" + sources[path] + b"\0")
    return h.hexdigest()


def run_task(
    task: str | Task,
    inputs: Sequence[InputLike] | InputLike = (),
    *,
    models: Models | Engine | None = None,
    settings: ArisSettings | None = None,
    question: str | None = None,
    kind: str | None = None,
    read_options: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | TaskOptions | None = None,
    max_new_tokens: int | None = None,
    think: bool | None = None,
    on_token: OnToken | None = None,
    on_prepared: Callable[[list[PreparedInput]], None] | None = None,
    cancel: threading.Event | None = None,
    files_dir: Path | None = None,
    ask: Callable[[str], str | None] | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> Result:
    """Run a clinical task on files (or prepared inputs) and return its validated Result.

    Parameters
    ----------
    models
        The engine to use, or a :class:`~aris.context.Models` holding the models by role. Without one,
        models load from ``settings`` on first use and are closed afterwards.
    options
        The task's own options (its ``Options`` model); an unknown or invalid one is a ``ConfigError``
        naming the field, raised before anything is read or loaded.
    max_new_tokens, think
        Overrides; ``None`` keeps the task's defaults (see :func:`generation_params`).
    on_token
        Each streamed piece of the reply, ``(kind, text)`` with kind ``"thought"`` or ``"answer"``.
    on_prepared
        Called with the prepared inputs before generation (the server shows them to the user).
    cancel
        Set it to stop the run: the next streamed piece raises :class:`~aris.context.Cancelled` and the
        engine's stream is closed.
    files_dir
        Where tasks that write files (overlays) put them; chosen by the front end, never a client.

    A reply that fails validation even after the one repair comes back as a Result with ``errors``,
    not as an exception.
    """
    t = resolve_task(task)
    opts = check_options(t, options)
    if think is not None:
        opts = opts.model_copy(update={"think": think})
    t0 = time.perf_counter()
    prepared = prepare_inputs(t, inputs, kind=kind, read_options=read_options)
    prepare_s = time.perf_counter() - t0
    if on_prepared is not None:
        on_prepared(prepared)
    own = not isinstance(models, Models)
    box = models if isinstance(models, Models) else Models(settings, generator=models)
    ctx = RunContext(models=box, files_dir=files_dir, cancel=cancel, ask=ask, on_event=on_event)
    params = generation_params(t, max_new_tokens=max_new_tokens, think=opts.think, settings=settings)
    try:
        engine = box.generator if "generator" in t.needs else None
        result = t.run(
            engine,  # type: ignore[arg-type]  # a task that needs no generator ignores it
            prepared,
            question,
            options=opts,
            params=params,
            on_token=on_token,
            ctx=ctx,
        )
    finally:
        if own:
            box.close()
    result.timings.prepare_s += prepare_s
    result.timings.total_s += prepare_s
    logger.info(
        "task %s: %d input(s), prompt %s, %.2fs",
        t.name,
        len(prepared),
        result.prompt_sha256[:12],
        result.timings.total_s,
    )
    return result


__all__ = [
    "InputLike",
    "check_options",
    "generation_params",
    "prepare_inputs",
    "recipe_digest",
    "resolve_task",
    "run_task",
]
