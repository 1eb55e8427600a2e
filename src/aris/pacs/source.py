"""The ``dicomweb`` input source: a study or series on a PACS, read anywhere a path is.

Registered in :data:`aris.inputs.SOURCES`, so ``aris.inputs.read("dicomweb://pacs/studies/<uid>")``,
``aris run ct dicomweb://pacs/studies/<uid>/series/<uid>`` and batch items whose input is such a URL
all come here:

* :func:`fetch` retrieves the instances with WADO-RS, as stored (no transcoding), into the private
  temporary folder it is given, one sub-folder per series, files named by SOP Instance UID;
* :func:`digest` names the content for result keys from QIDO alone (no pixels): the sorted
  SOP Instance UIDs with their SOP classes (and transfer syntaxes where the PACS reports them);
* :func:`public` is the URL as records may show it;
* :func:`worklist` turns a search URL (``dicomweb://pacs?ModalitiesInStudy=CT&StudyDate=20261124-``)
  into batch items, one per matching study or series.

Only image instances are read: SR, presentation states, segmentations, key-object notes and other
non-image objects in a study are skipped and named in the log (by SOP class, never by content), so a
result Aris stored back into the study does not change the study's digest.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aris.errors import InputError
from aris.pacs import urls
from aris.pacs.dicomweb import Client, attr
from aris.pacs.errors import NotFoundError, PacsError

if TYPE_CHECKING:
    from aris.batch.manifest import WorkItem

logger = logging.getLogger(__name__)


def is_image_sop(sop_class: str) -> bool:
    """Whether a SOP class holds pixels a reader can use ("... Image Storage"), by its DICOM name."""
    from pydicom.uid import UID

    return "Image Storage" in UID(sop_class).name


def sop_name(sop_class: str) -> str:
    from pydicom.uid import UID

    name = UID(sop_class).name
    return name if name != sop_class else f"SOP class {sop_class}"


def _client(url: urls.PacsUrl) -> Client:
    return Client(url.name, urls.connection(url.name))


def public(url: str) -> str:
    """The URL without credentials, in its two-slash form."""
    return urls.public(url)


def _instances(client: Client, ref: urls.PacsUrl) -> list[dict[str, Any]]:
    if ref.study is None or ref.is_search:
        raise InputError(ref.ref(), "a search URL is a worklist (aris batch run); read one study or series")
    try:
        found = client.search_instances(ref.study, ref.series)
    except NotFoundError:
        found = []
    if not found:
        what = f"series {ref.series} of study {ref.study}" if ref.series else f"study {ref.study}"
        raise InputError(ref.ref(), f"{what} is not on {client.where}")
    return found


def _split(found: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Counter[str]]:
    images = []
    skipped: Counter[str] = Counter()
    for item in found:
        sop = attr(item, "00080016") or ""
        if is_image_sop(sop):
            images.append(item)
        else:
            skipped[sop_name(sop)] += 1
    return images, skipped


def fetch(url: str, dest: Path) -> Path:
    """Retrieve the study/series at ``url`` into ``dest``; returns the folder to read.

    Raises
    ------
    InputError
        The study or series is not there, holds no images, or came back incomplete.
    PacsError
        The PACS is unreachable, too slow or refuses us, after the configured retries.
    """
    ref = urls.parse(url)
    with _client(ref) as client:
        found = _instances(client, ref)
        images, skipped = _split(found)
        if skipped:
            logger.info(
                "dicomweb: skipped %d non-image instance(s): %s",
                sum(skipped.values()),
                ", ".join(f"{n} {name}" for name, n in sorted(skipped.items())),
            )
        if not images:
            names = ", ".join(sorted(skipped))
            raise InputError(ref.ref(), f"no image instances to read (only {names})")
        by_series: dict[str, set[str]] = {}
        for item in images:
            by_series.setdefault(attr(item, "0020000E"), set()).add(attr(item, "00080018"))
        root = dest / "study"
        total = 0
        for series, wanted in sorted(by_series.items()):
            if not urls.valid_uid(series):
                raise InputError(ref.ref(), f"the PACS returned a malformed Series Instance UID {series!r}")
            folder = root / series
            folder.mkdir(parents=True, exist_ok=True)
            got: set[str] = set()
            for ds in client.iter_series(ref.study or "", series):
                sop = str(ds.get("SOPInstanceUID", ""))
                if sop not in wanted or not urls.valid_uid(sop):
                    continue  # a non-image object of the series, or one added since the search
                ds.save_as(folder / f"{sop}.dcm", enforce_file_format=True)
                got.add(sop)
            if got != wanted:
                raise InputError(
                    ref.ref(),
                    f"series {series}: {len(got)} of {len(wanted)} instances retrieved "
                    "(partial: the PACS may still be receiving it; try again later)",
                )
            total += len(got)
    logger.info("dicomweb: %d instance(s) in %d series retrieved", total, len(by_series))
    if ref.series is not None:
        return root / ref.series
    return root if len(by_series) > 1 else root / next(iter(by_series))


def digest(url: str) -> str:
    """sha256 over the image instances' sorted (SOP Instance UID, SOP class, transfer syntax).

    DICOM gives changed content a new SOP Instance UID, so the UIDs name the content without
    downloading any pixels; the transfer syntax joins in where the PACS reports it.
    """
    ref = urls.parse(url)
    with _client(ref) as client:
        images, _ = _split(_instances(client, ref))
    lines = sorted(
        f"{attr(i, '00080018')}\0{attr(i, '00080016')}\0{attr(i, '00083002') or ''}" for i in images
    )
    h = hashlib.sha256(b"aris-dicomweb-v1\0")
    for line in lines:
        h.update(line.encode() + b"\n")
    return h.hexdigest()


def search(url: str) -> list[str]:
    """The study or series URLs a search URL matches, sorted by UID."""
    ref = urls.parse(url)
    if not ref.is_search:
        return [ref.ref()]
    with _client(ref) as client:
        if ref.search == "series":
            found = client.search_series(ref.study, ref.filters, ref.limit)
            out = {
                urls.PacsUrl(ref.name, attr(s, "0020000D") or ref.study, attr(s, "0020000E")).ref()
                for s in found
                if urls.valid_uid(str(attr(s, "0020000E")))
                and urls.valid_uid(str(attr(s, "0020000D") or ref.study))
            }
        else:
            found = client.search_studies(ref.filters, ref.limit)
            out = {
                urls.PacsUrl(ref.name, attr(s, "0020000D")).ref()
                for s in found
                if urls.valid_uid(str(attr(s, "0020000D")))
            }
    logger.info("dicomweb: search matched %d %s", len(out), ref.search)
    return sorted(out)


def worklist(url: str, *, question: str | None = None, kind: str = "auto") -> list[WorkItem]:
    """Batch items for a search URL: one per matching study (or series with ``level=series``)."""
    from aris.batch.manifest import WorkItem

    ref = urls.parse(url)
    try:
        found = search(url)
    except PacsError as e:
        raise InputError(ref.ref(), str(e)) from None
    if not found:
        raise InputError(ref.ref(), "the search matched nothing on the PACS")
    return [WorkItem(paths=(u,), question=question, kind=kind) for u in found]


__all__ = ["digest", "fetch", "is_image_sop", "public", "search", "sop_name", "worklist"]
