"""Task jobs: upload a study, see what the model will see, run a task, follow its events.

The store (:class:`aris.store.Store`, the one ``aris batch`` uses) is the one record of server jobs:
each job is a store job of kind ``server`` with one item; its status, result and audit trail live
there, and history after a restart comes from there. What lives only in memory is what a running
job streams (its events, for SSE listeners).

Uploads live in a private temporary area (mode 0700) and belong to the key that sent them; they are
removed after their job (unless the server keeps them) and, unused, after ``upload_ttl_s``. Prepared
images and files a task writes live under ``$ARIS_HOME/jobs/<id>/``, served by URL, never by path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import UploadFile
from pydantic import ValidationError

from aris.errors import ArisError
from aris.inputs.base import PreparedInput
from aris.inputs.png import write_png
from aris.server.auth import Principal
from aris.server.errors import APIError, field_path
from aris.server.limits import KeyLimiter
from aris.server.runner import EngineRunner, Returned

logger = logging.getLogger(__name__)
CHUNK = 1024 * 1024
IMAGE_KINDS = frozenset({"cxr", "image", "ct", "mri", "wsi"})
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")
CANCELLED = "cancelled"
FINAL = ("done", "failed", CANCELLED)


@dataclass
class Upload:
    id: str
    owner: str
    root: Path  # the folder holding what was uploaded (a single file, several files or an extracted zip)
    created: float = field(default_factory=time.monotonic)
    digest: str = ""  # sha256 of the files' bytes, for the job's result key
    in_use: int = 0  # jobs queued or running that read it
    prepared: dict[str, PreparedInput] = field(default_factory=dict)  # by kind/options key

    def input_path(self) -> Path:
        entries = [p for p in self.root.iterdir() if not p.name.startswith(".")]
        return entries[0] if len(entries) == 1 and entries[0].is_file() else self.root

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())


@dataclass
class LiveJob:
    """A job this process is running: its events for listeners. Its record is the store's."""

    id: str
    item_id: int
    owner: str
    task: str
    upload_ids: list[str]
    question: str | None
    options: dict[str, Any]
    read_options: dict[str, Any]
    kind: str
    think: bool
    max_new_tokens: int | None
    status: str = "queued"
    created: float = field(default_factory=time.time)
    events: list[dict[str, Any]] = field(default_factory=list)
    listeners: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)
    error: str | None = None
    result: dict[str, Any] | None = None
    handle: asyncio.Task[None] | None = None
    release: Callable[[], None] | None = None


def _loc_param(prefix: str, e: ValidationError) -> tuple[str, str]:
    first = e.errors()[0]
    loc = field_path(first.get("loc", ()))
    return (f"{prefix}.{loc}" if loc else prefix), str(first.get("msg", "invalid"))


