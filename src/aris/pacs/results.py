"""From a task's result to DICOM on the PACS: run routed jobs, write SR/GSPS, queue their sends.

Two ways in, one way out:

* :func:`run_job` runs a job the node routed, through :func:`aris.runner.run_task` (the one task
  path), records the Result in the store like a batch item (results are kept once per content key,
  so the same instances with the same task and model are never generated twice), then writes the SR;
* :func:`send_batch` takes a finished batch whose inputs were ``dicomweb://`` URLs (a QIDO worklist)
  and writes an SR for each done item, with the source headers fetched as WADO-RS metadata.

Either way :func:`produce` builds the SR (and the GSPS for boxes when asked), checks it, writes it
whole to the outbox, and :func:`queue` hands it to :mod:`aris.pacs.send`. The audit trail records
which study (by UID) produced which SR; nothing records patient names or IDs.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from aris.config import ArisSettings
from aris.context import Models
from aris.errors import ArisError
from aris.pacs import gsps, sr
from aris.pacs.send import Sender, outbox_dir, write_atomic
from aris.pacs.state import JobState, JobView, PacsState, SendView
from aris.result import Result

logger = logging.getLogger(__name__)
IMAGE_KINDS = ("cxr", "image")


@dataclass(frozen=True)
class Produced:
    """An object written to the outbox, ready to queue."""

    what: str  # sr | gsps
    sop_uid: str
    study_uid: str
    path: Path


def headers(paths: Sequence[Path]) -> list[Dataset]:
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]


def seen_names(result: Result) -> list[str] | None:
    """The files the model was shown (a volume reader samples slices), as the reader named them."""
    if not result.provenance:
        return None
    files = (result.provenance[0].get("details") or {}).get("files")
    if not files:
        return None
    return [re.sub(r"\[frame \d+\]$", "", str(f)) for f in files]


def produce(
    result: Result,
    evidence: Sequence[Dataset],
    *,
    key: str,
    settings: ArisSettings,
    kind: str,
    gsps_too: bool = False,
    out_dir: Path | None = None,
) -> list[Produced]:
    """Build, check and write the SR (and the GSPS when asked and there are boxes)."""
    image = evidence[0] if kind in IMAGE_KINDS and len(evidence) == 1 else None
    objects: list[tuple[str, Dataset]] = [("sr", sr.build(result, evidence, key=key, image=image))]
    has_boxes = isinstance(result.parsed, dict) and bool(result.parsed.get("boxes"))
    if gsps_too and has_boxes and image is not None:
        objects.append(("gsps", gsps.build(result, image, key=key)))
    out: list[Produced] = []
    extra = [d for d in (settings.node.results_dir, out_dir) if d is not None]
    for what, ds in objects:
        data = sr.encode(ds)
        path = outbox_dir(settings) / f"{ds.SOPInstanceUID}.dcm"
        write_atomic(path, data)
        for d in extra:
            write_atomic(Path(d).expanduser() / f"{what}-{ds.SOPInstanceUID}.dcm", data)
        out.append(Produced(what, str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), path))
    return out


def queue(
    state: PacsState,
    produced: Sequence[Produced],
    destinations: Sequence[str],
    *,
    origin: str,
    item_key: str | None,
) -> list[SendView]:
    """One send per object and destination (the one already queued when it exists: no duplicate)."""
    sends = []
    for p in produced:
        state.store.audit(
            f"pacs.{p.what}",
            actor="aris-node",
            item_key=item_key,
            detail=f"study={p.study_uid} {p.what}={p.sop_uid} origin={origin}",
        )
        for dest in destinations:
            view, _ = state.queue_send(
                p.sop_uid, p.what, p.study_uid, dest, str(p.path), origin=origin, item_key=item_key
            )
            sends.append(view)
    return sends


# -- jobs the node routed ---------------------------------------------------------------------------


def _content_digest(files: Sequence[Path]) -> str:
    """The instances' names (their SOP UIDs) and bytes: an instance sent again with other pixels under
    the same UID overwrites the inbox file, and must not keep the old answer's key."""
    from aris.batch.manifest import file_digest

    h = hashlib.sha256(b"aris-node-v2\0")
    for f in sorted(files, key=lambda f: f.name):
        h.update(f.name.encode() + b"\0" + file_digest(f).encode() + b"\0")
    return h.hexdigest()


