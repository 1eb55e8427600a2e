"""The DICOM node: a Storage SCP (pynetdicom) that receives studies, routes them to tasks when they are
complete, and sends the results back.

Three threads besides pynetdicom's:

* the SCP acknowledges each C-STORE as soon as the instance is written to the inbox
  (``inbox/<study>/<series>/<sop>.dcm``, UIDs checked first, since they become file names) and noted
  in the state; C-ECHO answers; an association that aborts marks its studies ``interrupted``;
* the worker decides a study is complete after ``idle_s`` seconds of quiet (and once the association
  that brought it is closed, or ``wait_s`` passed without anything on it), checks that it looks
  whole (no push broke off; where the sender is a configured PACS, as many instances per series as
  the PACS holds), waits up to ``wait_s`` for the rest or fails with the reason, routes it
  (:mod:`aris.pacs.rules`), and runs the jobs one at a time (:func:`aris.pacs.results.run_job`);
* the sender stores queued results on their destinations, retrying with backoff
  (:mod:`aris.pacs.send`).

Everything the node knows is in the store (:mod:`aris.pacs.state`), so a restarted node picks up where
it stopped. Logs carry counts, SOP classes and short hashes of study UIDs; never patient names or IDs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aris.config import ArisSettings
from aris.context import Models
from aris.engines.base import Engine
from aris.errors import ArisError, ConfigError
from aris.pacs import dimse, rules
from aris.pacs.results import run_job
from aris.pacs.send import Sender
from aris.pacs.settings import PacsConnection
from aris.pacs.state import InstanceMeta, NewJob, PacsState, StudyState, StudyView
from aris.pacs.urls import valid_uid

logger = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


def short(uid: str) -> str:
    """A study UID as logs show it: a short hash (the UID itself goes to the state and the audit)."""
    return hashlib.sha256(uid.encode()).hexdigest()[:12]


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _text(value: Any, n: int) -> str | None:
    return str(value)[:n] if value not in (None, "") else None


@dataclass
class _Assoc:
    calling_ae: str
    studies: set[str] = field(default_factory=set)
    closed: bool = False


class Node:
    """The node. ``with Node(settings) as node:`` starts it; leaving the block stops it.

    ``models`` is the engine (or :class:`~aris.context.Models`) that runs jobs; without one it loads
    from ``settings`` on the first job. ``on_event`` receives each step as a dict (the CLI prints them).
    """

    def __init__(
        self,
        settings: ArisSettings,
        *,
        models: Models | Engine | None = None,
        state: PacsState | None = None,
        db: str | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.node
        self.models = models if isinstance(models, Models) else Models(settings, generator=models)
        self._own_models = not isinstance(models, Models)
        self._own_state = state is None
        self.state = state or PacsState.open(db)
        self.inbox = (self.cfg.inbox or settings.home / "pacs" / "inbox").expanduser()
        self.on_event = on_event
        self.events: list[dict[str, Any]] = []
        self._events_lock = threading.Lock()
        self._assocs: dict[int, _Assoc] = {}
        self._assocs_lock = threading.Lock()
        self._recheck: dict[str, float] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self.sender = Sender(self.state, settings, on_event=self.emit)
        self.port: int = self.cfg.port

    # -- life ---------------------------------------------------------------------------------------
    def check(self) -> None:
        """Rules and destinations that cannot work fail now, naming the rule."""
        rules.check_rules(self.cfg.rules, list(self.settings.pacs), self.cfg.send_to)

    def start(self) -> Node:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

        self.check()
        dimse.quiet_pynetdicom()
        self.inbox.mkdir(parents=True, exist_ok=True)
        n = self.state.requeue_running()
        if n:
            logger.info("node: %d job(s) a stopped node left running set back to pending", n)
        ae = AE(ae_title=self.cfg.ae_title)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(str(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(dimse.VERIFICATION)
        ae.require_calling_aet = list(self.cfg.allowed_aes)
        ae.maximum_associations = 16
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_ABORTED, self._on_aborted),
            (evt.EVT_CONN_CLOSE, self._on_closed),
        ]
        try:
            self._server = ae.start_server((self.cfg.host, self.cfg.port), block=False, evt_handlers=handlers)
        except OSError as e:
            raise ConfigError(
                f"the node cannot listen on {self.cfg.host}:{self.cfg.port}: {e.strerror}"
            ) from None
        self.port = int(self._server.server_address[1])
        for name, target in (("aris-node-worker", self._work_loop), ("aris-node-sender", self._send_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        logger.info(
            "node %s listening on %s:%d, %d rule(s)",
            self.cfg.ae_title,
            self.cfg.host,
            self.port,
            len(self.cfg.rules),
        )
        self.emit({"type": "started", "ae_title": self.cfg.ae_title, "port": self.port})
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        for t in self._threads:
            t.join(timeout=60)
        self._threads.clear()
        if self._own_models:
            self.models.close()
        if self._own_state:
            self.state.close()

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def emit(self, event: dict[str, Any]) -> None:
        event = {"at": datetime.now(UTC).isoformat(), **event}
        with self._events_lock:
            self.events.append(event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a printing callback must not stop the node
                logger.exception("node: event callback failed")

    # -- the SCP ------------------------------------------------------------------------------------
    def _on_accepted(self, event: Any) -> None:
        with self._assocs_lock:
            self._assocs[id(event.assoc)] = _Assoc(str(event.assoc.requestor.ae_title).strip())

    def _on_store(self, event: Any) -> int:
        """Write the instance, note it, acknowledge. A bad UID is refused; a full disk asks for a retry."""
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            study, series, sop = (
                str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
            )
        except Exception as e:
            logger.warning("node: C-STORE dataset could not be decoded (%s)", type(e).__name__)
            return CANNOT_UNDERSTAND
        if not all(valid_uid(u) for u in (study, series, sop)):
            logger.warning("node: C-STORE refused: a study/series/SOP instance UID is missing or malformed")
            return CANNOT_UNDERSTAND
        rel = f"{study}/{series}/{sop}.dcm"
        try:
            path = self.inbox / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{sop}.part")
            tmp.write_bytes(event.encoded_dataset(include_meta=True))
            tmp.replace(path)
            meta = InstanceMeta(
                study_uid=study,
                series_uid=series,
                sop_uid=sop,
                sop_class=str(event.request.AffectedSOPClassUID),
                transfer_syntax=str(event.context.transfer_syntax),
                path=rel,
                modality=_text(ds.get("Modality"), 16),
                body_part=_text(ds.get("BodyPartExamined"), 64),
                series_description=_text(ds.get("SeriesDescription"), 64),
                series_number=_int(ds.get("SeriesNumber")),
                instance_number=_int(ds.get("InstanceNumber")),
                pixels=(_int(ds.get("Rows")) or 0) * (_int(ds.get("Columns")) or 0) or None,
            )
            with self._assocs_lock:
                a = self._assocs.get(id(event.assoc))
                if a is not None:
                    a.studies.add(study)
            calling = a.calling_ae if a is not None else str(event.assoc.requestor.ae_title).strip()
            new = self.state.record_instance(meta, calling)
        except Exception as e:  # storage or database trouble: the sender may send it again
            logger.error("node: cannot keep a received instance (%s)", type(e).__name__)
            return OUT_OF_RESOURCES
        self.emit({"type": "received", "study_uid": study, "series_uid": series, "sop_uid": sop, "new": new})
        return SUCCESS

    def _close(self, event: Any, broke_off: bool) -> None:
        with self._assocs_lock:
            a = self._assocs.pop(id(event.assoc), None)
        if a is None or not a.studies:
            return
        self.state.set_interrupted(sorted(a.studies), broke_off)
        if broke_off:
            for s in a.studies:
                logger.warning("node: a push of study %s broke off", short(s))
                self.emit({"type": "interrupted", "study_uid": s})

    def _on_released(self, event: Any) -> None:
        self._close(event, broke_off=False)

    def _on_aborted(self, event: Any) -> None:
        self._close(event, broke_off=True)

    def _on_closed(self, event: Any) -> None:
        # Neither released nor aborted (the peer's connection just dropped): the push broke off.
        self._close(event, broke_off=True)

    # -- the worker ---------------------------------------------------------------------------------
    def _work_loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.tick()
            except Exception:
                logger.exception("node: worker error")
                busy = False
            if not busy:
                self._stop.wait(self.cfg.tick_s)

    def tick(self) -> bool:
        """Complete the studies that are due, then run one pending job. True when it ran a job."""
        now = time.monotonic()
        for study in self.state.due_studies(self.cfg.idle_s):
            if self._stop.is_set():
                return False
            if self._recheck.get(study.study_uid, 0.0) > now or self._pushing(study):
                continue
            self.complete(study)
        job = self.state.claim_job()
        if job is None:
            return False
        self.emit(
            {
                "type": "job.start",
                "job": job.id,
                "study_uid": job.study_uid,
                "task": job.task,
                "rule": job.rule,
            }
        )
        run_job(
            job,
            state=self.state,
            models=self.models,
            settings=self.settings,
            inbox=self.inbox,
            on_event=self.emit,
        )
        return True

    def _pushing(self, study: StudyView) -> bool:
        """An association that sent some of the study is still open: a slow sender is not done yet
        (until ``wait_s`` passes with nothing from it, for senders that keep associations open)."""
        with self._assocs_lock:
            open_ = any(study.study_uid in a.studies for a in self._assocs.values())
        quiet = (datetime.now(UTC) - study.last_received).total_seconds()
        return open_ and quiet < self.cfg.wait_s

    def complete(self, study: StudyView) -> None:
        """A quiet study: check it looks whole, then route it (or wait, or fail with the reason)."""
        uid = study.study_uid
        instances = self.state.instances(uid)
        partial = self.partial(study, instances)
        if partial is not None:
            waited = (datetime.now(UTC) - study.last_received).total_seconds()
            if waited < self.cfg.wait_s:
                self._recheck[uid] = time.monotonic() + self.cfg.idle_s
                reason = f"waiting: {partial}"
                if study.state != StudyState.WAITING or study.reason != reason:
                    self.state.set_study(uid, StudyState.WAITING, reason, seen=study.last_received)
                    self.emit({"type": "waiting", "study_uid": uid, "reason": partial})
                return
            reason = f"{partial}; nothing more arrived within {self.cfg.wait_s:g} s"
            if self.state.set_study(uid, StudyState.FAILED, reason, seen=study.last_received):
                logger.warning("node: study %s failed: incomplete", short(uid))
                self.emit({"type": "study.failed", "study_uid": uid, "reason": reason})
            return
        self._recheck.pop(uid, None)
        self.route(study, instances)

    def partial(self, study: StudyView, instances: list[InstanceMeta]) -> str | None:
        """Why the study looks incomplete, or None. Asks the sending PACS when it is a configured one."""
        source = self._source(study.calling_ae)
        counts: dict[str, int] | None = None
        if source is not None:
            name, conn = source
            try:
                counts = self._pacs_counts(name, conn, study.study_uid)
            except ArisError as e:
                logger.warning(
                    "node: completeness of study %s not checked (%s)",
                    short(study.study_uid),
                    type(e).__name__,
                )
        if counts is not None:
            have: dict[str, int] = {}
            for i in instances:
                have[i.series_uid] = have.get(i.series_uid, 0) + 1
            short_of = [
                f"series {rules.Series(s, [i for i in instances if i.series_uid == s]).number}: "
                f"{have[s]} of {counts[s]} instances received"
                for s in sorted(have)
                if s in counts and have[s] < counts[s]
            ]
            if short_of:
                return "; ".join(short_of)
            if study.interrupted:
                self.state.set_interrupted([study.study_uid], False)  # it broke off, but all arrived
            return None
        if study.interrupted:
            return f"a push of this study broke off after {len(instances)} instance(s)"
        return None

    def _source(self, calling_ae: str | None) -> tuple[str, PacsConnection] | None:
        if not calling_ae:
            return None
        for name, conn in self.settings.pacs.items():
            if conn.ae_title == calling_ae:
                return name, conn
        return None

    def _pacs_counts(self, name: str, conn: PacsConnection, study_uid: str) -> dict[str, int]:
        if conn.has_dicomweb:
            from aris.pacs.dicomweb import Client, attr

            with Client(name, conn) as client:
                found = client.search_series(study_uid)
            return {
                str(attr(s, "0020000E")): int(attr(s, "00201209"))
                for s in found
                if attr(s, "00201209") is not None
            }
        return dimse.series_counts(dimse.Peer(name, conn, self.cfg.ae_title), study_uid)

    def route(self, study: StudyView, instances: list[InstanceMeta]) -> None:
        uid = study.study_uid
        planned, why = rules.plan(instances, self.cfg.rules)
        if not planned:
            reason = "no rule matched: " + ("; ".join(why) if why else "no rules configured")
            if self.state.set_study(uid, StudyState.NO_RULE, reason, seen=study.last_received):
                logger.info(
                    "node: study %s: no rule matched (%d series)", short(uid), len(rules.group(instances))
                )
                self.emit({"type": "no_rule", "study_uid": uid, "reason": reason})
            return
        made = 0
        for p in planned:
            send_to = p.rule.send_to if p.rule.send_to is not None else self.cfg.send_to
            job, created = self.state.add_job(
                NewJob(
                    key=p.key,
                    study_uid=uid,
                    series_uid=p.series_uid,
                    rule=p.rule.name,
                    task=p.rule.task,
                    kind=p.kind,
                    inputs=p.inputs,
                    send_to=list(send_to),
                    question=p.rule.question,
                    options=dict(p.rule.options),
                    gsps=p.rule.gsps,
                    note=p.note(),
                )
            )
            made += created
            if created:
                self.state.store.audit(
                    "pacs.route",
                    actor="aris-node",
                    task=p.rule.task,
                    detail=f"study={uid} series={p.series_uid} rule={p.rule.name} job={job.id} instances={len(p.instances)}",
                )
        used = {i.sop_uid for p in planned for i in p.instances}
        unused = Counter(rules.sop_name(i.sop_class) for i in instances if i.sop_uid not in used)
        reason = f"{len(planned)} job(s), {made} new" + (
            "" if made else " (pushed again: these instances were routed before)"
        )
        if unused:
            reason += "; not used: " + ", ".join(f"{n} {name}" for name, n in sorted(unused.items()))
        if self.state.set_study(uid, StudyState.ROUTED, reason, seen=study.last_received):
            logger.info("node: study %s routed: %d job(s), %d new", short(uid), len(planned), made)
            self.emit({"type": "routed", "study_uid": uid, "jobs": len(planned), "new": made})

    # -- the sender ---------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sender.send_due()
            except Exception:
                logger.exception("node: sender error")
            self._stop.wait(self.cfg.tick_s)

    # -- waiting, for callers and tests ---------------------------------------------------------------
    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Block until ``predicate(events)`` holds; TimeoutError listing the events otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._events_lock:
                snapshot = list(self.events)
            if predicate(snapshot):
                return snapshot
            time.sleep(0.05)
        with self._events_lock:
            kinds = [e["type"] for e in self.events]
        raise TimeoutError(f"node: condition not met within {timeout:g} s; events: {kinds}")


def inbox_of(settings: ArisSettings) -> Path:
    return (settings.node.inbox or settings.home / "pacs" / "inbox").expanduser()


__all__ = ["Node", "inbox_of", "short"]
