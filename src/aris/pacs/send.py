"""Sending results: objects written whole to the outbox, queued per destination, sent with STOW-RS or
C-STORE, and retried until they succeed.

An object is encoded and checked before it is queued, and a send is one whole instance (one STOW-RS
request or one C-STORE), so a PACS never holds half an SR. A destination that is down or answers
429/5xx is tried again after ``send_backoff_s``, doubling up to ``send_backoff_max_s``, for as long as
it takes; the send stays ``pending`` with its attempts and last error in ``aris node status``. A
destination that refuses the object (HTTP 4xx, a DIMSE failure status) gets the send marked
``failed``: sending it again would get the same answer, so it waits for ``aris node retry``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from aris.config import ArisSettings
from aris.errors import ArisError
from aris.pacs import dimse
from aris.pacs.dicomweb import Client
from aris.pacs.errors import SendError
from aris.pacs.state import PacsState, SendView
from aris.pacs.urls import connection

logger = logging.getLogger(__name__)


def write_atomic(path: Path, data: bytes) -> None:
    """Write the whole file or nothing (a crash leaves no half object to send)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def outbox_dir(settings: ArisSettings) -> Path:
    return settings.home / "pacs" / "outbox"


def deliver(ds: Dataset, destination: str, settings: ArisSettings, calling_ae: str) -> str:
    """Store one object on a configured PACS; returns how ("stow"/"c-store"). SendError on failure."""
    conn = connection(destination, settings)
    method = conn.send_method
    if method == "stow":
        with Client(destination, conn) as client:
            client.store([ds])
    else:
        dimse.store(dimse.Peer(destination, conn, calling_ae), [ds])
    return method


class Sender:
    """Sends what is due from the state's queue; one call of :meth:`send_due` is one pass."""

    def __init__(
        self,
        state: PacsState,
        settings: ArisSettings,
        *,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.state = state
        self.settings = settings
        self.node = settings.node
        self.on_event = on_event

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failed ones."""
        return float(min(self.node.send_backoff_max_s, self.node.send_backoff_s * 2 ** max(0, attempts - 1)))

    def send(self, send: SendView) -> bool:
        """One attempt at one queued send; records the outcome. True when it was stored."""
        try:
            ds = pydicom.dcmread(send.path)
        except (OSError, pydicom.errors.InvalidDicomError) as e:
            self.state.send_failed(
                send.id, f"the queued object cannot be read: {type(e).__name__}", retry_in=None
            )
            logger.error("send %d: queued object unreadable (%s)", send.id, type(e).__name__)
            return False
        try:
            method = deliver(ds, send.destination, self.settings, self.node.ae_title)
        except ArisError as e:
            retry = not isinstance(e, SendError) or e.retry
            attempts = send.attempts + 1
            self.state.send_failed(send.id, str(e), retry_in=self.backoff(attempts) if retry else None)
            logger.warning(
                "send %d (%s to %s): attempt %d failed (%s)%s",
                send.id,
                send.what,
                send.destination,
                attempts,
                type(e).__name__,
                "; will retry" if retry else "; refused, not retried",
            )
            self._event("send.failed", send, error=str(e), retry=retry)
            return False
        self.state.send_done(send.id)
        self.state.store.audit(
            "pacs.sent",
            actor="aris-node",
            item_key=send.item_key,
            detail=f"study={send.study_uid} {send.what}={send.sop_uid} to={send.destination} via={method}",
        )
        logger.info("send %d: %s stored on %s (%s)", send.id, send.what, send.destination, method)
        self._event("sent", send, method=method)
        return True

    def send_due(self) -> int:
        """Try every send that is due once; returns how many were stored."""
        return sum(self.send(s) for s in self.state.due_sends())

    def _event(self, kind: str, send: SendView, **extra: Any) -> None:
        if self.on_event is not None:
            self.on_event(
                {
                    "type": kind,
                    "send": send.id,
                    "what": send.what,
                    "sop_uid": send.sop_uid,
                    "study_uid": send.study_uid,
                    "destination": send.destination,
                    **extra,
                }
            )


__all__ = ["Sender", "deliver", "outbox_dir", "write_atomic"]
