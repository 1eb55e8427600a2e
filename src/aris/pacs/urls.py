"""``dicomweb://`` URLs: a study, a series, or a search on a named PACS.

=====================================================  ===========================================
URL                                                    means
=====================================================  ===========================================
``dicomweb://NAME/studies/<StudyUID>``                 one study (its image series)
``dicomweb://NAME/studies/<StudyUID>/series/<UID>``    one series
``dicomweb://NAME?ModalitiesInStudy=CT&StudyDate=...`` a QIDO search for studies (a worklist)
``dicomweb://NAME/series?Modality=CT``                 a QIDO search for series
``dicomweb://NAME/studies/<StudyUID>/series?...``      the series of one study that match
=====================================================  ===========================================

NAME is a ``[pacs.NAME]`` connection in the config; URLs never carry credentials. A search may add
``level=study|series`` and ``limit=N``; every other key is a QIDO filter passed to the PACS as is
(wildcards ``*`` and ``?`` included).

A URL that went through :class:`pathlib.Path` loses one slash (``dicomweb:/NAME/...``); that form is
read the same, so a URL survives the code paths that store inputs as paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl, quote, urlencode

from aris.errors import ConfigError

if TYPE_CHECKING:
    from aris.config import ArisSettings
    from aris.pacs.settings import PacsConnection

SCHEME = "dicomweb"
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):/{1,2}(?P<rest>.*)$", re.DOTALL)
_RESERVED = {"level", "limit"}


def valid_uid(uid: str) -> bool:
    """A DICOM UID: digits and dots, at most 64 characters (also what makes it safe in a file name)."""
    return len(uid) <= 64 and bool(UID.match(uid))


@dataclass(frozen=True)
class PacsUrl:
    """A parsed ``dicomweb://`` URL."""

    name: str
    study: str | None = None
    series: str | None = None
    search: Literal["study", "series"] | None = None  # a QIDO search at this level
    filters: tuple[tuple[str, str], ...] = ()
    limit: int | None = None
    userinfo: bool = field(default=False, compare=False)

    @property
    def is_search(self) -> bool:
        return self.search is not None

    def ref(self) -> str:
        """The canonical URL (no credentials), as an item's input and in records."""
        path = ""
        if self.study:
            path += f"/studies/{self.study}"
            if self.series:
                path += f"/series/{self.series}"
            elif self.search == "series":
                path += "/series"
        elif self.search == "series":
            path = "/series"
        elif self.search == "study":
            path = "/studies" if not self.filters and self.limit is None else ""
        query = list(self.filters)
        if self.limit is not None:
            query.append(("limit", str(self.limit)))
        qs = f"?{urlencode(query, safe='*?,-', quote_via=quote)}" if query else ""
        return f"{SCHEME}://{self.name}{path}{qs}"

    def __str__(self) -> str:
        return self.ref()


def split_scheme(text: str) -> tuple[str, str] | None:
    """``(scheme, rest)`` of ``scheme://rest`` or of the one-slash form a Path leaves; else None."""
    m = _URL.match(text)
    if m is None:
        return None
    return m.group("scheme").lower(), m.group("rest")


def parse(url: str) -> PacsUrl:
    """Parse a ``dicomweb://`` URL; ConfigError saying what is wrong with it."""
    parts = split_scheme(str(url))
    if parts is None or parts[0] != SCHEME:
        raise ConfigError(f"not a {SCHEME}:// URL: {public(str(url))!r}")
    rest = parts[1]
    rest, _, query = rest.partition("?")
    authority, _, path = rest.partition("/")
    userinfo = "@" in authority
    name = authority.rpartition("@")[2]
    if not name:
        raise ConfigError(f"{SCHEME} URL without a PACS name: {public(str(url))!r} (dicomweb://NAME/...)")
    segs = [s for s in path.split("/") if s]
    study = series = None
    search: Literal["study", "series"] | None = None
    bad = ConfigError(
        f"cannot read {public(str(url))!r}: expected dicomweb://NAME/studies/<uid>[/series/<uid>] "
        "or a search dicomweb://NAME?KEY=VALUE..."
    )
    if not segs or segs == ["studies"]:
        search = "study"
    elif segs == ["series"]:
        search = "series"
    elif segs[0] == "studies" and len(segs) in (2, 3, 4):
        study = segs[1]
        if len(segs) == 3:
            if segs[2] != "series":
                raise bad
            search = "series"
        elif len(segs) == 4:
            if segs[2] != "series":
                raise bad
            series = segs[3]
    else:
        raise bad
    for uid in (study, series):
        if uid is not None and not valid_uid(uid):
            raise ConfigError(f"{uid!r} in {public(str(url))!r} is not a DICOM UID (digits and dots)")
    filters: list[tuple[str, str]] = []
    limit = None
    level: str | None = None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "level":
            level = value
        elif key == "limit":
            try:
                limit = int(value)
            except ValueError:
                raise ConfigError(f"limit must be a number, not {value!r}") from None
            if limit < 1:
                raise ConfigError("limit must be at least 1")
        else:
            filters.append((key, value))
    if level is not None:
        if level not in ("study", "series"):
            raise ConfigError(f"level must be study or series, not {level!r}")
        if search is None:
            raise ConfigError(f"level= applies to a search, not to {public(str(url))!r}")
        if study is None:
            search = level  # type: ignore[assignment]
    if (filters or limit is not None) and search is None:
        raise ConfigError(
            f"{public(str(url))!r} names one study/series; search filters apply to dicomweb://NAME?..."
        )
    return PacsUrl(name, study, series, search, tuple(filters), limit, userinfo)


def public(url: str) -> str:
    """The URL as it may appear in a record: no user or password, and in its two-slash form."""
    parts = split_scheme(str(url))
    if parts is None:
        return re.sub(r"//[^/@]*@", "//", str(url))
    scheme, rest = parts
    authority, sep, tail = rest.partition("/")
    authority = authority.rpartition("@")[2]
    query_at = authority.find("?")
    if query_at >= 0:  # dicomweb://NAME?filters: the query is not part of the name
        authority, tail, sep = authority[:query_at], authority[query_at:], ""
    return f"{scheme}://{authority}{sep}{tail}"


def connection(name: str, settings: ArisSettings | None = None) -> PacsConnection:
    """The ``[pacs.NAME]`` connection; ConfigError listing the configured names when unknown."""
    from aris.config import ArisSettings

    settings = settings or ArisSettings.from_flags()
    try:
        return settings.pacs[name]
    except KeyError:
        known = ", ".join(sorted(settings.pacs)) or "none configured"
        raise ConfigError(
            f"no PACS named {name!r} (known: {known}); add a [pacs.{name}] table with url = "
            "'http://HOST:PORT/dicom-web' to the config file"
        ) from None


__all__ = ["SCHEME", "PacsUrl", "connection", "parse", "public", "split_scheme", "valid_uid"]
