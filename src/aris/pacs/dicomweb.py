"""A DICOMweb client for one named PACS: dicomweb-client with auth, timeouts, retries and clear errors.

Every call is retried on connection errors, timeouts and HTTP 429/5xx, ``retries`` times with
exponential backoff (``backoff``, doubling); a 4xx is an answer and is not retried. What is left after
the retries is a :class:`~aris.pacs.errors.PacsError` naming the PACS, its address and what went wrong
(``PACS 'orthanc' (http://127.0.0.1:8042/dicom-web): no reply within 2 s (3 attempts)``), never its
credentials.

Orthanc 1.10 with its DICOMweb plugin 1.7 (see the project's service facts) needs three things that
dicomweb-client does not do by itself, done here for every server:

* wildcards: the client sends ``*`` as ``%2A``, which Orthanc matches literally; filters go raw;
* the ``Host`` header: the client sends the host without its port, and Orthanc builds every
  RetrieveURL/BulkDataURI from it; the port is kept;
* transfer syntax: retrieval asks for any (``*``) so instances come as stored, with no transcoding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.uri import build_query_string

from aris.pacs.errors import NotFoundError, PacsError, SendError
from aris.pacs.settings import PacsConnection

logger = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
ANY_SYNTAX = (("application/dicom", "*"),)
# Study and series attributes asked of QIDO besides the defaults.
STUDY_FIELDS = ("StudyInstanceUID", "ModalitiesInStudy", "NumberOfStudyRelatedInstances")
SERIES_FIELDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "BodyPartExamined",
    "SeriesDescription",
    "SeriesNumber",
    "NumberOfSeriesRelatedInstances",
)
INSTANCE_FIELDS = ("SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "00083002")


class _OrthancSafeClient(DICOMwebClient):  # type: ignore[misc]  # untyped library (Any)
    """dicomweb-client that sends query wildcards raw (``*``, not ``%2A``)."""

    def _http_get(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> requests.models.Response:
        if params:
            url += build_query_string(params).replace("%2A", "*").replace("%3F", "?")
        response: requests.models.Response = super()._http_get(url, None, headers, stream)
        return response


def attr(item: dict[str, Any], tag: str) -> Any:
    """The first value of a DICOM JSON attribute (``"0020000D"``), or None."""
    values = (item.get(tag) or {}).get("Value") or []
    if not values:
        return None
    value = values[0]
    if isinstance(value, dict):  # person names: never used here, and never shown
        return None
    return value


class Client:
    """QIDO-RS, WADO-RS and STOW-RS against one configured PACS."""

    def __init__(self, name: str, conn: PacsConnection) -> None:
        if conn.url is None:
            raise PacsError(f"PACS {name!r} has no DICOMweb url (it is a DIMSE-only peer)")
        from aris.pacs.dimse import quiet_libraries

        quiet_libraries()
        self.name = name
        self.conn = conn
        self.url = conn.url
        session = requests.Session()
        if conn.username is not None:
            password = conn.password.get_secret_value() if conn.password else ""
            session.auth = (conn.username, password)
        elif conn.token is not None:
            session.headers["Authorization"] = f"Bearer {conn.token.get_secret_value()}"
        session.verify = conn.verify_tls
        self.session = session
        self.api = _OrthancSafeClient(conn.url, session=session, timeout=conn.timeout)
        self.api.set_http_retry_params(retry=False)  # retried here, with one policy for every call
        netloc = urlsplit(conn.url).netloc
        self.api.host = netloc  # keep the port in the Host header (Orthanc builds URLs from it)
        self.calls = 0  # requests attempted, retries included (for tests and status)

    @property
    def where(self) -> str:
        return f"PACS {self.name!r} ({self.url})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one policy for every request ------------------------------------------------------------
    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` with the connection's retries and backoff; PacsError when it still fails."""
        attempts = self.conn.retries + 1
        for attempt in range(1, attempts + 1):
            self.calls += 1
            try:
                return fn()
            except requests.HTTPError as e:
                status = e.response.status_code if e.response is not None else 0
                if status == 404:
                    raise NotFoundError(f"{self.where}: {what}: not found (HTTP 404)") from None
                if status in (401, 403):
                    raise PacsError(
                        f"{self.where}: {what}: the PACS refused our credentials (HTTP {status}); "
                        f"check username/password or token in [pacs.{self.name}]"
                    ) from None
                problem = f"HTTP {status}"
                if status not in RETRY_STATUS:
                    raise SendError(f"{self.where}: {what}: {problem}", retry=False) from None
            except requests.Timeout:
                problem = f"no reply within {self.conn.timeout:g} s"
            except requests.ConnectionError as e:
                problem = f"cannot connect ({_reason(e)})"
            except requests.RequestException as e:
                problem = f"{type(e).__name__}: {_reason(e)}"
            if attempt < attempts:
                delay = self.conn.backoff * 2 ** (attempt - 1)
                logger.warning(
                    "pacs %s: attempt %d of %d failed (%s); retrying in %.1f s",
                    self.name,
                    attempt,
                    attempts,
                    problem.split(" (")[0],
                    delay,
                )
                time.sleep(delay)
        raise PacsError(f"{self.where}: {what}: {problem} ({attempts} attempt{'s' if attempts > 1 else ''})")

    # -- QIDO-RS ---------------------------------------------------------------------------------
    def search_studies(
        self, filters: Sequence[tuple[str, str]] = (), limit: int | None = None
    ) -> list[dict[str, Any]]:
        return self._search(
            "studies", lambda **kw: self.api.search_for_studies(**kw), filters, limit, STUDY_FIELDS
        )

    def search_series(
        self, study: str | None = None, filters: Sequence[tuple[str, str]] = (), limit: int | None = None
    ) -> list[dict[str, Any]]:
        def fn(**kw: Any) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = self.api.search_for_series(study_instance_uid=study, **kw)
            return found

        return self._search("series", fn, filters, limit, SERIES_FIELDS)

    def search_instances(self, study: str, series: str | None = None) -> list[dict[str, Any]]:
        def fn(**kw: Any) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = self.api.search_for_instances(
                study_instance_uid=study, series_instance_uid=series, **kw
            )
            return found

        return self._search("instances", fn, (), None, INSTANCE_FIELDS)

    def _search(
        self,
        level: str,
        fn: Callable[..., list[dict[str, Any]]],
        filters: Sequence[tuple[str, str]],
        limit: int | None,
        fields: Sequence[str],
    ) -> list[dict[str, Any]]:
        merged: dict[str, Any] = {}
        for key, value in filters:
            merged.setdefault(key, []).append(value)
        search = {k: v[0] if len(v) == 1 else v for k, v in merged.items()}
        out: list[dict[str, Any]] = []
        page = 500 if limit is None else min(limit, 500)
        while True:
            chunk = self.call(
                f"search for {level}",
                lambda: fn(search_filters=search or None, fields=list(fields), limit=page, offset=len(out)),
            )
            out.extend(chunk)
            if len(chunk) < page or (limit is not None and len(out) >= limit):
                break
        return out[:limit] if limit is not None else out

    # -- WADO-RS ---------------------------------------------------------------------------------
    def iter_series(self, study: str, series: str) -> Iterator[pydicom.Dataset]:
        """The series' instances as stored (any transfer syntax), streamed one at a time."""
        it: Iterator[pydicom.Dataset] = self.call(
            "retrieve series",
            lambda: iter(self.api.iter_series(study, series, media_types=ANY_SYNTAX)),
        )
        while True:
            try:
                ds = next(it)
            except StopIteration:
                return
            except requests.RequestException as e:
                raise PacsError(f"{self.where}: retrieve series: broke off ({_reason(e)})") from None
            yield ds

    def series_metadata(self, study: str, series: str) -> list[pydicom.Dataset]:
        """Every instance's header (no bulk data) as pydicom datasets."""
        items = self.call(
            "retrieve series metadata", lambda: self.api.retrieve_series_metadata(study, series)
        )
        return [pydicom.Dataset.from_json(item, bulk_data_uri_handler=lambda *a: b"") for item in items]

    # -- STOW-RS ---------------------------------------------------------------------------------
    def store(self, datasets: Sequence[pydicom.Dataset]) -> None:
        """Store instances; SendError unless the PACS reports every one stored."""
        wanted = {str(ds.SOPInstanceUID) for ds in datasets}
        reply = self.call("store", lambda: self.api.store_instances(list(datasets)))
        failed = [
            f"{item.get('ReferencedSOPInstanceUID', '?')} (reason {item.get('FailureReason', '?')})"
            for item in reply.get("FailedSOPSequence", [])
        ]
        stored = {
            str(item.get("ReferencedSOPInstanceUID")) for item in reply.get("ReferencedSOPSequence", [])
        }
        if failed:
            raise SendError(
                f"{self.where}: store refused {len(failed)} instance(s): {'; '.join(failed)}", retry=False
            )
        if not wanted <= stored:
            raise SendError(f"{self.where}: store did not confirm {len(wanted - stored)} instance(s)")

    def ping(self) -> int:
        """One study search with limit 1: proves address, credentials and DICOMweb root. Returns hits."""
        return len(self.search_studies(limit=1))


def _reason(e: BaseException) -> str:
    """The innermost cause, short ("Connection refused"), without URLs (they may carry queries)."""
    inner: BaseException = e
    while inner.__context__ is not None and inner.__context__ is not inner:
        inner = inner.__context__
    text = str(inner) or type(inner).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    if "Name or service not known" in text or "Errno -2" in text:
        return "unknown host"
    return type(inner).__name__


def client(name: str, settings: Any = None) -> Client:
    """The client for ``[pacs.NAME]``."""
    from aris.pacs.urls import connection

    return Client(name, connection(name, settings))


__all__ = ["ANY_SYNTAX", "Client", "attr", "client"]
