"""The recipe digest in every result key: it changes with any reader, prompt or parser, and only then."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import aris
from aris.runner import recipe_digest

SRC = Path(aris.__file__).parent


def _digest_in(src_root: Path, task: str) -> str:
    """The digest a fresh process computes with the package found at ``src_root`` (nothing else imported)."""
    env = {**os.environ, "PYTHONPATH": str(src_root)}
    code = f"import aris; from aris.runner import recipe_digest; print(aris.__file__); print(recipe_digest({task!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    where, digest = out.stdout.split()
    assert Path(where).is_relative_to(src_root)
    return digest


def test_the_digest_does_not_depend_on_what_this_process_imported() -> None:
    for name in ("aris.inputs.series", "aris.tasks.volume", "aris.tasks.yesno"):  # not in the fresh process
        importlib.import_module(name)

    assert _digest_in(SRC.parent, "text-qa") == recipe_digest("text-qa")


def test_a_changed_prompt_template_or_reader_changes_the_digest(tmp_path: Path) -> None:
    # report_prompts.py (the benchmark prompts) and the readers were outside the digest: an edited
    # template served the answers its old wording had produced.
    copy = tmp_path / "src"
    shutil.copytree(SRC, copy / "aris", ignore=shutil.ignore_patterns("__pycache__"))
    before = _digest_in(copy, "text-qa")
    prompts = copy / "aris" / "tasks" / "report_prompts.py"
    prompts.write_text(prompts.read_text().replace("no more than a few words", "ONE WORD", 1))
    edited = _digest_in(copy, "text-qa")
    assert edited != before
    series = copy / "aris" / "inputs" / "series.py"
    series.write_text(series.read_text() + "\n# a reader change\n")
    assert _digest_in(copy, "text-qa") not in (before, edited)
