"""``aris`` command line. Each module below registers its commands on :data:`aris.cli.app.app`."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import aris.cli.app as _app_module
from aris.errors import ArisError

# Importing the submodule bound the package attribute ``app`` to it; ``aris.cli.app`` has always meant
# the typer application with every command registered, so that name is served by __getattr__ below.
del globals()["app"]

COMMANDS = (
    "ask", "batch", "demo", "embed", "eval", "finetune", "mcp", "models", "node", "prepare", "run", "serve",
    "transcribe",
)  # fmt: skip
"""The command modules, registered by importing them."""

ALONE = ("prepare",)
"""Commands that run with only their own module loaded: ``aris prepare`` needs none of the settings,
engines and per-task flags the other modules build when imported (a third of a second of CPU, which is
a fifth of preparing a CT; bench/prep_ct.py)."""


def _register(names: tuple[str, ...] = COMMANDS) -> None:
    for name in names:
        importlib.import_module(f"aris.cli.{name}")


def __getattr__(name: str) -> Any:
    """``from aris.cli import app``: the application with every command registered."""
    if name in ("app", "err_console"):
        _register()
        value = getattr(_app_module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'aris.cli' has no attribute {name!r}")


def main() -> None:
    app, err_console = _app_module.app, _app_module.err_console
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command in ALONE:
        _register((command,))

        @app.callback()
        def _group() -> None:  # keeps the app a group: typer runs a lone command without its name
            """Aris: a private workbench for MedGemma."""

    else:
        _register()
    try:
        app()
    except ArisError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
