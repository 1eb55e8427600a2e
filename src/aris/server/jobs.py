"""Task jobs: upload a study, see what the model will see, run a task, follow its events.

Uploads live in a private temporary area (mode 0700) and are removed after their job unless the
server keeps them. Job records and prepared images live under ``$ARIS_HOME/jobs/<id>/``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import UploadFile

from aris.errors import ArisError
from aris.inputs.base import PreparedInput
from aris.server.errors import APIError
from aris.server.runner import EngineRunner, Returned

logger = logging.getLogger(__name__)
CHUNK = 1024 * 1024


@dataclass
class Upload:
    id: str
    root: Path  # the folder holding what was uploaded (a single file, several files or an extracted zip)
    prepared: dict[str, PreparedInput] = field(default_factory=dict)  # by kind/options key

    def input_path(self) -> Path:
        entries = [p for p in self.root.iterdir() if not p.name.startswith(".")]
        return entries[0] if len(entries) == 1 and entries[0].is_file() else self.root


@dataclass
class Job:
    id: str
    task: str
    upload_ids: list[str]
    question: str | None
    options: dict[str, Any]
    kind: str
    think: bool
    status: str = "queued"
    created: float = field(default_factory=time.time)
    events: list[dict[str, Any]] = field(default_factory=list)
    listeners: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)
    result: dict[str, Any] | None = None
    error: str | None = None
    task_handle: asyncio.Task[None] | None = None
    store_id: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "status": self.status,
            "created": self.created,
            "error": self.error,
            "has_result": self.result is not None,
            "store_job": self.store_id,
        }


def image_urls(base: str, prepared: PreparedInput) -> list[dict[str, str]]:
    return [
        {"url": f"{base}/images/{i + 1:04d}.png", "label": label} for i, label in enumerate(prepared.labels)
    ]


class StoreLog:
    """Server jobs in the shared store (the one ``aris batch`` uses): job, item, result or failure, audit.

    Calls are blocking SQLAlchemy work, so the manager runs them on a worker thread.
    """

    def __init__(self, url: str | None) -> None:
        from aris.store import Store

        self.store = Store.open(url, actor="server")
        self.runner_id = f"server-{uuid.uuid4().hex[:8]}"

    def start(self, job: Job, identity: dict[str, Any], engine: str, paths: list[Path]) -> int:
        from aris.batch.manifest import input_digest, item_key
        from aris.store import NewItem

        digest = input_digest(paths)
        params = {"options": job.options, "think": job.think, "kind": job.kind}
        from aris.runner import recipe_digest

        key = item_key(
            digest, job.task, identity, {**params, "recipe": recipe_digest(job.task)}, job.question
        )
        model = str(identity.get("model"))
        item = NewItem(0, key, f"upload:{len(paths)} file(s)", digest, job.question, job.kind, job.options)
        view = self.store.create_job(job.task, model, engine, params, [item], kind="server", source="server")
        job.store_id = view.id
        row = self.store.items(view.id)[0]
        self.store.mark_running(row.id, self.runner_id)
        return int(row.id)

    def done(self, item_id: int, result: Any) -> None:
        self.store.record_result(item_id, result)

    def failed(self, item_id: int, error: str) -> None:
        self.store.record_failure(item_id, error)

    def close(self) -> None:
        self.store.close()


class JobManager:
    def __init__(
        self,
        runner: EngineRunner,
        home: Path,
        *,
        keep_uploads: bool,
        max_upload_bytes: int,
        store_url: str | None = None,
    ) -> None:
        self.runner = runner
        self.log = StoreLog(store_url)
        self.home = home
        self.keep_uploads = keep_uploads
        self.max_upload_bytes = max_upload_bytes
        self.uploads: dict[str, Upload] = {}
        self.jobs: dict[str, Job] = {}
        self._tmp = Path(tempfile.mkdtemp(prefix="aris-uploads-"))  # mkdtemp gives mode 0700
        (home / "jobs").mkdir(parents=True, exist_ok=True)
        self._load_history()

    # -- uploads -------------------------------------------------------------------------------------
    async def save_upload(self, files: list[UploadFile]) -> Upload:
        if not files:
            raise APIError(400, "no file uploaded", param="files")
        upload = Upload(uuid.uuid4().hex, self._tmp / uuid.uuid4().hex)
        upload.root.mkdir(mode=0o700)
        total = 0
        try:
            for i, f in enumerate(files):
                # Client file names may hold patient names and path tricks: store under our own names,
                # keeping only a safe extension the readers use for detection.
                suffix = "".join(Path(f.filename or "").suffixes[-2:])
                suffix = suffix if suffix.replace(".", "").isalnum() and len(suffix) <= 12 else ""
                dest = upload.root / f"{i:05d}{suffix.lower()}"
                with dest.open("wb") as out:
                    while chunk := await f.read(CHUNK):
                        total += len(chunk)
                        if total > self.max_upload_bytes:
                            raise APIError(413, "upload over the size limit", code="payload_too_large")
                        out.write(chunk)
                if zipfile.is_zipfile(dest):
                    from aris.inputs.archive import safe_extract

                    target = upload.root / f"{i:05d}-zip"
                    try:
                        await asyncio.to_thread(safe_extract, dest, target)
                    except ArisError as e:
                        raise APIError(
                            400, getattr(e, "public_message", str(e)), code="unsafe_archive"
                        ) from e
                    dest.unlink()
        except BaseException:
            shutil.rmtree(upload.root, ignore_errors=True)
            raise
        self.uploads[upload.id] = upload
        logger.info("upload %s: %d files, %d bytes", upload.id[:8], len(files), total)
        return upload

    def get_upload(self, upload_id: str) -> Upload:
        try:
            return self.uploads[upload_id]
        except KeyError:
            raise APIError(
                404, "no such upload (uploads are removed after their job)", code="not_found"
            ) from None

    async def prepare(
        self, upload_id: str, kind: str = "auto", options: dict[str, Any] | None = None
    ) -> PreparedInput:
        """Read an upload into the exact model input, once per kind/options."""
        upload = self.get_upload(upload_id)
        key = json.dumps([kind, options or {}], sort_keys=True)
        if key not in upload.prepared:
            from aris.inputs import read

            upload.prepared[key] = await asyncio.to_thread(
                read, upload.input_path(), kind=kind, **(options or {})
            )
        return upload.prepared[key]

    def remove_upload(self, upload_id: str) -> None:
        upload = self.uploads.pop(upload_id, None)
        if upload is not None:
            shutil.rmtree(upload.root, ignore_errors=True)

    # -- jobs ----------------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.home / "jobs" / job_id

    def get(self, job_id: str) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise APIError(404, "no such job", code="not_found") from None

    def submit(
        self,
        task: str,
        upload_ids: list[str],
        question: str | None,
        options: dict[str, Any],
        kind: str,
        think: bool,
    ) -> Job:
        from aris.runner import check_options

        # An unknown task or a bad option is the client's error now, not an event later.
        check_options(task, {k: v for k, v in options.items() if k != "max_new_tokens"})
        for uid in upload_ids:
            self.get_upload(uid)
        job = Job(uuid.uuid4().hex, task, upload_ids, question, options, kind, think)
        self.jobs[job.id] = job
        job.task_handle = asyncio.create_task(self._run(job))
        return job

    def _emit(self, job: Job, event: dict[str, Any]) -> None:
        job.events.append(event)
        for q in list(job.listeners):
            q.put_nowait(event)

    async def events(self, job: Job) -> Any:
        """Every event of the job, past ones first, until it ends."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        backlog = list(job.events)
        job.listeners.add(q)
        try:
            for ev in backlog:
                yield ev
            if job.status in ("done", "failed", "cancelled"):
                return
            while True:
                ev = await q.get()
                yield ev
                if ev["type"] in ("done", "error", "cancelled"):
                    return
        finally:
            job.listeners.discard(q)

    async def _run(self, job: Job) -> None:
        out = self.job_dir(job.id)
        (out / "images").mkdir(parents=True, exist_ok=True)
        item_id: int | None = None
        try:
            job.status = "preparing"
            self._emit(job, {"type": "preparing"})
            from aris.runner import prepare_inputs

            inputs = await asyncio.to_thread(
                prepare_inputs,
                job.task,
                [self.get_upload(uid).input_path() for uid in job.upload_ids],
                kind=job.kind,
            )
            n = 0
            for prepared in inputs:
                for img in prepared.images:
                    n += 1
                    await asyncio.to_thread(img.save, out / "images" / f"{n:04d}.png")
            labels = [label for p in inputs for label in p.labels]
            self._emit(
                job,
                {
                    "type": "prepared",
                    "images": [
                        {"url": f"/v1/jobs/{job.id}/images/{i + 1:04d}.png", "label": lab}
                        for i, lab in enumerate(labels)
                    ],
                    "warnings": [w for p in inputs for w in p.provenance.warnings],
                    "kinds": [p.kind for p in inputs],
                },
            )
            job.status = "running"
            paths = [
                p
                for uid in job.upload_ids
                for p in sorted(self.get_upload(uid).root.rglob("*"))
                if p.is_file()
            ]
            engine = self.runner.engine
            identity = await asyncio.to_thread(engine.identity)
            item_id = await asyncio.to_thread(self.log.start, job, identity, engine.kind, paths)
            options = dict(job.options)
            max_new = options.pop("max_new_tokens", None)

            def work(emit: Any) -> Any:
                from aris.runner import run_task

                return run_task(
                    job.task,
                    inputs,
                    models=self.runner.engine,
                    question=job.question,
                    options=options,
                    max_new_tokens=int(max_new) if max_new is not None else None,
                    think=job.think,
                    files_dir=out,
                    on_token=lambda kind, text: emit({"type": "token", "kind": kind, "text": text}),
                )

            result = None
            async for item in self.runner.call(work):
                if isinstance(item, Returned):
                    result = item.value
                elif item["kind"] == "answer" or job.think:
                    self._emit(job, item)
            assert result is not None
            await asyncio.to_thread(self.log.done, item_id, result)
            job.result = json.loads(result.model_dump_json())
            (out / "result.json").write_text(json.dumps(job.result, indent=2))
            job.status = "done"
            self._emit(
                job,
                {
                    "type": "result",
                    "result": job.result,
                    "overlay": f"/v1/jobs/{job.id}/overlay.png" if (out / "overlay.png").exists() else None,
                },
            )
            self._emit(job, {"type": "done"})
        except asyncio.CancelledError:
            job.status = "cancelled"
            self._emit(job, {"type": "cancelled"})
            raise
        except ArisError as e:
            job.status, job.error = "failed", getattr(e, "public_message", str(e))
            self._emit(job, {"type": "error", "message": job.error})
        except Exception as e:
            logger.exception("job %s failed", job.id[:8])
            job.status, job.error = "failed", f"internal error ({type(e).__name__})"
            self._emit(job, {"type": "error", "message": job.error})
        finally:
            if job.status in ("failed", "cancelled") and item_id is not None:
                await asyncio.to_thread(self.log.failed, item_id, job.error or job.status)
            (out / "job.json").write_text(json.dumps(job.summary()))
            if not self.keep_uploads:
                for uid in job.upload_ids:
                    self.remove_upload(uid)

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.task_handle is not None and not job.task_handle.done():
            job.task_handle.cancel()
        return job

    def _load_history(self) -> None:
        """Earlier jobs (from previous server runs) stay findable."""
        for f in sorted((self.home / "jobs").glob("*/job.json")):
            try:
                s = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            job = Job(
                s["id"],
                s["task"],
                [],
                None,
                {},
                "auto",
                False,
                status=s["status"],
                created=s["created"],
                error=s.get("error"),
            )
            res = f.parent / "result.json"
            if res.exists():
                job.result = json.loads(res.read_text())
            self.jobs[job.id] = job

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)
        self.log.close()
