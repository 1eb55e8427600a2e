"""Task API routes: uploads, prepared previews, jobs, job events (SSE), job files.

Every route acts for the caller (the key AuthGuard identified): a key sees its own uploads and jobs
only. Files are named by URL; no response carries a server path.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from aris.inputs.png import png_bytes
from aris.server.errors import APIError
from aris.server.guard import principal_of
from aris.server.jobs import JobManager

router = APIRouter(tags=["tasks"])
IMAGE_NAME = re.compile(r"^\d{4}\.png$")


def _known_kind(value: str) -> str:
    from aris.inputs import kinds

    if value not in kinds():  # the reader registry: plugins' kinds included
        raise ValueError(f"unknown input kind; one of {', '.join(kinds())}")
    return value


InputKind = Annotated[str, Field(max_length=32), AfterValidator(_known_kind)]


def manager(request: Request) -> JobManager:
    jobs = getattr(request.app.state, "jobs", None)
    if jobs is None:
        raise APIError(503, "the model is still loading", "server_error", code="not_ready")
    return jobs  # type: ignore[no-any-return]


class ReadOptions(BaseModel):
    """Reader settings a client may choose (each bounded: a client cannot make the server render a
    100 000 dpi page or lift the image-size guard)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    pad_square: bool | None = Field(default=None, description="Pad images to a square (localization).")
    series_uid: str | None = Field(
        default=None, max_length=128, alias="series", description="Which DICOM series of several."
    )
    magnification: float | None = Field(
        default=None, gt=0, le=80, description="WSI magnification (10 = 10X)."
    )
    max_tiles: int | None = Field(default=None, ge=1, le=256, description="WSI tiles sampled.")
    seed: int | None = Field(default=None, ge=0, le=2**31, description="WSI tile sampling seed.")
    pad_edges: bool | None = Field(default=None, description="WSI: pad edge tiles.")
    dpi: float | None = Field(default=None, ge=36, le=300, description="PDF render resolution.")
    max_pages: int | None = Field(default=None, ge=1, le=50, description="PDF pages read.")
    token_budget: int | None = Field(default=None, ge=256, le=131072, description="FHIR text budget.")

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class PrepareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: InputKind = Field(
        default="auto", description="An input kind (auto, cxr, image, ct, mri, wsi, ...)."
    )
    options: ReadOptions = Field(default_factory=ReadOptions)


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(max_length=64, description="A task name from /v1/tasks.")
    uploads: list[str] = Field(
        max_length=16, description="Upload ids, in the order the task takes them (none for text tasks)."
    )
    question: str | None = Field(default=None, max_length=20000)
    options: dict[str, Any] = Field(default_factory=dict, description="The task's options (see /v1/tasks).")
    read_options: ReadOptions = Field(default_factory=ReadOptions)
    kind: InputKind = "auto"
    think: bool = False
    max_new_tokens: int | None = Field(default=None, ge=1)


@router.get("/v1/tasks")
async def list_tasks_route() -> list[dict[str, Any]]:
    """The tasks this server runs (the task registry, plugins included), with their options' schema."""
    from aris.tasks import list_tasks

    return [
        {
            "name": t.name,
            "description": t.description,
            "input_kinds": list(t.input_kinds),
            "n_inputs": list(t.n_inputs),
            "needs_question": t.needs_question,
            "options": t.Options.model_json_schema(),
        }
        for t in list_tasks()
    ]


@router.post("/v1/uploads", status_code=201)
async def upload(request: Request, files: list[UploadFile] = File(...)) -> dict[str, Any]:
    up = await manager(request).save_upload(files, principal_of(request.scope))
    return {"id": up.id}


@router.post("/v1/uploads/{upload_id}/prepare")
async def prepare(upload_id: str, body: PrepareRequest, request: Request) -> dict[str, Any]:
    options = body.options.given()
    prepared = await manager(request).prepare(upload_id, principal_of(request.scope), body.kind, options)
    prov = prepared.provenance
    engine = request.app.state.engine
    return {
        "kind": prepared.kind,
        "images": [
            {"url": f"/v1/uploads/{upload_id}/images/{i + 1:04d}.png?kind={body.kind}", "label": label}
            for i, label in enumerate(prepared.labels)
        ],
        "warnings": prov.warnings,
        "details": json.loads(json.dumps(prov.details, default=str)),
        "text": (prepared.text or "")[:20000],
        "image_tokens": len(prepared.arrays) * engine.capabilities.image_tokens,
    }


@router.get("/v1/uploads/{upload_id}/images/{name}")
async def upload_image(upload_id: str, name: str, request: Request, kind: InputKind = "auto") -> Response:
    if not IMAGE_NAME.match(name):
        raise APIError(404, "no such image", code="not_found")
    prepared = await manager(request).prepare(upload_id, principal_of(request.scope), kind)
    index = int(name[:4]) - 1
    arrays = prepared.arrays
    if not 0 <= index < len(arrays):
        raise APIError(404, "no such image", code="not_found")
    return Response(png_bytes(arrays[index]), media_type="image/png")


@router.post("/v1/jobs", status_code=202)
async def submit(body: JobRequest, request: Request) -> dict[str, Any]:
    jobs = manager(request)
    job = await jobs.submit(
        principal_of(request.scope),
        body.task,
        body.uploads,
        body.question,
        body.options,
        body.read_options.given(),
        body.kind,
        body.think,
        body.max_new_tokens,
    )
    return {
        "id": job.id,
        "task": job.task,
        "status": job.status,
        "created": job.created,
        "error": None,
        "has_result": False,
        "store_job": job.id,
    }


@router.get("/v1/jobs")
async def list_jobs(request: Request, limit: int = Query(default=100, ge=1, le=1000)) -> list[dict[str, Any]]:
    return await manager(request).list(principal_of(request.scope), limit)


@router.get("/v1/jobs/{job_id}")
async def get_job(job_id: str, request: Request) -> dict[str, Any]:
    return await manager(request).get(job_id, principal_of(request.scope))


@router.delete("/v1/jobs/{job_id}")
async def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
    return await manager(request).cancel(job_id, principal_of(request.scope))


@router.get("/v1/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request) -> StreamingResponse:
    jobs = manager(request)
    who = principal_of(request.scope)
    await jobs.get(job_id, who)  # 404 now, not inside the stream

    async def lines() -> AsyncIterator[str]:
        async for ev in jobs.events(job_id, who):
            yield f"event: {ev['type']}\ndata: {json.dumps(ev)}\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/v1/jobs/{job_id}/images/{name}")
async def job_image(job_id: str, name: str, request: Request) -> FileResponse:
    jobs = manager(request)
    await jobs.get(job_id, principal_of(request.scope))
    path = jobs.job_dir(job_id) / "images" / name
    if not IMAGE_NAME.match(name) or not path.is_file():
        raise APIError(404, "no such image", code="not_found")
    return FileResponse(path, media_type="image/png")


@router.get("/v1/jobs/{job_id}/files/{name}")
async def job_file(job_id: str, name: str, request: Request) -> FileResponse:
    """A file the task wrote (an overlay, boxes.json), as named in the result's ``files``."""
    jobs = manager(request)
    await jobs.get(job_id, principal_of(request.scope))
    return FileResponse(jobs.job_file(job_id, name))


@router.get("/v1/jobs/{job_id}/overlay.png", include_in_schema=False)
async def job_overlay(job_id: str, request: Request) -> FileResponse:
    return await job_file(job_id, "overlay.png", request)
