"""dicomweb:// URLs and the settings that name PACS: parsing, the Path round trip, no credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from aris.errors import ConfigError
from aris.pacs import urls
from aris.pacs.settings import NodeSettings, PacsConnection, Rule

STUDY = "1.2.840.113619.2.55.3"
SERIES = "1.2.840.113619.2.55.3.4"


def test_study_and_series_urls() -> None:
    u = urls.parse(f"dicomweb://pacs/studies/{STUDY}/series/{SERIES}")
    assert (u.name, u.study, u.series, u.search) == ("pacs", STUDY, SERIES, None)
    assert u.ref() == f"dicomweb://pacs/studies/{STUDY}/series/{SERIES}"
    s = urls.parse(f"dicomweb://pacs/studies/{STUDY}")
    assert (s.study, s.series) == (STUDY, None)


def test_a_url_survives_pathlib() -> None:
    """CLI arguments and batch items are Paths, which fold '//' to '/'; the URL still reads the same."""
    url = f"dicomweb://pacs/studies/{STUDY}/series/{SERIES}"
    folded = str(Path(url))
    assert folded.startswith("dicomweb:/pacs")
    assert urls.parse(folded) == urls.parse(url)
    assert urls.public(folded) == url


def test_search_urls_keep_filters_and_wildcards() -> None:
    u = urls.parse("dicomweb://pacs?ModalitiesInStudy=CT&StudyDate=20261124-&PatientName=DOE*&limit=5")
    assert u.search == "study"
    assert u.filters == (("ModalitiesInStudy", "CT"), ("StudyDate", "20261124-"), ("PatientName", "DOE*"))
    assert u.limit == 5
    assert urls.parse(u.ref()) == u
    assert urls.parse("dicomweb://pacs?Modality=CT&level=series").search == "series"
    assert urls.parse("dicomweb://pacs/series?Modality=MR").search == "series"
    within = urls.parse(f"dicomweb://pacs/studies/{STUDY}/series?Modality=CT")
    assert (within.study, within.search) == (STUDY, "series")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("dicomweb:///studies/1.2", "without a PACS name"),
        ("dicomweb://pacs/studies/1.2/../../etc", "cannot read"),
        ("dicomweb://pacs/studies/1.2;rm", "not a DICOM UID"),
        ("dicomweb://pacs/studies/1.2?Modality=CT", "search filters apply"),
        ("dicomweb://pacs?limit=x", "limit must be a number"),
        ("dicomweb://pacs?level=instance", "level must be study or series"),
        ("http://pacs/studies/1.2", "not a dicomweb"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        urls.parse(url)


def test_public_drops_credentials() -> None:
    assert urls.public(f"dicomweb://user:secret@pacs/studies/{STUDY}") == f"dicomweb://pacs/studies/{STUDY}"
    assert "secret" not in urls.public("dicomweb:/user:secret@pacs?ModalitiesInStudy=CT")
    assert urls.public("dicomweb://pacs?ModalitiesInStudy=CT") == "dicomweb://pacs?ModalitiesInStudy=CT"


def test_unknown_pacs_name_lists_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARIS_PACS", '{"main": {"url": "http://127.0.0.1:8042/dicom-web"}}')
    with pytest.raises(ConfigError, match=r"no PACS named 'other' \(known: main\)"):
        urls.connection("other")
    assert urls.connection("main").url == "http://127.0.0.1:8042/dicom-web"


def test_connection_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="credentials"):
        PacsConnection(url="http://user:pw@host/dicom-web")
    with pytest.raises(ValidationError, match="all of ae_title, host and port"):
        PacsConnection(ae_title="PACS", host="127.0.0.1")
    with pytest.raises(ValidationError, match="needs a DICOMweb url"):
        PacsConnection(ae_title="PACS", host="h", port=104, send="stow")
    conn = PacsConnection(url="http://h:8042/dicom-web/", password="pw")
    assert conn.url == "http://h:8042/dicom-web"
    assert conn.send_method == "stow"
    assert "pw" not in repr(conn)  # a secret
    assert PacsConnection(ae_title="PACS", host="h", port=104).send_method == "c-store"


def test_node_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="AE title"):
        NodeSettings(ae_title="A\\B")
    with pytest.raises(ValidationError, match="unique"):
        NodeSettings(rules=[Rule(name="r", task="ct"), Rule(name="r", task="mri")])
    with pytest.raises(ValidationError, match="regular expression"):
        Rule(name="r", task="ct", modality="CT(")
