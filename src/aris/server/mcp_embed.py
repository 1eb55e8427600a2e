"""MedSigLIP image search as an MCP tool (``search_images``); zero-shot and probes are reached through
``run_task`` (tasks ``zero-shot`` and ``probe``) like every task."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aris.errors import ArisError

if TYPE_CHECKING:
    from aris.context import Models
from aris.notice import NOTICE


def register(srv: Any, models: Models, *, roots: list[Path] | None, max_bytes: int) -> None:
    """Add ``search_images`` to ``srv``; over HTTP it reads query files only under ``roots``."""
    from aris.embed.service import EmbedService
    from aris.server.mcp_tools import _check_path, _tool_errors

    svc = EmbedService(models)  # the server's embedder (its jobs' one); indexes opened on first use

    @srv.tool()  # type: ignore[untyped-decorator]
    @_tool_errors
    async def search_images(
        text: str | None = None,
        path: str | None = None,
        k: int = 10,
        index: str = "default",
        kind: str = "auto",
    ) -> dict[str, Any]:
        """Search the indexed image archive (aris index add) by text or by an image file; most similar first."""
        import asyncio

        return await asyncio.to_thread(_search, text, path, k, index, kind)

    def _search(text: str | None, path: str | None, k: int, index: str, kind: str) -> dict[str, Any]:
        if (text is None) == (path is None):
            raise ArisError("give exactly one of text or path")
        if not 1 <= k <= 100:
            raise ArisError("k must be between 1 and 100")
        ix = svc.index(index)
        embedder = svc.embedder()
        if text is not None:
            hits = ix.search_text(text, embedder, k)
        else:
            from aris.inputs import read

            prepared = read(_check_path(str(path), roots, max_bytes), kind=kind)
            hits = ix.search_image(prepared, embedder, svc.store(), k)
        return {"index": index, "results": [h.public() for h in hits], "notice": NOTICE}
