"""FHIR manifest and rendering, checked against the raw bundle JSON read independently."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from aris.inputs.errors import InvalidFHIRError
from aris.inputs.fhir import read_fhir

BUNDLE = "fhir/synthetic_patient_bundle_r4.json"
ID_AT_END = re.compile(r"\[(\w+)/([\w.-]+)\]$")


@pytest.fixture(scope="module")
def raw(samples) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return json.loads(samples(BUNDLE).read_text())


def _resources(raw: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in raw["entry"]]


def _hba1c(raw: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(date, value, id) of the HbA1c observations (LOINC 4548-4), oldest first, straight from the JSON."""
    rows = [
        (r["effectiveDateTime"][:10], r["valueQuantity"]["value"], r["id"])
        for r in _resources(raw)
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "4548-4"
    ]
    return sorted(rows)


def test_manifest_counts_and_dates(samples, raw) -> None:  # type: ignore[no-untyped-def]
    p = read_fhir(samples(BUNDLE))
    m = p.extra["manifest"]
    assert p.kind == "fhir"
    assert m["total"] == 73
    assert m["container"] == "bundle"
    assert m["bundle_type"] == "transaction"
    counts = {t: v["count"] for t, v in m["resource_types"].items()}
    assert counts == dict(Counter(r["resourceType"] for r in _resources(raw)))
    assert counts["Observation"] == 56
    assert counts["Condition"] == 5
    assert counts["Encounter"] == 4
    assert counts["MedicationRequest"] == 4
    assert counts["DiagnosticReport"] == 1
    assert counts["Patient"] == 1
    enc = sorted(r["period"]["start"][:10] for r in _resources(raw) if r["resourceType"] == "Encounter")
    assert m["resource_types"]["Encounter"]["first"] == enc[0]
    assert m["resource_types"]["Encounter"]["last"] == enc[-1]
    assert m["date_range"] == ["2023-03-10", "2025-09-02"]
    assert p.provenance.details["manifest"] == m


def test_hba1c_series_with_ids_in_order(samples, raw) -> None:  # type: ignore[no-untyped-def]
    p = read_fhir(samples(BUNDLE))
    series = _hba1c(raw)
    assert [v for _, v, _ in series] == [6.1, 7.4, 6.9]
    lines = [f"  {d} {v:g} % [Observation/{i}]" for d, v, i in series]
    text_lines = p.text.splitlines()
    positions = [text_lines.index(line) for line in lines]
    assert positions == sorted(positions)
    assert positions[2] - positions[0] == 2  # one series, consecutive
    assert text_lines[positions[0] - 1] == "Hemoglobin A1c/Hemoglobin.total in Blood (LOINC 4548-4):"


def test_every_fact_line_cites_a_resource_and_every_resource_is_rendered(samples, raw) -> None:  # type: ignore[no-untyped-def]
    p = read_fhir(samples(BUNDLE))
    resources = p.extra["resources"]
    assert resources == {f"{r['resourceType']}/{r['id']}": r for r in _resources(raw)}
    cited = []
    for line in p.text.splitlines()[2:]:
        if line.startswith("- ") or line.startswith("  "):
            m = ID_AT_END.search(line)
            assert m, line
            cited.append(f"{m.group(1)}/{m.group(2)}")
    assert sorted(cited) == sorted(resources)
    assert p.parts[0].text == p.text  # type: ignore[union-attr]
    assert p.provenance.details["trimmed"]["dropped"] == {}


def test_conditions_medications_vitals_rendered(samples, raw) -> None:  # type: ignore[no-untyped-def]
    p = read_fhir(samples(BUNDLE))
    pre = next(r for r in _resources(raw) if r.get("code", {}).get("text") == "Prediabetes (finding)")
    line = next(ln for ln in p.text.splitlines() if ln.endswith(f"[Condition/{pre['id']}]"))
    assert "resolved" in line
    assert f"onset {pre['onsetDateTime'][:10]}" in line
    assert f"abated {pre['abatementDateTime'][:10]}" in line
    assert "metformin" in p.text
    assert "for Diabetes mellitus type 2 (disorder)" in p.text  # reasonReference resolved through fullUrl
    assert "Diastolic Blood Pressure 91 mm[Hg], Systolic Blood Pressure 142 mm[Hg]" in p.text
    patient = next(r for r in _resources(raw) if r["resourceType"] == "Patient")
    assert " ".join(patient["name"][0]["given"]) not in p.text  # the patient's name is not rendered
    assert "SYN-000123" not in p.text