class JobManager:
    def __init__(
        self,
        runner: EngineRunner,
        store: Any,
        home: Path,
        *,
        model_name: str,
        keep_uploads: bool,
        max_upload_bytes: int,
        max_new_tokens: int,
        upload_ttl_s: float,
        limiter: KeyLimiter,
    ) -> None:
        self.runner = runner
        self.store = store  # aris.store.Store; blocking calls run on worker threads
        self.home = home
        self.model_name = model_name
        self.keep_uploads = keep_uploads
        self.max_upload_bytes = max_upload_bytes
        self.max_new_tokens = max_new_tokens
        self.upload_ttl_s = upload_ttl_s
        self.limiter = limiter
        self.uploads: dict[str, Upload] = {}
        self.live: dict[str, LiveJob] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix="aris-uploads-"))  # mkdtemp gives mode 0700
        self.runner_id = f"server-{uuid.uuid4().hex[:8]}"
        (home / "jobs").mkdir(parents=True, exist_ok=True)
        self._identities: dict[tuple[str, ...], dict[str, Any]] = {}

    def identity(self, task: str) -> dict[str, Any]:
        """What identifies the models a task uses in result keys (a dictation report: the transcriber
        too), as batch keys them (weights digests: computed once per set of roles)."""
        from aris.tasks import get_task

        needs = tuple(get_task(task).needs)
        if needs not in self._identities:
            ids = self.runner.models.identity(needs)
            self._identities[needs] = ids["generator"] if needs == ("generator",) else ids
        return self._identities[needs]

    # -- uploads -------------------------------------------------------------------------------------
    async def save_upload(self, files: list[UploadFile], who: Principal) -> Upload:
        if not files:
            raise APIError(400, "no file uploaded", param="files")
        upload = Upload(uuid.uuid4().hex, who.name, self.tmp / uuid.uuid4().hex)
        upload.root.mkdir(mode=0o700)
        total = 0
        try:
            for i, f in enumerate(files):
                # Client file names may hold patient names and path tricks: store under our own names,
                # keeping only a safe extension the readers use for detection.
                suffix = "".join(Path((f.filename or "")[-64:]).suffixes[-2:])
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
                        # What a zip expands to counts against the same limit as what was sent.
                        await asyncio.to_thread(
                            safe_extract, dest, target, max_total_bytes=self.max_upload_bytes
                        )
                    except ArisError as e:
                        raise APIError(
                            400, getattr(e, "public_message", str(e)), code="unsafe_archive"
                        ) from e
                    dest.unlink()
            # What the reader will read, names included: it skips dot-files and __MACOSX, and a FHIR
            # folder reads only .json/.ndjson, so the same bytes under other names are another input.
            upload.digest = await asyncio.to_thread(_digest, upload.input_path())
        except BaseException:
            shutil.rmtree(upload.root, ignore_errors=True)
            raise
        self.uploads[upload.id] = upload
        logger.info("upload %s: %d files, %d bytes", upload.id[:8], len(files), total)
        return upload

    def get_upload(self, upload_id: str, who: Principal) -> Upload:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.owner != who.name:  # another key's upload does not exist for you
            raise APIError(404, "no such upload (uploads are removed after their job)", code="not_found")
        return upload

    async def prepare(
        self, upload_id: str, who: Principal, kind: str = "auto", options: dict[str, Any] | None = None
    ) -> PreparedInput:
        """Read an upload into the exact model input, once per kind/options."""
        upload = self.get_upload(upload_id, who)
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

    def sweep(self) -> int:
        """Remove uploads no job uses that are older than the TTL, and forget finished jobs' events."""
        now = time.monotonic()
        old = [u.id for u in self.uploads.values() if u.in_use == 0 and now - u.created > self.upload_ttl_s]
        for uid in old:
            self.remove_upload(uid)
        for jid in [j.id for j in self.live.values() if j.status in FINAL and not j.listeners]:
            self.live.pop(jid, None)
        if old:
            logger.info("removed %d unused upload(s)", len(old))
        return len(old)

    async def sweeper(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, max(0.2, self.upload_ttl_s / 4)))
            self.sweep()

    # -- jobs ----------------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.home / "jobs" / job_id

    async def submit(
        self,
        who: Principal,
        task_name: str,
        upload_ids: list[str],
        question: str | None,
        options: dict[str, Any],
        read_options: dict[str, Any],
        kind: str,
        think: bool,
        max_new_tokens: int | None,
    ) -> LiveJob:
        """Check everything a client can get wrong now (422 naming the field), then queue the job."""
        from aris.tasks import TASKS, get_task

        if task_name not in TASKS.names():
            raise APIError(
                400, f"Unknown task {task_name!r}; see /v1/tasks", param="task", code="unknown_task"
            )
        if not who.may_run(task_name):
            raise APIError(403, f"this API key may not run task {task_name}", param="task")
        task = get_task(task_name)
        options = dict(options)
        if "max_new_tokens" in options:  # accepted among the options too (the web UI sends it there)
            if max_new_tokens is not None:
                raise APIError(422, "max_new_tokens given twice", param="options.max_new_tokens")
            max_new_tokens = options.pop("max_new_tokens")
            if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
                raise APIError(
                    422, "max_new_tokens must be a whole number of at least 1", param="options.max_new_tokens"
                )
        if max_new_tokens is not None and max_new_tokens > self.max_new_tokens:
            raise APIError(
                422,
                f"max_new_tokens is limited to {self.max_new_tokens} on this server",
                param="max_new_tokens",
            )
        if max_new_tokens is None and task.max_new_tokens > self.max_new_tokens:
            max_new_tokens = self.max_new_tokens  # the server's cap holds for the task's defaults too
        self._check_options(task, options)
        if task.needs_question and not (question or "").strip():
            raise APIError(422, f"task {task_name} needs a question", param="question")
        lo, hi = task.n_inputs
        if not lo <= len(upload_ids) <= max(hi, lo):
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            raise APIError(
                422, f"task {task_name} takes {want} upload(s), got {len(upload_ids)}", param="uploads"
            )
        uploads = [self.get_upload(uid, who) for uid in upload_ids]
        if self._needs_images(task, kind) and not self.runner.engine.capabilities.vision:
            raise APIError(
                422,
                f"task {task_name} needs images and this server's model is text-only",
                param="task",
                code="model_cannot_take_images",
            )
        params = {
            "options": options,
            "read_options": read_options,
            "think": think,
            "kind": kind,
            "max_new_tokens": max_new_tokens,
        }
        digest = uploads[0].digest if len(uploads) == 1 else _combine([u.digest for u in uploads])
        job_id, item_id = await asyncio.to_thread(
            self._create, who, task_name, params, digest, question, kind
        )
        job = LiveJob(
            job_id,
            item_id,
            who.name,
            task_name,
            list(upload_ids),
            question,
            options,
            read_options,
            kind,
            think,
            max_new_tokens,
        )
        for u in uploads:
            u.in_use += 1
        self.live[job.id] = job
        job.release = self.limiter.hold(who)  # the job is work in flight for its key until it ends
        job.handle = asyncio.create_task(self._run(job))
        return job

    @staticmethod
    def _check_options(task: Any, options: dict[str, Any]) -> None:
        from aris.runner import check_options

        try:
            task.Options.model_validate(options)
        except ValidationError as e:
            param, msg = _loc_param("options", e)
            raise APIError(
                422, f"task {task.name}: {param}: {msg}", param=param, code="invalid_option"
            ) from None
        try:
            check_options(task, options)
        except ArisError as e:
            raise APIError(422, str(e), param="options", code="invalid_option") from None

    @staticmethod
    def _needs_images(task: Any, kind: str) -> bool:
        if kind != "auto":
            return kind in IMAGE_KINDS
        kinds = set(task.input_kinds)
        return bool(kinds) and kinds <= IMAGE_KINDS

    def _create(
        self, who: Principal, task: str, params: dict[str, Any], digest: str, question: str | None, kind: str
    ) -> tuple[str, int]:
        from aris.batch.manifest import item_key
        from aris.runner import recipe_digest
        from aris.store import NewItem

        engine = self.runner.engine
        key = item_key(digest, task, self.identity(task), {**params, "recipe": recipe_digest(task)}, question)
        item = NewItem(0, key, "upload", digest, question, kind, params["read_options"], params["options"])
        view = self.store.create_job(
            task, engine.model_id, engine.kind, params, [item], kind="server", source=who.actor
        )
        self.store.audit(
            "job.submit",
            actor=who.actor,
            task=task,
            model=self.model_name,
            engine=engine.kind,
            input_digest=digest,
            job_id=view.id,
            item_key=key,
        )
        return view.id, int(self.store.items(view.id)[0].id)

    def _emit(self, job: LiveJob, event: dict[str, Any]) -> None:
        job.events.append(event)
        for q in list(job.listeners):
            q.put_nowait(event)

    async def events(self, job_id: str, who: Principal) -> Any:
        """Every event of the job, past ones first, until it ends (a finished job's from the store)."""
        job = self.live.get(job_id)
        if job is None or job.owner != who.name:
            record = await self.get(job_id, who)
            if record["status"] == "done":
                yield {"type": "result", "result": record["result"], "overlay": self._overlay(job_id)}
                yield {"type": "done"}
            elif record["status"] in ("failed", CANCELLED):
                yield {
                    "type": "error" if record["status"] == "failed" else CANCELLED,
                    "message": record["error"],
                }
            else:  # queued or running in another process: nothing to stream from here
                yield {"type": "status", "status": record["status"]}
            return
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        backlog = list(job.events)
        job.listeners.add(q)
        try:
            for ev in backlog:
                yield ev
            if job.status in FINAL:
                return
            while True:
                ev = await q.get()
                yield ev
                if ev["type"] in ("done", "error", CANCELLED):
                    return
        finally:
            job.listeners.discard(q)

    async def _run(self, job: LiveJob) -> None:
        out = self.job_dir(job.id)
        (out / "images").mkdir(parents=True, exist_ok=True)
        prepare_s = 0.0
        try:
            job.status = "preparing"
            self._emit(job, {"type": "preparing"})
            from aris.runner import prepare_inputs

            t0 = time.perf_counter()
            inputs = await asyncio.to_thread(
                prepare_inputs,
                job.task,
                [self.uploads[uid].input_path() for uid in job.upload_ids],
                kind=job.kind,
                read_options=job.read_options,
            )
            prepare_s = time.perf_counter() - t0
            await asyncio.to_thread(_save_images, inputs, out / "images")
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
            reused = await asyncio.to_thread(self.store.done_from_existing, job.item_id)
            if reused:  # the same study, task, model and settings were answered before
                data = (await asyncio.to_thread(self.store.export, job.id))[0]["result"]
            else:
                await asyncio.to_thread(self.store.mark_running, job.item_id, self.runner_id)
                data = await self._generate(job, inputs, out)
                await asyncio.to_thread(
                    self.store.record_result,
                    job.item_id,
                    data,
                    worker=self.runner.engine.kind,
                    prepare_s=prepare_s,
                    generate_s=data.get("timings", {}).get("generate_s"),
                )
            job.result = self.public_result(job.id, data)
            job.status = "done"
            self._emit(
                job,
                {"type": "result", "result": job.result, "overlay": self._overlay(job.id), "reused": reused},
            )
            self._emit(job, {"type": "done"})
        except asyncio.CancelledError:
            await self._fail(job, CANCELLED, CANCELLED, "Cancelled")
            raise
        except ArisError as e:
            await self._fail(job, "failed", getattr(e, "public_message", str(e)), type(e).__name__)
        except APIError as e:
            await self._fail(job, "failed", e.message, "APIError")
        except Exception as e:
            logger.error("job %s failed: %s", job.id[:8], type(e).__name__)
            await self._fail(job, "failed", f"internal error ({type(e).__name__})", type(e).__name__)
        finally:
            for uid in job.upload_ids:
                upload = self.uploads.get(uid)
                if upload is not None:
                    upload.in_use -= 1
                    if not self.keep_uploads and upload.in_use <= 0:
                        self.remove_upload(uid)
            if job.release is not None:
                job.release()

    async def _generate(self, job: LiveJob, inputs: list[PreparedInput], out: Path) -> dict[str, Any]:
        def work(emit: Callable[[Any], None], cancel: threading.Event) -> Any:
            from aris.runner import run_task

            return run_task(
                job.task,
                inputs,
                models=self.runner.models,
                question=job.question,
                options=job.options,
                max_new_tokens=job.max_new_tokens,
                think=job.think,
                files_dir=out,
                cancel=cancel,
                on_token=lambda kind, text: emit({"type": "token", "kind": kind, "text": text}),
            )

        result = None
        async with contextlib.aclosing(self.runner.call(work)) as pieces:
            async for item in pieces:
                if isinstance(item, Returned):
                    result = item.value
                elif item["kind"] == "answer" or job.think:
                    self._emit(job, item)
        if result is None:
            raise ArisError("the task produced no result")
        data: dict[str, Any] = json.loads(result.model_dump_json())
        # Upload paths are temporary and server-side: the record names the files as uploaded.
        tmp = str(self.tmp)
        for prov in data.get("provenance", []):
            prov["sources"] = [_relative_source(s, tmp) for s in prov.get("sources", [])]
        return data

    async def _fail(self, job: LiveJob, status: str, message: str, error_type: str) -> None:
        job.status, job.error = status, message
        try:
            await asyncio.shield(
                asyncio.to_thread(self.store.record_failure, job.item_id, message, error_type=error_type)
            )
        except Exception as e:  # the store is down: the job still ends, and says so in the log
            logger.error("job %s: could not record its failure (%s)", job.id[:8], type(e).__name__)
        self._emit(job, {"type": "error" if status == "failed" else CANCELLED, "message": message})

    def public_result(self, job_id: str, data: dict[str, Any] | None) -> dict[str, Any] | None:
        """A stored result as a client sees it: the model by its served name, files by URL."""
        if data is None:
            return None
        out = dict(data)
        out["model"] = self.model_name
        parsed = out.get("parsed")
        if isinstance(parsed, dict) and isinstance(parsed.get("files"), dict):
            parsed = dict(parsed)
            parsed["files"] = {
                k: f"/v1/jobs/{job_id}/files/{v}"
                for k, v in parsed["files"].items()
                if FILE_NAME.match(str(v))
            }
            out["parsed"] = parsed
        return out

    def _overlay(self, job_id: str) -> str | None:
        return (
            f"/v1/jobs/{job_id}/files/overlay.png"
            if (self.job_dir(job_id) / "overlay.png").is_file()
            else None
        )

    def job_file(self, job_id: str, name: str) -> Path:
        """A file a task wrote for this job (checked: a plain name inside the job's folder)."""
        path = self.job_dir(job_id) / name
        if not FILE_NAME.match(name) or name.endswith(".json.tmp") or not path.is_file():
            raise APIError(404, "no such file", code="not_found")
        return path

    # -- records (the store's) -----------------------------------------------------------------------
    def _record(self, job_id: str, owner: str) -> dict[str, Any]:
        from aris.store import JobNotFoundError

        try:
            view = self.store.get_job(job_id)
        except JobNotFoundError:
            view = None
        if view is None or view.id != job_id or view.kind != "server" or view.source != owner:
            raise APIError(404, "no such job", code="not_found")
        row = self.store.export(job_id)[0]
        status = {"pending": "queued"}.get(row["status"], row["status"])
        if status == "failed" and row["error"] == CANCELLED:
            status = CANCELLED
        return {
            "id": view.id,
            "task": view.task,
            "status": status,
            "created": view.created.timestamp(),
            "error": row["error"],
            "has_result": row["result"] is not None,
            "store_job": view.id,
            "result": self.public_result(view.id, row["result"]),
        }

    async def get(self, job_id: str, who: Principal) -> dict[str, Any]:
        record = await asyncio.to_thread(self._record, job_id, who.actor)
        live = self.live.get(job_id)
        if live is not None and live.status not in FINAL:  # finer than the store's: preparing, running
            record["status"] = live.status
        return record

    async def list(self, who: Principal, limit: int = 100) -> list[dict[str, Any]]:
        def records() -> list[dict[str, Any]]:
            views = [v for v in self.store.jobs(limit=1000) if v.kind == "server" and v.source == who.actor]
            return [self._record(v.id, who.actor) for v in views[:limit]]

        out = await asyncio.to_thread(records)
        for r in out:
            r.pop("result")
            live = self.live.get(r["id"])
            if live is not None and live.status not in FINAL:
                r["status"] = live.status
        return out

    async def cancel(self, job_id: str, who: Principal) -> dict[str, Any]:
        record = await self.get(job_id, who)
        job = self.live.get(job_id)
        if job is not None and job.handle is not None and not job.handle.done():
            job.handle.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(job.handle)
            record = await self.get(job_id, who)
        record.pop("result", None)
        return record

    async def close(self, timeout: float) -> None:
        """Cancel jobs still running (each recorded as cancelled), then remove every upload."""
        running = [j.handle for j in self.live.values() if j.handle is not None and not j.handle.done()]
        for h in running:
            h.cancel()
        if running:
            await asyncio.wait(running, timeout=timeout)
        for uid in list(self.uploads):
            self.remove_upload(uid)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _digest(path: Path) -> str:
    from aris.batch.manifest import path_digest

    return path_digest(path)


def _combine(digests: list[str]) -> str:
    return hashlib.sha256(("uploads-v1:" + ",".join(digests)).encode()).hexdigest()


def _relative_source(source: str, tmp: str) -> str:
    if not source.startswith(tmp):
        return Path(source).name
    rel = Path(source).relative_to(tmp)
    return str(Path(*rel.parts[1:])) if len(rel.parts) > 1 else rel.name  # without the upload's folder


def _save_images(inputs: list[PreparedInput], folder: Path) -> None:
    n = 0
    for prepared in inputs:
        for pixels in prepared.arrays:
            n += 1
            write_png(pixels, folder / f"{n:04d}.png")
