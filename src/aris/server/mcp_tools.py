"""Aris tasks as Model Context Protocol tools (official ``mcp`` SDK), over stdio or streamable HTTP.

Same readers, task recipes, validation and budget checks as the task API. Over HTTP, tools may only
read files under the configured roots: an agent holding the key must not read the whole disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from aris.errors import ArisError
from aris.notice import NOTICE
from aris.server.runner import EngineRunner, Returned


def _check_path(path: str, roots: list[Path] | None, max_bytes: int) -> Path:
    p = Path(path).expanduser().resolve()
    if roots is not None and not any(p.is_relative_to(r.resolve()) for r in roots):
        raise ArisError("that path is outside the folders this server lets MCP tools read (--mcp-root)")
    if not p.exists():
        raise ArisError(f"{path}: no such file or folder")
    size = p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    if size > max_bytes:
        raise ArisError(f"{path}: {size} bytes is over the {max_bytes} byte input limit")
    return p


def _tool_errors(fn: Any) -> Any:
    """Aris errors reach the agent as tool errors with their message (the SDK hides other exceptions)."""
    import functools
    import inspect

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except ArisError as e:
                raise ToolError(str(e)) from e

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ArisError as e:
            raise ToolError(str(e)) from e

    return wrapper


def build_mcp(runner: EngineRunner, *, roots: list[Path] | None, max_bytes: int) -> MCPServer:
    """The MCP server. ``roots=None`` (stdio, a local agent) reads any path the user can."""
    srv: MCPServer = MCPServer(
        name="aris",
        instructions=f"MedGemma clinical tasks on local files. {NOTICE}",
        log_level="WARNING",  # the SDK configures root logging when nothing else has
    )

    @srv.tool()
    @_tool_errors
    def list_tasks() -> list[dict[str, Any]]:
        """The clinical tasks Aris can run, with the input kinds each takes."""
        from aris.tasks import list_tasks as _list

        return [
            {"name": t.name, "description": t.description, "input_kinds": list(t.input_kinds)}
            for t in _list()
        ]

    @srv.tool()
    @_tool_errors
    def prepare_input(path: str, kind: str = "auto") -> dict[str, Any]:
        """Read a file, folder or zip into what MedGemma will see: kind, image labels, warnings, token cost."""
        from aris.inputs import read

        prepared = read(_check_path(path, roots, max_bytes), kind=kind)
        return {
            "kind": prepared.kind,
            "images": len(prepared.images),
            "labels": prepared.labels,
            "image_tokens": len(prepared.images) * runner.engine.capabilities.image_tokens,
            "warnings": prepared.provenance.warnings,
            "details": json.loads(json.dumps(prepared.provenance.details, default=str)),
        }

    @srv.tool()
    @_tool_errors
    async def run_task(
        task: str,
        paths: list[str],
        question: str | None = None,
        options: dict[str, Any] | None = None,
        kind: str = "auto",
        think: bool | None = None,
        max_new_tokens: int | None = None,
    ) -> dict[str, Any]:
        """Run a clinical task on local files; returns the validated result record with the notice."""
        from aris.runner import check_options, run_task

        check_options(task, options)  # a bad option is the agent's error now, not after reading files
        files = [_check_path(p, roots, max_bytes) for p in paths]

        def work(emit: Any) -> Any:
            return run_task(
                task,
                files,
                models=runner.engine,
                question=question,
                kind=kind,
                options=options,
                max_new_tokens=max_new_tokens,
                think=think,
            )

        async for item in runner.call(work):
            if isinstance(item, Returned):
                record: dict[str, Any] = json.loads(item.value.model_dump_json(exclude={"raw"}))
                return record
        raise ArisError("the task produced no result")

    from aris.server import mcp_embed

    mcp_embed.register(srv, roots=roots, max_bytes=max_bytes)
    return srv
