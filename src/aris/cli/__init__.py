"""``aris`` command line. Each module below registers its commands on :data:`aris.cli.app.app`."""

from __future__ import annotations

import sys

import aris.cli.batch  # noqa: F401  (registers `aris batch`)
import aris.cli.eval  # (registers `aris eval`)
import aris.cli.finetune  # noqa: F401  (registers `aris finetune`)
from aris.cli import ask, demo, mcp, models, prepare, serve  # noqa: F401  (registration by import)
from aris.cli import run  # noqa: F401  (aris run: clinical tasks)
from aris.cli.app import app, err_console
from aris.errors import ArisError


def main() -> None:
    try:
        app()
    except ArisError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
