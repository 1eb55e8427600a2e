"""Fixtures for the radiology readers: CT/MR series built from real pixels by scripts/make_volumes.py.

Volumes here are small (32x32, a few dozen slices) to keep the suite fast; the 300-slice, 512x512
series is only built by bench/prep_ct.py.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_make_volumes() -> ModuleType:
    name = "make_volumes"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "make_volumes.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def mv() -> ModuleType:
    """scripts/make_volumes.py as a module."""
    return _load_make_volumes()


@pytest.fixture(scope="session")
def build(mv: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``build(name, **spec)`` writes a series once per session and returns its BuiltSeries."""
    cache: dict[str, Any] = {}

    def _build(name: str, **spec: Any) -> Any:
        if name not in cache:
            spec.setdefault("size", 32)
            cache[name] = mv.make_series(tmp_path_factory.mktemp(name), mv.SeriesSpec(**spec))
        return cache[name]

    return _build


@pytest.fixture(scope="session")
def study(mv: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A folder with the main series, a repeat acquisition, a DERIVED reformat, a localizer, a
    duplicate InstanceNumber and clutter (SR, empty, text named .dcm, truncated copy)."""
    return mv.make_study(
        tmp_path_factory.mktemp("study"), mv.SeriesSpec(n_slices=24, size=32, tilt=5.0, inplane_jitter=2.0)
    )