def run_job(
    job: JobView,
    *,
    state: PacsState,
    models: Models,
    settings: ArisSettings,
    inbox: Path,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> bool:
    """Run one routed job to its SR and queued sends. Records the outcome; True when it succeeded."""
    from aris.batch.manifest import WorkItem, item_key
    from aris.batch.runner import generation_params, key_params
    from aris.runner import run_task
    from aris.store import NewItem

    store = state.store
    files = [inbox / p for p in job.inputs]
    try:
        engine = models.generator
        digest = _content_digest(files)
        gen = generation_params(settings)
        as_item = WorkItem(paths=tuple(files), question=job.question, kind=job.kind, task_options=job.options)
        key = item_key(digest, job.task, engine.identity(), key_params(job.task, gen, as_item), job.question)
        # The routed job and the answer's key together: the same PACS job retried with another model
        # (or other pixels) is another store job, never an item recorded under the first one's key.
        fingerprint = hashlib.sha256(f"node-v2\0{job.key}\0{key}".encode()).hexdigest()
        sjob = store.find_job(fingerprint)
        if sjob is None:
            ref = str(files[0].parent if len(files) > 1 else files[0])
            sjob = store.create_job(
                job.task,
                engine.model_id,
                engine.kind,
                {"node": {"rule": job.rule, "pacs_job": job.id}},
                [NewItem(0, key, ref, digest, job.question, job.kind, {}, job.options)],
                kind="node",
                source=f"node rule {job.rule}",
                fingerprint=fingerprint,
            )
        (item,) = store.items(sjob.id)
        state.set_job_links(job.id, sjob.id, key)
        data = store.result_for(key)
        if data is None:
            store.mark_running(item.id, f"node-{uuid.uuid4().hex[:8]}")
            try:
                one_input: Any = [[str(f) for f in files]] if len(files) > 1 else [str(files[0])]
                result = run_task(
                    job.task,
                    one_input,  # the files of one series are one input
                    models=models,
                    settings=settings,
                    question=job.question,
                    kind=job.kind,
                    options=job.options,
                    max_new_tokens=(gen or {}).get("max_new_tokens"),
                )
            except Exception as e:
                store.record_failure(item.id, _message(e), error_type=type(e).__name__)
                raise
            store.record_result(item.id, result, worker=engine.kind, generate_s=result.timings.generate_s)
        else:
            result = Result.model_validate(data)
            store.done_from_existing(item.id)
        if result.errors:
            raise sr.SrError(
                f"the model's reply did not validate ({'; '.join(result.errors)[:300]}); no SR is sent"
            )
        names = seen_names(result)
        by_name = {f.name: f for f in files}
        used = [by_name[n] for n in names if n in by_name] if names else files
        produced = produce(
            result, headers(used or files), key=key, settings=settings, kind=job.kind, gsps_too=job.gsps
        )
        sends = queue(state, produced, job.send_to, origin=f"node job {job.id}", item_key=key)
    except Exception as e:
        state.finish_job(job.id, JobState.FAILED, error=_message(e))
        level = logging.WARNING if isinstance(e, ArisError) else logging.ERROR
        logger.log(level, "node job %d (%s) failed: %s", job.id, job.task, type(e).__name__)
        if on_event is not None:
            on_event({"type": "job.failed", "job": job.id, "study_uid": job.study_uid, "error": _message(e)})
        return False
    sr_uid = next(p.sop_uid for p in produced if p.what == "sr")
    state.finish_job(job.id, JobState.DONE, sr_uid=sr_uid)
    logger.info("node job %d (%s): SR made, %d send(s) queued", job.id, job.task, len(sends))
    if on_event is not None:
        on_event({"type": "job.done", "job": job.id, "study_uid": job.study_uid, "sr_uid": sr_uid})
    return True


def _message(e: BaseException) -> str:
    return str(e) if isinstance(e, ArisError) else f"{type(e).__name__}: {e}"


# -- batches over dicomweb:// worklists --------------------------------------------------------------


def evidence_for_url(url: str, result: Result, settings: ArisSettings) -> list[Dataset]:
    """The headers (WADO-RS metadata) of the instances a batch item's result was made from."""
    from aris.pacs import urls
    from aris.pacs.dicomweb import Client, attr
    from aris.pacs.source import is_image_sop

    ref = urls.parse(url)
    if ref.study is None or ref.is_search:
        raise sr.SrError(f"{urls.public(url)}: not one study or series")
    details = (result.provenance[0].get("details") or {}) if result.provenance else {}
    with Client(ref.name, urls.connection(ref.name, settings)) as client:
        series = ref.series or details.get("series_uid")
        if not series:
            found = client.search_instances(ref.study)
            uids = {attr(i, "0020000E") for i in found if is_image_sop(attr(i, "00080016") or "")}
            if len(uids) != 1:
                raise sr.SrError(
                    f"{urls.public(url)}: {len(uids)} image series; cannot tell which one was read"
                )
            series = uids.pop()
        meta = [d for d in client.series_metadata(ref.study, str(series)) if is_image_sop(str(d.SOPClassUID))]
    names = seen_names(result)
    if names:
        wanted = {n.removesuffix(".dcm") for n in names}
        meta = [d for d in meta if str(d.SOPInstanceUID) in wanted]
        if len(meta) != len(wanted):
            raise sr.SrError(
                f"{urls.public(url)}: {len(wanted) - len(meta)} of the instances read are gone from the PACS"
            )
    if not meta:
        raise sr.SrError(f"{urls.public(url)}: no image instances in series {series}")
    return meta


@dataclass
class SendReport:
    """What :func:`send_batch` did with each item of the batch."""

    job_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(r["status"] == "sent" for r in self.rows)

    @property
    def failed(self) -> int:
        return sum(r["status"] in ("failed", "pending") for r in self.rows)


def send_batch(
    job_id: str,
    destinations: Sequence[str],
    *,
    settings: ArisSettings,
    state: PacsState,
    out_dir: Path | None = None,
    gsps_too: bool = False,
    send: bool = True,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> SendReport:
    """An SR per done item of a batch over ``dicomweb://`` inputs, stored on ``destinations``.

    Items that are not done, did not validate, or were not read from a PACS are listed with the
    reason and skipped. Sends that fail stay queued (``aris node status``; a running node retries them).
    """
    from aris.pacs.urls import connection
    from aris.pacs.urls import public as public_url

    for d in destinations:
        connection(d, settings)  # an unknown name fails before anything is built
    store = state.store
    job = store.get_job(job_id)
    report = SendReport(job.id)
    sender = Sender(state, settings, on_event=on_event)
    for row in store.export(job.id):
        entry: dict[str, Any] = {"input": public_url(row["input"]), "key": row["key"]}
        report.rows.append(entry)
        if row["status"] != "done" or not row["result"]:
            entry.update(status="skipped", reason=f"item is {row['status']}")
            continue
        if not str(row["input"]).startswith("dicomweb:"):
            entry.update(status="skipped", reason="not read from a PACS (no dicomweb:// input)")
            continue
        result = Result.model_validate(row["result"])
        try:
            evidence = evidence_for_url(row["input"], result, settings)
            produced = produce(
                result,
                evidence,
                key=row["key"],
                settings=settings,
                kind=_kind(result),
                gsps_too=gsps_too,
                out_dir=out_dir,
            )
        except ArisError as e:
            entry.update(status="skipped", reason=str(e))
            continue
        sends = queue(state, produced, destinations, origin=f"batch {job.id}", item_key=row["key"])
        entry["sr_uid"] = next(p.sop_uid for p in produced if p.what == "sr")
        entry["objects"] = [p.what for p in produced]
        if send:
            outcomes = [s.status == "sent" or (s.status == "pending" and sender.send(s)) for s in sends]
        else:
            outcomes = [s.status == "sent" for s in sends]
        if not destinations:
            entry["status"] = "written"
        elif all(outcomes):
            entry["status"] = "sent"
        else:
            fresh = {v.id: v for v in state.sends(limit=1000, study_uid=produced[0].study_uid)}
            errors = [fresh[s.id].last_error for s in sends if s.id in fresh and fresh[s.id].status != "sent"]
            entry.update(status="pending", reason="; ".join(e for e in errors if e) or "queued")
    logger.info("batch %s: %d SR(s) sent, %d not", job.id, report.sent, len(report.rows) - report.sent)
    return report


def _kind(result: Result) -> str:
    return str(result.provenance[0].get("kind")) if result.provenance else "image"


__all__ = ["Produced", "SendReport", "evidence_for_url", "produce", "queue", "run_job", "send_batch"]
