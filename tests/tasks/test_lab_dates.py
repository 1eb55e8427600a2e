"""Lab extraction keeps a row whose collection time cannot be normalised, with a warning (issue 13)."""

from __future__ import annotations

import json

from aris.engines.fake import FakeEngine
from aris.tasks import get_task
from aris.tasks.lab import parse_page


def test_an_ambiguous_date_keeps_the_row_as_printed_with_a_note() -> None:
    reply = json.dumps(
        [
            {"name": "Glucose", "result": "128", "sample_collection_time": "02-09-2025 08:15:00"},
            {"name": "HbA1c", "result": "6.9", "sample_collection_time": "02/09/2025"},
        ]
    )
    tests = parse_page(reply)
    assert [t.name for t in tests] == ["Glucose", "HbA1c"]
    assert tests[0].sample_collection_time == "02-09-2025 08:15:00"
    assert tests[0].time_note is None
    assert tests[1].sample_collection_time == "02/09/2025"  # as printed, never guessed day- or month-first
    assert tests[1].time_note is not None
    assert any(n.startswith("HbA1c: sample_collection_time kept as printed") for n in tests.notes)


def test_the_task_keeps_the_page_and_warns(samples) -> None:  # type: ignore[no-untyped-def]
    from aris.inputs import read

    page = json.dumps(
        [{"name": "Sodium", "result": "139", "unit": "mmol/L", "sample_collection_time": "02/09/2025"}]
    )
    engine = FakeEngine(replies=[page] * 8)
    pdf = read(samples("lab/synthetic_lab_report.pdf"), "pdf")
    result = get_task("lab-extract").run(engine, [pdf])
    assert result.parsed is not None
    assert result.parsed["tests"][0]["sample_collection_time"] == "02/09/2025"
    assert any("kept as printed" in w for w in result.warnings)
    assert len(engine.prompts) == len(pdf.images)  # one call a page: no repair was asked for
