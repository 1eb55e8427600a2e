"""Task API routes: uploads, prepared previews, jobs, job events (SSE), result files."""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from aris.server.errors import APIError
from aris.server.jobs import JobManager
from aris.server.routes import require_key

router = APIRouter(dependencies=[Depends(require_key)], tags=["tasks"])
IMAGE_NAME = re.compile(r"^\d{4}\.png$")


def manager(request: Request) -> JobManager:
    jobs = getattr(request.app.state, "jobs", None)
    if jobs is None:
        raise APIError(503, "the model is still loading", "server_error", code="not_ready")
    return jobs  # type: ignore[no-any-return]


class PrepareRequest(BaseModel):
    kind: str = Field(default="auto", description="auto|cxr|image|ct|mri|wsi|pdf|fhir")
    options: dict[str, Any] = Field(default_factory=dict)


class JobRequest(BaseModel):
    task: str
    uploads: list[str] = Field(min_length=1, description="Upload ids, in the order the task takes them.")
    question: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    kind: str = "auto"
    think: bool = False


@router.get("/v1/tasks")
async def list_tasks_route() -> list[dict[str, Any]]:
    from aris.tasks import list_tasks

    return [
        {
            "name": t.name,
            "description": t.description,
            "input_kinds": list(t.input_kinds),
            "n_inputs": list(t.n_inputs),
        }
        for t in list_tasks()
    ]


@router.post("/v1/uploads", status_code=201)
async def upload(request: Request, files: list[UploadFile] = File(...)) -> dict[str, Any]:
    up = await manager(request).save_upload(files)
    return {"id": up.id}


@router.post("/v1/uploads/{upload_id}/prepare")
async def prepare(upload_id: str, body: PrepareRequest, request: Request) -> dict[str, Any]:
    prepared = await manager(request).prepare(upload_id, body.kind, body.options)
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
        "image_tokens": len(prepared.images) * engine.capabilities.image_tokens,
    }


@router.get("/v1/uploads/{upload_id}/images/{name}")
async def upload_image(upload_id: str, name: str, request: Request, kind: str = "auto") -> Response:
    if not IMAGE_NAME.match(name):
        raise APIError(404, "no such image", code="not_found")
    prepared = await manager(request).prepare(upload_id, kind)
    index = int(name[:4]) - 1
    if not 0 <= index < len(prepared.images):
        raise APIError(404, "no such image", code="not_found")
    buf = io.BytesIO()
    prepared.images[index].save(buf, format="PNG")
    return Response(buf.getvalue(), media_type="image/png")


@router.post("/v1/jobs", status_code=202)
async def submit(body: JobRequest, request: Request) -> dict[str, Any]:
    job = manager(request).submit(body.task, body.uploads, body.question, body.options, body.kind, body.think)
    return job.summary()


@router.get("/v1/jobs")
async def list_jobs(request: Request) -> list[dict[str, Any]]:
    return [
        j.summary() for j in sorted(manager(request).jobs.values(), key=lambda j: j.created, reverse=True)
    ]


@router.get("/v1/jobs/{job_id}")
async def get_job(job_id: str, request: Request) -> dict[str, Any]:
    job = manager(request).get(job_id)
    return {**job.summary(), "result": job.result}


@router.delete("/v1/jobs/{job_id}")
async def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
    return manager(request).cancel(job_id).summary()


@router.get("/v1/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request) -> StreamingResponse:
    jobs = manager(request)
    job = jobs.get(job_id)

    async def lines() -> AsyncIterator[str]:
        async for ev in jobs.events(job):
            yield f"event: {ev['type']}\ndata: {json.dumps(ev)}\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/v1/jobs/{job_id}/images/{name}")
async def job_image(job_id: str, name: str, request: Request) -> FileResponse:
    jobs = manager(request)
    jobs.get(job_id)
    path = jobs.job_dir(job_id) / "images" / name
    if not IMAGE_NAME.match(name) or not path.exists():
        raise APIError(404, "no such image", code="not_found")
    return FileResponse(path, media_type="image/png")


@router.get("/v1/jobs/{job_id}/overlay.png")
async def job_overlay(job_id: str, request: Request) -> FileResponse:
    jobs = manager(request)
    jobs.get(job_id)
    path = jobs.job_dir(job_id) / "overlay.png"
    if not path.exists():
        raise APIError(404, "this job has no overlay", code="not_found")
    return FileResponse(path, media_type="image/png")
