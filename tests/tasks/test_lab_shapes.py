"""Lab replies in other shapes than the asked-for list, and the cross-page merge: nothing dropped
silently, nothing merged that could be another test."""

from __future__ import annotations

import json

import pytest

from aris.engines.fake import FakeEngine
from aris.tasks import get_task
from aris.tasks.lab import LabTest, merge_tests, parse_page
from aris.tasks.parsing import ParseError

GROUPED = {
    "Complete Blood Count": [{"name": "Hemoglobin", "result": "11.2", "unit": "g/dL"}],
    "Renal Function": [
        {"name": "Creatinine", "result": "2.4", "unit": "mg/dL"},
        {"name": "Potassium", "result": "6.2", "unit": "mmol/L", "panel": "Electrolytes"},
    ],
}


# -- tests grouped by panel -----------------------------------------------------------------------


def test_tests_grouped_by_panel_are_all_kept_with_the_key_as_panel() -> None:
    tests = parse_page(json.dumps(GROUPED))
    assert [(t.name, t.result, t.panel) for t in tests] == [
        ("Hemoglobin", "11.2", "Complete Blood Count"),
        ("Creatinine", "2.4", "Renal Function"),
        ("Potassium", "6.2", "Electrolytes"),  # the model's own panel is kept
    ]
    assert any("grouped its tests under 2 keys" in n for n in tests.notes)


def test_a_single_wrapper_list_is_read_as_before() -> None:
    tests = parse_page(json.dumps({"tests": [{"name": "Sodium", "result": "139"}]}))
    assert [(t.name, t.panel) for t in tests] == [("Sodium", "")]
    assert tests.notes == []
    assert list(parse_page(json.dumps({"tests": []}))) == []


def test_a_wrapper_key_is_not_taken_for_a_panel() -> None:
    reply = {"tests": [{"name": "Sodium", "result": "139"}], "Lipids": [{"name": "LDL", "result": "160"}]}
    tests = parse_page(json.dumps(reply))
    assert [(t.name, t.panel) for t in tests] == [("Sodium", ""), ("LDL", "Lipids")]


def test_a_bad_item_in_a_group_fails_the_page_naming_its_group() -> None:
    reply = {"CBC": [{"name": "Hemoglobin", "result": "11.2"}], "Renal": [{"name": "", "result": "2.4"}]}
    with pytest.raises(ParseError, match="Renal item 0"):
        parse_page(json.dumps(reply))


def test_values_outside_the_tests_are_named_in_a_note() -> None:
    tests = parse_page(json.dumps({"patient": "Jane Doe", "tests": [{"name": "Sodium", "result": "139"}]}))
    assert [t.name for t in tests] == ["Sodium"]
    assert any("'patient'" in n and "Jane Doe" in n for n in tests.notes)


def test_the_task_keeps_every_panel_of_a_grouped_page(samples) -> None:  # type: ignore[no-untyped-def]
    from aris.inputs import read

    pdf = read(samples("lab/synthetic_lab_report.pdf"), "pdf")
    engine = FakeEngine(replies=[json.dumps(GROUPED), "[]"])
    result = get_task("lab-extract").run(engine, [pdf])
    assert result.errors == []
    assert [t["name"] for t in result.parsed["tests"]] == ["Hemoglobin", "Creatinine", "Potassium"]
    assert any(w.startswith("page 1:") and "grouped" in w for w in result.warnings)


def test_the_report_prompt_keeps_every_panel(samples) -> None:  # type: ignore[no-untyped-def]
    from aris.inputs import read

    pdf = read(samples("lab/synthetic_lab_report.pdf"), "pdf")
    engine = FakeEngine(replies=[f"Here are the results:\n```json\n{json.dumps(GROUPED)}\n```"])
    result = get_task("lab-extract").run(engine, [pdf], options={"prompts": "report"})
    assert result.errors == []
    assert [t["name"] for t in result.parsed["tests"]] == ["Hemoglobin", "Creatinine", "Potassium"]


# -- alternative and unknown keys -----------------------------------------------------------------


def test_alternative_keys_map_to_their_fields() -> None:
    reply = [{"name": "Potassium", "result": "6.2", "units": "mmol/L", "reference_range": "3.5-5.1"}]
    tests = parse_page(json.dumps(reply))
    assert (tests[0].unit, tests[0].range) == ("mmol/L", "3.5-5.1")
    assert tests.notes == []


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("ref_range", "range"),
        ("normal_range", "range"),
        ("reference", "range"),
        ("Reference Range", "range"),
        ("Units", "unit"),
        ("test_name", "name"),
        ("value", "result"),
        ("sample_type", "specimen"),
        ("collection_time", "sample_collection_time"),
    ],
)
def test_each_alternative_key(key: str, field: str) -> None:
    item = {"name": "Sodium", "result": "139"}
    item.pop(field, None)  # the alternative stands in for the field's own key
    item[key] = "02-09-2025 08:15:00"
    test = LabTest.model_validate(item)
    assert getattr(test, field) == "02-09-2025 08:15:00"
    assert test.key_notes == []


