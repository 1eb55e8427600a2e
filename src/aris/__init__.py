"""Aris: a private, self-hosted workbench for Google's MedGemma models.

Every answer is preliminary: not for diagnosis or treatment without a clinician's review.
"""

from __future__ import annotations

from typing import Any

from aris.notice import NOTICE

__version__ = "0.1.0"


def load_engine(**settings: Any):  # type: ignore[no-untyped-def]
    """An engine from settings keywords (engine=, model=, mmproj=, base_url=, ...), flags > env > file."""
    from aris.config import ArisSettings
    from aris.engines import load_engine as _load

    return _load(ArisSettings.from_flags(**settings))


def read(path: Any, kind: str = "auto", **options: Any):  # type: ignore[no-untyped-def]
    """A file, folder or zip as the model-ready input MedGemma was trained on."""
    from aris.inputs import read as _read

    return _read(path, kind=kind, **options)


def run(*args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
    """Run a clinical task: ``aris.run("cxr-report", ["chest.dcm"], engine=...)``."""
    from aris.api import run as _run

    return _run(*args, **kwargs)


__all__ = ["NOTICE", "__version__", "load_engine", "read", "run"]