def test_token_budget_drops_least_relevant_oldest_first(samples, raw) -> None:  # type: ignore[no-untyped-def]
    full = read_fhir(samples(BUNDLE))
    p = read_fhir(samples(BUNDLE), token_budget=1500)
    assert len(p.text) / 3 <= 1500
    trimmed = p.provenance.details["trimmed"]
    assert trimmed["full_tokens"] > 1500 >= trimmed["kept_tokens"]
    dropped = trimmed["dropped"]
    assert dropped["Encounter"] == 4
    assert dropped["Organization"] == 1
    assert "Condition" not in dropped
    assert "MedicationRequest" not in dropped
    # within labs, the oldest HbA1c goes first
    (_, _, id0), _, (_, _, id2) = _hba1c(raw)
    assert f"Observation/{id0}" not in p.text
    assert f"Observation/{id2}" in p.text
    assert "Trimmed to fit 1500 tokens" in p.text
    assert "lines omitted" in p.provenance.warnings[0]
    assert full.extra["resources"] == p.extra["resources"]  # structured data is never trimmed


def test_ndjson_and_a_folder_of_ndjson(samples, raw, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "patient.ndjson"
    path.write_text("\n".join(json.dumps(r) for r in _resources(raw)) + "\n")
    p = read_fhir(path)
    assert p.extra["manifest"]["container"] == "ndjson"
    assert p.extra["manifest"]["total"] == 73
    for d, v, i in _hba1c(raw):
        assert f"  {d} {v:g} % [Observation/{i}]" in p.text
    export = tmp_path / "export"
    export.mkdir()
    by_type: dict[str, list[str]] = {}
    for r in _resources(raw):
        by_type.setdefault(r["resourceType"], []).append(json.dumps(r))
    for t, lines in by_type.items():
        (export / f"{t}.ndjson").write_text("\n".join(lines))
    q = read_fhir(export)
    assert q.extra["manifest"]["resource_types"]["Observation"]["count"] == 56
    assert q.extra["manifest"]["total"] == 73


def _broken_bundle(raw: dict[str, Any]) -> dict[str, Any]:
    bad = json.loads(json.dumps(raw))
    bad["entry"][4]["resource"]["bogusField"] = 1
    return bad


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("extra.json", "bundle-extra-field", r"entry\[4\]\.resource\.bogusField \(\w+\): Extra inputs"),
        (
            "value.ndjson",
            '{"resourceType": "Patient", "id": "a"}\n{"resourceType": "Observation", "status": "final", '
            '"code": {"text": "x"}, "valueQuantity": {"value": "abc"}}',
            r"line 2: invalid Observation: valueQuantity\.value",
        ),
        (
            "lines.ndjson",
            '{"resourceType": "Patient", "id": "a"}\n\n{"resourceType": "Patient"\n',
            r"line 3: not JSON",
        ),
        (
            "unknown.ndjson",
            '{"resourceType": "Spaceship", "id": "a"}',
            r"unknown FHIR R4 resourceType 'Spaceship'",
        ),
        ("plain.json", '{"name": "not fhir"}', r"without resourceType"),
        ("list.json", "[1, 2]", r"JSON list at the top level"),
    ],
)
def test_invalid_fhir_names_file_and_first_problem(
    raw, tmp_path: Path, name: str, content: str, problem: str
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_text(json.dumps(_broken_bundle(raw)) if content == "bundle-extra-field" else content)
    with pytest.raises(InvalidFHIRError, match=rf"{re.escape(name)}: .*{problem}"):
        read_fhir(path)
