"""`aris demo` end to end, as a newcomer runs it: the installed entry point in a fresh process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from aris.notice import DEMO_NOTICE, NOTICE


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_demo_runs_the_real_path_on_the_bundled_radiograph(tiny_vlm: Path, test_cache: Path) -> None:
    aris = shutil.which("aris", path=str(Path(sys.executable).parent)) or "aris"
    env = {
        **os.environ,
        "ARIS_HOME": str(test_cache),
        "COLUMNS": "200",
    }  # the tiny model is already built there
    env.pop("ARIS_CONFIG", None)
    proc = subprocess.run(
        [aris, "demo", "--max-new-tokens", "16"], env=env, capture_output=True, text=True, timeout=300
    )
    out = _flat(proc.stdout + proc.stderr)
    assert proc.returncode == 0, out
    assert "tiny-gemma3-vlm" in out
    assert _flat(DEMO_NOTICE) in out
    assert _flat(NOTICE) in out
    assert "engine transformers" in out
    assert "prompt sha256" in out


def test_demo_with_a_missing_model_says_how_to_get_it(test_cache: Path) -> None:
    env = {**os.environ, "ARIS_HOME": str(test_cache), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "aris", "demo", "--model", "google/medgemma-1.5-4b-it"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "aris pull google/medgemma-1.5-4b-it" in _flat(proc.stderr + proc.stdout)
