"""Trend math against hand-computed values on the sample bundle (HbA1c 6.1, 7.4, 6.9)."""

from __future__ import annotations

import pytest

from aris.engines.fake import FakeEngine
from aris.tasks import get_task
from aris.tasks.trends import compute_series, slope_per_year, table


@pytest.fixture(scope="module")
def record(samples):  # type: ignore[no-untyped-def]
    from aris.inputs import read

    return read(samples("fhir/synthetic_patient_bundle_r4.json"))


def test_hba1c_slope_change_and_flags_by_hand(record) -> None:  # type: ignore[no-untyped-def]
    (s,) = compute_series(record.extra["resources"], ["4548-4"])
    assert [p.value for p in s.values] == [6.1, 7.4, 6.9]
    assert [p.date[:10] for p in s.values] == ["2023-03-10", "2024-03-12", "2025-09-02"]
    # Times in years after 2023-03-10 09:00: 368 days (2024 is leap) and 906 days 23 h.
    x = [0.0, 368 / 365.25, (906 + 23 / 24) / 365.25]
    y = [6.1, 7.4, 6.9]
    mx, my = sum(x) / 3, sum(y) / 3
    by_hand = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sum((a - mx) ** 2 for a in x)
    assert by_hand == pytest.approx(0.27339, abs=1e-5)  # worked on paper: 0.852829 / 3.119446
    assert s.slope_per_year == pytest.approx(by_hand, abs=1e-6)
    assert s.change_since_last == pytest.approx(-0.5)
    assert s.change_since_last_pct == pytest.approx(-0.5 / 7.4 * 100, abs=1e-3)
    assert (s.first, s.latest, s.minimum, s.maximum, s.n) == (6.1, 6.9, 6.1, 7.4, 3)
    # no referenceRange in the bundle: the built-in typical range, labelled as such
    assert (s.reference_low, s.reference_high) == (4.0, 5.6)
    assert "built-in" in (s.reference_source or "")
    assert [p.flag for p in s.values] == ["H", "H", "H"]
    assert s.out_of_range == 3
    assert s.flags == ["latest above range"]
    assert all(p.id.startswith("Observation/") and p.id in record.extra["resources"] for p in s.values)


def test_blood_pressure_components_are_their_own_series(record) -> None:  # type: ignore[no-untyped-def]
    series = {s.code: s for s in compute_series(record.extra["resources"])}
    assert "8480-6" in series
    assert "8462-4" in series
    assert series["8480-6"].unit == "mm[Hg]"
    assert series["8480-6"].n == 4
    # the panel itself has no value and is not a series
    assert "85354-9" not in series


def test_newly_out_of_range_and_back_within(record) -> None:  # type: ignore[no-untyped-def]
    series = {s.code: s for s in compute_series(record.extra["resources"])}
    hr = series["8867-4"]  # heart rate 76, 104, 74, 70
    assert [p.flag for p in hr.values] == [None, "H", None, None]
    assert hr.flags == []
    hb = series["718-7"]  # hemoglobin 12.8 then 11.2 g/dL
    assert [p.flag for p in hb.values] == [None, "L"]
    assert hb.flags == ["latest below range", "newly out of range"]
    crp = series["1988-5"]
    assert crp.slope_per_year is None
    assert "single value" in crp.flags


def test_slope_needs_two_distinct_times() -> None:
    from datetime import UTC, datetime

    t = datetime(2024, 1, 1, tzinfo=UTC)
    assert slope_per_year([(t, 1.0)]) is None
    assert slope_per_year([(t, 1.0), (t, 2.0)]) is None
    t2 = datetime(2025, 1, 1, tzinfo=UTC)  # 366 days later (2024 is leap)
    assert slope_per_year([(t, 1.0), (t2, 3.0)]) == pytest.approx(2.0 / (366 / 365.25))


def test_the_numbers_come_from_code_not_the_model(record) -> None:  # type: ignore[no-untyped-def]
    engine = FakeEngine(replies=["HbA1c rose to 9.9% (a made-up number)."])
    result = get_task("trends").run(engine, [record], options={"codes": ["4548-4"]})
    assert result.errors == []
    (s,) = result.parsed["series"]
    assert s["latest"] == 6.9  # not the model's 9.9
    assert result.parsed["narrative"].startswith("HbA1c rose")
    prompt = engine.prompts[0]
    assert "2023-03-10 6.1 H, 2024-03-12 7.4 H, 2025-09-02 6.9 H" in prompt
    assert "slope +0.273 per year" in prompt
    assert engine.params[0].json_schema is None  # a narrative is free text


def test_table_lists_every_series(record) -> None:  # type: ignore[no-untyped-def]
    series = compute_series(record.extra["resources"])
    text = table(series)
    assert text.count("\n") + 1 == len(series)
    assert text.splitlines()[0].startswith("- ")  # out-of-range series first


def _obs(i: int, when: str, value: float) -> dict:  # type: ignore[type-arg]
    return {
        "resourceType": "Observation",
        "id": f"o{i}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "HbA1c"}]},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "%", "code": "%"},
    }


def test_fhir_partial_dates_are_placed_and_flagged_not_a_crash() -> None:
    # FHIR dateTime allows a year or a year-month: placed at the start of that period, and said so.
    resources = {
        f"Observation/o{i}": _obs(i, when, v)
        for i, (when, v) in enumerate([("2020", 6.0), ("2020-05", 6.4), ("2021-05-01", 7.0)])
    }
    (s,) = compute_series(resources)
    assert [p.date for p in s.values] == ["2020", "2020-05", "2021-05-01"]
    assert "1 value dated to the month only (placed at its start)" in s.flags
    assert "1 value dated to the year only (placed at its start)" in s.flags
    # 2020-01-01, 2020-05-01 (121 days), 2021-05-01 (486 days): the slope is computed on those
    x = [0.0, 121 / 365.25, 486 / 365.25]
    y = [6.0, 6.4, 7.0]
    mx, my = sum(x) / 3, sum(y) / 3
    by_hand = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sum((a - mx) ** 2 for a in x)
    assert s.slope_per_year == pytest.approx(by_hand, abs=1e-6)


def test_an_unreadable_date_leaves_the_observation_out_with_a_note() -> None:
    resources = {
        "Observation/a": _obs(1, "2021-05-01", 7.0),
        "Observation/b": _obs(2, "sometime in May", 9.9),
    }
    notes: list[str] = []
    (s,) = compute_series(resources, notes=notes)
    assert [p.value for p in s.values] == [7.0]
    assert notes == ["Observation/b: date 'sometime in May' cannot be read; left out of the trends"]
