"""The public-file corpus (tests/inputs/corpus.py): no crash, no misleading or unrecognised message.

Over 500 files from the installed pydicom, pydicom-data and nibabel packages plus truncated copies,
each read as ``auto`` (DICOM also as ``image`` and ``cxr``): about 20 s on one core.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.inputs import corpus


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> list[corpus.Outcome]:
    files = corpus.public_files()
    cut = corpus.truncated_copies(files, tmp_path_factory.mktemp("cut"))
    return list(corpus.run(files + cut, {p for _, p in cut}))


def _show(items: list[corpus.Outcome]) -> str:
    return "\n".join(f"{o.kind} {o.path.name}: {o.verdict}: {o.message[:200]}" for o in items[:20])


def test_the_corpus_is_big_and_covers_every_source(outcomes: list[corpus.Outcome]) -> None:
    s = corpus.summary(outcomes)
    assert s["files"] >= 500
    assert {"pydicom", "pydicom-data", "nibabel"} <= set(s["by_source"])
    assert s["ok"] > 300  # most public images are read
    assert s["by_rule"]["truncated"] > 100  # and the truncated copies are called truncated


def test_no_crash_no_misleading_or_unclassified_message(outcomes: list[corpus.Outcome]) -> None:
    s = corpus.summary(outcomes)
    assert not s["crashes"], _show(s["crashes"])
    assert not s["misleading"], _show(s["misleading"])
    assert not s["unclassified"], _show(s["unclassified"])
    assert not s["escaped_warnings"], _show(s["escaped_warnings"])


def test_the_classifier_catches_a_false_truncation_claim(tmp_path: Path) -> None:
    # The check must be able to fail: a sound file described as truncated is misleading.
    from pydicom.data import get_testdata_file

    path = Path(str(get_testdata_file("CT_small.dcm")))
    facts = corpus.Facts(path)
    lie = corpus.Outcome("pydicom", path, "auto", "error", message="truncated: pixel data needs 1 bytes")
    assert corpus.classify(facts, lie).startswith("misleading: truncated")
    vague = corpus.Outcome("pydicom", path, "auto", "error", message="something went wrong")
    assert corpus.classify(facts, vague) == "unclassified"
    for keep in (3000, 20000):  # in an element header, in the pixel data
        cut = tmp_path / f"cut{keep}.dcm"
        cut.write_bytes(path.read_bytes()[:keep])
        assert corpus.Facts(cut).truncated  # found from pydicom's own reading, not by the reader under test
