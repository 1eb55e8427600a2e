"""Lab extraction: field validation, the collection-time format, page merging, the whole task on the sample PDF."""

from __future__ import annotations

import json

import pytest

from aris.engines.fake import FakeEngine
from aris.tasks import get_task
from aris.tasks.lab import LabTest, collection_time, merge_tests, parse_page
from aris.tasks.parsing import ParseError


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("02-09-2025 08:15:00", "02-09-2025 08:15:00"),
        ("02-09-2025 08:15", "02-09-2025 08:15:00"),
        ("02.09.2025 08:15:00", "02-09-2025 08:15:00"),
        ("2025-09-02T08:15:00", "02-09-2025 08:15:00"),  # ISO: year first, unambiguous
        ("2025-09-02 08:15", "02-09-2025 08:15:00"),
        ("2025-09-02T08:15:00+02:00", "02-09-2025 08:15:00"),
    ],
)
def test_collection_time_accepts_unambiguous_forms(raw: str, normal: str) -> None:
    assert collection_time(raw) == normal


@pytest.mark.parametrize(
    "raw",
    [
        "09/02/2025 08:15",  # month-first or day-first? refused
        "02/09/2025 08:15:00",
        "Sep 2, 2025 8:15 AM",
        "2025-09-02",  # no time
        "31-02-2025 08:15:00",  # no such day
        "02-09-2025 25:15:00",
    ],
)
def test_collection_time_refuses_the_rest(raw: str) -> None:
    with pytest.raises(ValueError, match=r"DD-MM-YYYY|real date"):
        collection_time(raw)


def test_lab_test_coerces_numbers_and_nulls() -> None:
    t = LabTest.model_validate(
        {"name": " Hemoglobin ", "result": 11.2, "unit": None, "sample_collection_time": None}
    )
    assert (t.name, t.result, t.unit, t.sample_collection_time) == ("Hemoglobin", "11.2", "", "")


def test_parse_page_names_the_bad_item_and_field() -> None:
    reply = json.dumps(
        [
            {"name": "Glucose", "result": "128", "sample_collection_time": "02-09-2025 08:15:00"},
            {"name": "", "result": "5"},
            {"name": "HbA1c", "result": "6.9", "sample_collection_time": "09/02/2025 08:15"},
        ]
    )
    with pytest.raises(ParseError) as e:
        parse_page(f"Sure, here are the tests:\n```json\n{reply}\n```")
    text = " ".join(e.value.errors)
    assert "item 1" in text
    assert "name" in text
    assert "HbA1c" not in text  # an ambiguous date no longer rejects its row: tests/tasks/test_lab_dates.py


def test_merge_fills_blanks_and_keeps_different_results() -> None:
    a = [LabTest(name="Glucose", result="128", unit="mg/dL", panel="CMP")]
    b = [
        LabTest(name="glucose", result="128", unit="mg/dL", method="Hexokinase"),  # the same test again
        LabTest(name="Glucose", result="131", unit="mg/dL"),  # a different result: kept
    ]
    tests, dups = merge_tests([a, b])
    assert dups == 1
    assert len(tests) == 2
    assert tests[0].panel == "CMP"
    assert tests[0].method == "Hexokinase"


def test_two_page_pdf_one_call_per_page_merged(samples) -> None:  # type: ignore[no-untyped-def]
    from aris.inputs import read

    truth = json.loads(samples("lab/synthetic_lab_report.truth.json").read_text())
    prepared = read(samples("lab/synthetic_lab_report.pdf"))
    assert len(prepared.images) == 2
    # page 1 reply repeats two tests that page 2 also has; page 2 is cut off after its last full item
    page2 = json.dumps(truth[18:])[:-1] + ', {"name": "Tru'
    engine = FakeEngine(replies=[json.dumps(truth[:20]), page2])
    result = get_task("lab-extract").run(engine, [prepared])
    assert result.errors == []
    assert [s["name"] for s in result.steps] == ["page 1", "page 2"]
    assert result.parsed["pages"] == 2
    assert result.parsed["duplicates_merged"] == 2
    assert result.parsed["tests"] == truth  # every field of every test, in order
    assert any("cut off" in w for w in result.warnings)
    assert engine.prompts[0].count("<start_of_image>") == 1  # one page image per call
    assert "clinical data extraction specialist" in engine.prompts[0]


def test_text_layer_source_sends_each_page_text(samples) -> None:  # type: ignore[no-untyped-def]
    from aris.inputs import read

    prepared = read(samples("lab/synthetic_lab_report.pdf"))
    engine = FakeEngine(replies=["[]", "[]"])
    result = get_task("lab-extract").run(engine, [prepared], options={"source": "text"})
    assert result.parsed == {"tests": [], "pages": 2, "duplicates_merged": 0}
    assert "<start_of_image>" not in engine.prompts[0]
    assert "Hemoglobin" in engine.prompts[0]  # page 1's text layer
    assert engine.params[0].json_schema["type"] == "array"


def test_a_page_that_fails_twice_is_an_error_other_pages_kept(samples) -> None:  # type: ignore[no-untyped-def]
    from aris.inputs import read

    truth = json.loads(samples("lab/synthetic_lab_report.truth.json").read_text())
    prepared = read(samples("lab/synthetic_lab_report.pdf"))
    engine = FakeEngine(replies=[json.dumps(truth[:3]), "no idea", "still no idea"])
    result = get_task("lab-extract").run(engine, [prepared])
    assert len(result.parsed["tests"]) == 3
    assert result.errors
    assert all(e.startswith("page 2:") for e in result.errors)