def test_an_unknown_key_with_a_value_is_a_note_not_silence() -> None:
    reply = [{"name": "Potassium", "result": "6.2", "flag": "H", "comment": "", "status": None}]
    tests = parse_page(json.dumps(reply))
    assert tests.notes == ["Potassium: key 'flag' is not a lab test field; its value 'H' was not kept"]


def test_a_conflicting_alternative_is_a_note_and_the_field_wins() -> None:
    reply = [{"name": "Potassium", "result": "6.2", "range": "3.5-5.1", "normal_range": "3.5-5.0"}]
    tests = parse_page(json.dumps(reply))
    assert tests[0].range == "3.5-5.1"
    assert any("'normal_range'" in n and "3.5-5.0" in n for n in tests.notes)


def test_an_empty_field_is_filled_from_its_alternative() -> None:
    test = LabTest.model_validate({"name": "Sodium", "result": "139", "unit": "", "units": "mmol/L"})
    assert test.unit == "mmol/L"
    assert test.key_notes == []


def test_the_task_warns_about_an_unknown_key(samples) -> None:  # type: ignore[no-untyped-def]
    from aris.inputs import read

    pdf = read(samples("lab/synthetic_lab_report.pdf"), "pdf")
    page = json.dumps([{"name": "Potassium", "result": "6.2", "units": "mmol/L", "flag": "critical"}])
    engine = FakeEngine(replies=[page, "[]"])
    result = get_task("lab-extract").run(engine, [pdf])
    assert result.parsed["tests"][0]["unit"] == "mmol/L"
    assert any("page 1: Potassium: key 'flag'" in w and "critical" in w for w in result.warnings)


# -- the merge ------------------------------------------------------------------------------------


def _merged(*rows: LabTest) -> list[LabTest]:
    return merge_tests([[r] for r in rows])[0]


def test_comparison_signs_keep_results_apart() -> None:
    assert [
        t.result
        for t in _merged(LabTest(name="Troponin", result="<0.01"), LabTest(name="Troponin", result="0.01"))
    ] == ["<0.01", "0.01"]
    assert len(_merged(LabTest(name="eGFR", result=">60"), LabTest(name="eGFR", result="<60"))) == 2
    assert (
        len(_merged(LabTest(name="Base excess", result="-2"), LabTest(name="Base excess", result="2"))) == 2
    )
    # spacing alone is the same result
    assert len(_merged(LabTest(name="eGFR", result="> 60"), LabTest(name="eGFR", result=">60"))) == 1


def test_different_collection_times_are_different_tests() -> None:
    a = LabTest(name="eGFR", result=">60", sample_collection_time="01-03-2025 08:00:00")
    b = LabTest(name="eGFR", result="<60", sample_collection_time="15-03-2025 08:00:00")
    c = LabTest(name="eGFR", result=">60", sample_collection_time="15-03-2025 08:00:00")
    tests, dups = merge_tests([[a], [b, c]])
    assert dups == 0
    assert [(t.result, t.sample_collection_time) for t in tests] == [
        (">60", "01-03-2025 08:00:00"),
        ("<60", "15-03-2025 08:00:00"),
        (">60", "15-03-2025 08:00:00"),
    ]


def test_a_row_without_a_time_fills_and_is_filled() -> None:
    a = LabTest(name="Sodium", result="139", unit="mmol/L", sample_collection_time="01-03-2025 08:00:00")
    b = LabTest(name="Sodium", result="139", unit="mmol/L", specimen="Serum")
    tests, dups = merge_tests([[a], [b]])
    assert dups == 1
    assert (tests[0].sample_collection_time, tests[0].specimen) == ("01-03-2025 08:00:00", "Serum")


def test_different_specimens_are_different_tests() -> None:
    a = LabTest(name="Glucose", result="5.1", unit="mmol/L", specimen="Serum")
    b = LabTest(name="Glucose", result="5.1", unit="mmol/L", specimen="CSF")
    assert [t.specimen for t in _merged(a, b)] == ["Serum", "CSF"]


def test_a_row_that_matches_two_earlier_rows_is_kept_alone() -> None:
    a = LabTest(name="eGFR", result=">60", sample_collection_time="01-03-2025 08:00:00")
    b = LabTest(name="eGFR", result=">60", sample_collection_time="15-03-2025 08:00:00")
    c = LabTest(name="eGFR", result=">60")  # which one? not guessed
    tests, dups = merge_tests([[a, b], [c]])
    assert dups == 0
    assert len(tests) == 3


def test_units_differing_in_case_are_not_merged() -> None:
    assert (
        len(_merged(LabTest(name="X", result="5", unit="mU/L"), LabTest(name="X", result="5", unit="MU/L")))
        == 2
    )
    assert len(_merged(LabTest(name="X", result="5", unit="%"), LabTest(name="X", result="5"))) == 2
