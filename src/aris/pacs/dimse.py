"""DIMSE calls to a configured peer (pynetdicom SCU): C-ECHO, C-FIND, C-MOVE and C-STORE.

The node calls with its own AE title. Association failures (refused, rejected, aborted, timed out)
are retried ``retries`` times with exponential backoff, like DICOMweb calls; a DIMSE failure status
is an answer and is not. Errors name the peer by its configured name and address.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from aris.pacs.errors import NotFoundError, PacsError, SendError
from aris.pacs.settings import PacsConnection

logger = logging.getLogger(__name__)

VERIFICATION = "1.2.840.10008.1.1"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve - FIND
MOVE = "1.2.840.10008.5.1.4.1.2.2.2"  # Study Root Query/Retrieve - MOVE
SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")  # explicit, implicit VR little endian


def quiet_pynetdicom() -> None:
    """pynetdicom logs every association at INFO; the node's log keeps to its own lines."""
    quiet_libraries()


def quiet_libraries() -> None:
    """pynetdicom, dicomweb-client and highdicom log UIDs and association details at INFO; the node's
    log keeps to its own lines (counts and short hashes). Their warnings and errors still show."""
    for name in ("pynetdicom", "dicomweb_client", "highdicom"):
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.WARNING)


@dataclass(frozen=True)
class Peer:
    """A configured DIMSE peer and the AE title we call it with."""

    name: str
    conn: PacsConnection
    calling_ae: str

    @property
    def where(self) -> str:
        return f"PACS {self.name!r} ({self.conn.ae_title}@{self.conn.host}:{self.conn.port})"


def peer(name: str, calling_ae: str, settings: Any = None) -> Peer:
    from aris.pacs.urls import connection

    conn = connection(name, settings)
    if not conn.has_dimse:
        raise PacsError(f"PACS {name!r} has no DICOM address: set ae_title, host and port in [pacs.{name}]")
    return Peer(name, conn, calling_ae)


@contextmanager
def associate(p: Peer, contexts: Sequence[str], what: str) -> Iterator[Any]:
    """An established association (retried with backoff), released at the end."""
    from pynetdicom import AE

    quiet_pynetdicom()
    ae = AE(ae_title=p.calling_ae)
    for uid in contexts:
        ae.add_requested_context(uid, list(SYNTAXES))
    for t in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
        setattr(ae, t, p.conn.timeout)
    attempts = p.conn.retries + 1
    assoc = None
    problem = ""
    for attempt in range(1, attempts + 1):
        assoc = ae.associate(p.conn.host or "", p.conn.port or 0, ae_title=p.conn.ae_title or "")
        if assoc.is_established:
            break
        if assoc.is_rejected:
            problem = "association rejected (is our AE title known to the PACS?)"
            break  # a rejection is an answer
        problem = "association aborted" if assoc.is_aborted else "cannot connect or no reply"
        if attempt < attempts:
            delay = p.conn.backoff * 2 ** (attempt - 1)
            logger.warning(
                "pacs %s: %s: attempt %d of %d failed; retrying in %.1f s",
                p.name,
                what,
                attempt,
                attempts,
                delay,
            )
            time.sleep(delay)
    if assoc is None or not assoc.is_established:
        raise PacsError(f"{p.where}: {what}: {problem} ({attempts} attempt{'s' if attempts > 1 else ''})")
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _status(status: Dataset | None) -> int | None:
    return int(status.Status) if status is not None and "Status" in status else None


def echo(p: Peer) -> None:
    """C-ECHO; PacsError unless the peer answers Success."""
    with associate(p, [VERIFICATION], "C-ECHO") as assoc:
        status = _status(assoc.send_c_echo())
    if status != 0x0000:
        raise PacsError(f"{p.where}: C-ECHO: status {status if status is None else hex(status)}")


def find(p: Peer, level: str, keys: dict[str, Any]) -> list[Dataset]:
    """C-FIND at ``level`` (STUDY, SERIES, IMAGE) with ``keys`` (values to match; "" to return)."""
    query = Dataset()
    query.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(query, k, v)
    out: list[Dataset] = []
    with associate(p, [FIND], "C-FIND") as assoc:
        for status, ident in assoc.send_c_find(query, FIND):
            code = _status(status)
            if code in (0xFF00, 0xFF01) and ident is not None:
                out.append(ident)
            elif code not in (0x0000, 0xFF00, 0xFF01):
                raise PacsError(f"{p.where}: C-FIND: status {code if code is None else hex(code)}")
    return out


def series_counts(p: Peer, study_uid: str) -> dict[str, int]:
    """Instances per series of a study, as the PACS counts them (C-FIND at SERIES level)."""
    found = find(
        p,
        "SERIES",
        {"StudyInstanceUID": study_uid, "SeriesInstanceUID": "", "NumberOfSeriesRelatedInstances": ""},
    )
    out: dict[str, int] = {}
    for ds in found:
        n = ds.get("NumberOfSeriesRelatedInstances")
        if n not in (None, ""):
            out[str(ds.SeriesInstanceUID)] = int(n)
    return out


def move(p: Peer, destination_ae: str, study_uid: str, series_uid: str | None = None) -> dict[str, int]:
    """C-MOVE a study (or one series) to ``destination_ae``; counts of completed/failed/warning."""
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
    query.StudyInstanceUID = study_uid
    if series_uid:
        query.SeriesInstanceUID = series_uid
    final: Dataset | None = None
    with associate(p, [MOVE], "C-MOVE") as assoc:
        for status, _ in assoc.send_c_move(query, destination_ae, MOVE):
            if status is not None:
                final = status
    code = _status(final)
    counts = {
        "completed": int(final.get("NumberOfCompletedSuboperations", 0) or 0) if final else 0,
        "failed": int(final.get("NumberOfFailedSuboperations", 0) or 0) if final else 0,
        "warning": int(final.get("NumberOfWarningSuboperations", 0) or 0) if final else 0,
    }
    if code == 0xA801:
        raise PacsError(f"{p.where}: C-MOVE: the PACS does not know the destination AE {destination_ae!r}")
    if code not in (0x0000, 0xB000):
        if code == 0xA701 or (counts["completed"] == 0 and counts["failed"] == 0 and code == 0xC000):
            raise NotFoundError(f"{p.where}: C-MOVE: nothing to move for study {study_uid}")
        raise PacsError(f"{p.where}: C-MOVE: status {code if code is None else hex(code)} ({counts})")
    return counts


def store(p: Peer, datasets: Sequence[Dataset]) -> None:
    """C-STORE each dataset; SendError naming the status of the first refusal."""
    classes = sorted({str(ds.SOPClassUID) for ds in datasets})
    with associate(p, classes, "C-STORE") as assoc:
        for ds in datasets:
            status = _status(assoc.send_c_store(ds))
            if status is None:
                raise SendError(f"{p.where}: C-STORE: no reply (association lost)")
            if status not in (0x0000, 0xB000, 0xB007, 0xB006):
                # 0xA7xx: out of resources, worth another try; anything else is a refusal
                raise SendError(
                    f"{p.where}: C-STORE refused: status {hex(status)}", retry=0xA700 <= status < 0xA800
                )


__all__ = ["Peer", "associate", "echo", "find", "move", "peer", "quiet_pynetdicom", "series_counts", "store"]
