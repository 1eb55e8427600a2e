"""Aris tasks as Model Context Protocol tools (official ``mcp`` SDK), over stdio or streamable HTTP.

Same readers, task recipes, validation and budget checks as the task API. Over HTTP, tools may only
read files under the configured roots: an agent holding the key must not read the whole disk.
"""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from aris.errors import ArisError
from aris.notice import NOTICE
from aris.server.auth import ANONYMOUS, Principal
from aris.server.runner import EngineRunner, Returned
from aris.tasks import TASKS

IMAGE_KINDS = frozenset({"cxr", "image", "ct", "mri", "wsi"})


def _caller(ctx: Context | None) -> Principal:
    """The key behind an HTTP call (set by the server's AuthGuard); stdio is the local user."""
    from aris.server.guard import PRINCIPAL

    request = None
    if ctx is not None:
        with contextlib.suppress(ValueError, AttributeError):
            request = ctx.request_context.request
    who = getattr(request, "scope", {}).get(PRINCIPAL) if request is not None else None
    return who if isinstance(who, Principal) else Principal(ANONYMOUS)


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


def build_mcp(
    runner: EngineRunner,
    *,
    roots: list[Path] | None,
    max_bytes: int,
    model_name: str | None = None,
    max_tokens: int | None = None,
    audit: Any = None,
) -> MCPServer:
    """The MCP server. ``roots=None`` (stdio, a local agent) reads any path the user can.

    Over HTTP, ``audit`` (:class:`aris.server.audit.Audit`) records each ``run_task`` with its key.
    """
    served = model_name or runner.engine.model_id
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
            "images": len(prepared.arrays),
            "labels": prepared.labels,
            "image_tokens": len(prepared.arrays) * runner.engine.capabilities.image_tokens,
            "warnings": prepared.provenance.warnings,
            "details": json.loads(json.dumps(prepared.provenance.details, default=str)),
        }

    async def run_task(
        task: str,
        paths: list[str],
        question: str | None = None,
        options: dict[str, Any] | None = None,
        kind: str = "auto",
        think: bool | None = None,
        max_new_tokens: int | None = None,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Run a clinical task on local files; returns the validated result record with the notice."""
        from aris.runner import check_options, run_task
        from aris.tasks import get_task

        who = _caller(ctx)
        if not who.may_run(task):
            raise ArisError(f"this API key may not run task {task}")
        t = get_task(task)  # an unknown task names the known ones
        check_options(t, options)  # a bad option is the agent's error now, not after reading files
        if max_new_tokens is not None and (
            max_new_tokens < 1 or (max_tokens and max_new_tokens > max_tokens)
        ):
            raise ArisError(f"max_new_tokens must be between 1 and {max_tokens or 'the model limit'}")
        wants_images = kind in IMAGE_KINDS or (
            kind == "auto" and bool(t.input_kinds) and set(t.input_kinds) <= IMAGE_KINDS
        )
        if wants_images and not runner.engine.capabilities.vision:
            raise ArisError(f"task {task} needs images and this server's model is text-only")
        files = [_check_path(p, roots, max_bytes) for p in paths]
        if audit is not None:
            await audit.record(who, "mcp.run_task", task=task)

        def work(emit: Any, cancel: threading.Event) -> Any:
            return run_task(
                t,
                files,
                models=runner.models,
                question=question,
                kind=kind,
                options=options,
                max_new_tokens=max_new_tokens,
                think=think,
                cancel=cancel,
            )

        async with contextlib.aclosing(runner.call(work)) as results:
            async for item in results:
                if isinstance(item, Returned):
                    record: dict[str, Any] = json.loads(item.value.model_dump_json(exclude={"raw"}))
                    record["model"] = served
                    return record
        raise ArisError("the task produced no result")

    # The tool's schema names the registered tasks (plugins included), so an agent sees its choices.
    run_task.__annotations__["task"] = Literal[tuple(TASKS.names())]
    srv.tool()(_tool_errors(run_task))

    from aris.server import mcp_embed

    mcp_embed.register(srv, runner.models, roots=roots, max_bytes=max_bytes)
    return srv
