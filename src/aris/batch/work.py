"""The two steps of an item, as plain functions a thread pool or a Ray worker can run.

Neither touches the store: they return small outcome dicts, and only the driver records them, so a
killed worker loses nothing that a resume cannot redo. They never raise for a bad item; an exception
escaping them means the worker itself broke.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aris.context import Models
from aris.errors import ArisError, BudgetError, ConfigError, InputError, OutputError, PromptError

# Imported here, in the driver's thread, not inside a worker: two preparing threads importing it at once
# can see a half-initialised module.
from aris.runner import prepare_inputs, run_task

logger = logging.getLogger(__name__)

# Errors that belong to the item (its file, its prompt, its reply): another engine would fail the same.
ITEM_ERRORS: tuple[type[BaseException], ...] = (
    InputError,
    BudgetError,
    PromptError,
    OutputError,
    ConfigError,
)


@dataclass(frozen=True)
class ItemSpec:
    """What a worker needs to know about an item (no store rows cross process boundaries)."""

    item_id: int
    key: str
    input_ref: str
    question: str | None = None
    kind: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, Any] = field(default_factory=dict)

    @property
    def paths(self) -> list[Path]:
        return [Path(p) for p in self.input_ref.split("|") if p]


def _error(e: BaseException) -> str:
    # ArisError messages are written for the user (an InputError starts with the file); others are bugs
    # or library errors, where the class name is the useful part.
    return str(e) if isinstance(e, ArisError) else f"{type(e).__name__}: {e}"


def prepare_item(spec: ItemSpec, task_name: str) -> tuple[dict[str, Any], list[Any] | None]:
    """Read the item's inputs the way the task wants them. Returns (outcome, prepared inputs or None)."""
    t0 = time.perf_counter()
    try:
        inputs = prepare_inputs(task_name, spec.paths, kind=spec.kind, read_options=spec.options)
    except Exception as e:
        dt = time.perf_counter() - t0
        logger.info("item %s: preparation failed (%s)", spec.key[:12], type(e).__name__)
        return {
            "ok": False,
            "error": _error(e),
            "error_type": type(e).__name__,
            "prepare_s": dt,
            "pid": os.getpid(),
        }, None
    return {"ok": True, "prepare_s": time.perf_counter() - t0, "pid": os.getpid()}, inputs


def generate_item(
    models: Models,
    task_name: str,
    spec: ItemSpec,
    inputs: list[Any],
    gen_params: dict[str, Any] | None,
    pace_s: float = 0.0,
) -> dict[str, Any]:
    """Run the task on prepared inputs. ``item_error`` False means the engine/endpoint failed, not the item.

    ``pace_s`` is a floor on the time an item takes, so tests can stop a fast (fake) batch half-way.
    """
    t0 = time.perf_counter()
    try:
        result = run_task(
            task_name,
            inputs,
            models=models,
            question=spec.question,
            options=spec.task_options,
            max_new_tokens=(gen_params or {}).get("max_new_tokens"),
        )
    except ITEM_ERRORS as e:
        return {"ok": False, "item_error": True, "error": _error(e), "error_type": type(e).__name__}
    except Exception as e:
        logger.warning("item %s: engine failed (%s)", spec.key[:12], type(e).__name__)
        return {"ok": False, "item_error": False, "error": _error(e), "error_type": type(e).__name__}
    left = pace_s - (time.perf_counter() - t0)
    if left > 0:
        time.sleep(left)
    return {
        "ok": True,
        "result": result.model_dump(mode="json"),
        "generate_s": time.perf_counter() - t0,
        "pid": os.getpid(),
    }
