"""``aris`` command line. Each module below registers its commands on :data:`aris.cli.app.app`."""

from __future__ import annotations

import sys

from aris.cli import ask, batch, demo, embed, eval, finetune, mcp, models, node, prepare, run, serve  # noqa: F401  (registration by import)
from aris.cli.app import app, err_console
from aris.errors import ArisError


def main() -> None:
    try:
        app()
    except ArisError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
