"""MedSigLIP over HTTP: ``POST /v1/embeddings`` (OpenAI's shape) and ``POST /v1/index/search``.

``attach(app)`` adds the routes (behind the app's API key like the rest of ``/v1``) and closes the
process's embedder with the app. Zero-shot and probes are tasks: they go through the job API
(``POST /v1/jobs`` with ``task: "zero-shot"``) like every other task.

Request and response shapes::

    POST /v1/embeddings
      {"model": "...", "input": "text" | ["text", ...], "encoding_format": "float" | "base64",
       "modality": "text" | "image"}          # image inputs are data:image/...;base64 URLs
      -> {"object": "list", "model": "...", "data": [{"object": "embedding", "index": 0,
          "embedding": [...] | "base64"}], "usage": {"prompt_tokens": n, "total_tokens": n},
          "aris": {"logit_scale": f, "logit_bias": f, "identity": {...}}}

    POST /v1/index/search
      {"text": "..."} or {"upload_id": "...", "kind": "auto"}, "k": 10, "index": "default"
      -> {"object": "list", "index": "default", "model": "...", "count": n_items,
          "results": [{"id": 3, "score": 0.91, "display": "archive/cxr/001.dcm", "kind": "cxr",
                       "uids": {"StudyInstanceUID": "...", ...}, "parts": 1}], "notice": "..."}

Results carry the indexed item's id, display name (the path relative to the folder that was added)
and DICOM UIDs, never a server path.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from aris.notice import NOTICE
from aris.server.errors import APIError
from aris.server.guard import principal_of
from aris.server.routes import require_key

router = APIRouter(dependencies=[Depends(require_key)])
MAX_INPUTS = 256
MAX_IMAGE_PIXELS = 64_000_000
_DATA_URL = re.compile(r"^data:image/[a-z0-9.+-]+;base64,(.*)$", re.S | re.I)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(
        default=None, description="Ignored beyond a check: the server's embedder answers."
    )
    input: str | list[str] = Field(description="Text(s), or data:image/...;base64 URLs with modality image.")
    encoding_format: Literal["float", "base64"] = "float"
    modality: Literal["text", "image"] = "text"

    def items(self) -> list[str]:
        items = [self.input] if isinstance(self.input, str) else list(self.input)
        if not items:
            raise APIError(400, "input is empty", param="input")
        if len(items) > MAX_INPUTS:
            raise APIError(400, f"at most {MAX_INPUTS} inputs per request", param="input")
        return items


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, description="Search by text (a finding, an appearance).")
    upload_id: str | None = Field(
        default=None, description="Search by an image uploaded with POST /v1/uploads."
    )
    kind: str = Field(default="auto", description="How to read the upload: auto, cxr, image, ct, mri, wsi.")
    k: int = Field(default=10, ge=1, le=100)
    index: str = Field(default="default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

    @model_validator(mode="after")
    def _one_query(self) -> SearchRequest:
        if (self.text is None) == (self.upload_id is None):
            raise ValueError("give exactly one of text or upload_id")
        return self


def _service(request: Request) -> Any:
    svc = getattr(request.app.state, "embed", None)
    if svc is None:
        raise APIError(503, "the server is still starting", "server_error", code="not_ready")
    return svc


def _decode_image(url: str, i: int) -> Any:
    from PIL import Image

    m = _DATA_URL.match(url.strip())
    if m is None:
        raise APIError(400, f"input[{i}]: an image must be a data:image/...;base64 URL", param="input")
    try:
        raw = base64.b64decode(m.group(1), validate=True)
        im = Image.open(io.BytesIO(raw))
        if im.size[0] * im.size[1] > MAX_IMAGE_PIXELS:
            raise APIError(400, f"input[{i}]: image over {MAX_IMAGE_PIXELS} pixels", param="input")
        im.load()
    except (binascii.Error, OSError, ValueError) as e:
        raise APIError(400, f"input[{i}]: not a readable image ({type(e).__name__})", param="input") from None
    return im.convert("RGB")


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    items = body.items()
    svc = _service(request)
    embedder = await asyncio.to_thread(svc.embedder)
    if body.modality == "image":
        images = [_decode_image(u, i) for i, u in enumerate(items)]
        vectors = await asyncio.to_thread(embedder.embed_images, images)
    else:
        vectors = await asyncio.to_thread(embedder.embed_texts, items)
    scale, bias = embedder.score_params()
    data = []
    for i, v in enumerate(np.asarray(vectors, dtype=np.float32)):
        emb: Any = (
            base64.b64encode(v.astype("<f4").tobytes()).decode()
            if body.encoding_format == "base64"
            else v.tolist()
        )
        data.append({"object": "embedding", "index": i, "embedding": emb})
    n = len(items) if body.modality == "image" else sum(len(t.split()) for t in items)
    return {
        "object": "list",
        "model": embedder.model_id,
        "data": data,
        "usage": {"prompt_tokens": n, "total_tokens": n},
        "aris": {"logit_scale": scale, "logit_bias": bias, "identity": _public_identity(embedder.identity())},
    }


def _public_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """The identity without local paths: a model folder's path names the server's disk."""
    from pathlib import Path

    out = {k: v for k, v in identity.items() if k != "runtime"}
    model = str(out.get("model", ""))
    if model.startswith(("/", "~", ".")) or "\\" in model:
        out["model"] = Path(model).name
    return out


@router.post("/v1/index/search")
async def index_search(body: SearchRequest, request: Request) -> dict[str, Any]:
    svc = _service(request)
    index = await asyncio.to_thread(svc.index, body.index)
    embedder = await asyncio.to_thread(svc.embedder)
    if body.text is not None:
        hits = await asyncio.to_thread(index.search_text, body.text, embedder, body.k)
    else:
        jobs = request.app.state.jobs
        if jobs is None:
            raise APIError(503, "the server is still starting", "server_error", code="not_ready")
        prepared = await jobs.prepare(body.upload_id, principal_of(request.scope), body.kind)
        hits = await asyncio.to_thread(index.search_image, prepared, embedder, svc.store(), body.k)
    return {
        "object": "list",
        "index": body.index,
        "model": _public_identity(embedder.identity()).get("model"),
        "count": index.count(),
        "results": [h.public() for h in hits],
        "notice": NOTICE,
    }


def attach(app: FastAPI) -> None:
    """Add the routes; search uses the server's own embedder (the one its jobs use) and closes with it."""
    from aris.embed.service import EmbedService

    app.include_router(router)

    async def start(app: FastAPI) -> None:
        app.state.embed = EmbedService(app.state.runner.models)  # loads nothing until first used

    app.state.startup_hooks.append(start)

    async def close(app: FastAPI) -> None:
        svc, app.state.embed = getattr(app.state, "embed", None), None
        if svc is not None:
            await asyncio.to_thread(svc.close)

    app.state.shutdown_hooks.append(close)
