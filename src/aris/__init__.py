"""Aris: a private, self-hosted workbench for Google's MedGemma models.

Every answer is preliminary: not for diagnosis or treatment without a clinician's review.

The library API, typed::

    import aris
    engine = aris.load_engine(engine="llamacpp", model="medgemma.gguf", mmproj="mmproj.gguf")
    prepared = aris.read("series/", kind="ct")
    result = aris.run("ct", [prepared], engine=engine, findings=["hemorrhage"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aris.notice import NOTICE

if TYPE_CHECKING:
    from aris.context import Models
    from aris.engines.base import Engine
    from aris.inputs.base import PreparedInput
    from aris.result import Result
    from aris.runner import InputLike
    from aris.tasks.base import OnToken

__version__ = "0.1.0"


def load_engine(**settings: Any) -> Engine:
    """An engine from settings keywords (engine=, model=, mmproj=, base_url=, ...), flags > env > file."""
    from aris.config import ArisSettings
    from aris.engines import load_engine as _load

    return _load(ArisSettings.from_flags(**settings))


def read(path: str | Path | Sequence[str | Path], kind: str = "auto", **options: Any) -> PreparedInput:
    """A file, folder or zip as the model-ready input MedGemma was trained on."""
    from aris.inputs import read as _read

    return _read(path, kind=kind, **options)


def run(
    task: str,
    inputs: Sequence[InputLike] | InputLike = (),
    *,
    engine: Engine | Models | None = None,
    question: str | None = None,
    kind: str | None = None,
    max_new_tokens: int | None = None,
    think: bool | None = None,
    on_token: OnToken | None = None,
    **options: Any,
) -> Result:
    """Run a clinical task: ``aris.run("cxr-report", ["chest.dcm"], engine=...)``."""
    from aris.api import run as _run

    return _run(
        task,
        inputs,
        engine=engine,
        question=question,
        kind=kind,
        max_new_tokens=max_new_tokens,
        think=think,
        on_token=on_token,
        **options,
    )


__all__ = ["NOTICE", "__version__", "load_engine", "read", "run"]
