"""EHR tasks: cited ids checked against the bundle, repair on a bad id, the navigator's steps."""

from __future__ import annotations

import json

import pytest

from aris.engines.fake import FakeEngine
from aris.tasks import get_task
from aris.tasks.ehr import Claim, check_claims, manifest_text, resolve_source

HBA1C_LATEST = "Observation/676c9f08-fdd8-5098-b485-0a0a546b4cd4"
T2DM = "Condition/81970dca-db53-5561-8319-14bc51759cb0"


@pytest.fixture(scope="module")
def record(samples):  # type: ignore[no-untyped-def]
    from aris.inputs import read

    return read(samples("fhir/synthetic_patient_bundle_r4.json"))


def test_resolve_source_tolerates_brackets_prefixes_and_bare_ids(record) -> None:  # type: ignore[no-untyped-def]
    res = record.extra["resources"]
    assert HBA1C_LATEST in res
    assert resolve_source(HBA1C_LATEST, res) == HBA1C_LATEST
    assert resolve_source(f"[{HBA1C_LATEST}]", res) == HBA1C_LATEST
    assert resolve_source("Observation/676c9f08", res) == HBA1C_LATEST  # unique 8-char prefix
    assert resolve_source("676c9f08-fdd8-5098-b485-0a0a546b4cd4", res) == HBA1C_LATEST  # bare id
    assert resolve_source("urn:uuid:676c9f08-fdd8-5098-b485-0a0a546b4cd4", res) == HBA1C_LATEST
    assert resolve_source("Observation/676c", res) is None  # too short to trust
    assert resolve_source("Observation/does-not-exist", res) is None
    assert resolve_source("Condition/676c9f08", res) is None  # right id, wrong type
    ambiguous = {"Observation/abcdefgh-1": {}, "Observation/abcdefgh-2": {}}
    assert resolve_source("Observation/abcdefgh", ambiguous) is None


def test_check_claims_names_each_unknown_id(record) -> None:  # type: ignore[no-untyped-def]
    claims = [Claim(text="HbA1c 6.9%", sources=["Observation/676c9f08", "Observation/made-up-id"])]
    fixed, errors = check_claims(claims, record.extra["resources"])
    assert fixed[0].sources[0] == HBA1C_LATEST
    assert errors == ["claims.0.sources: 'Observation/made-up-id' is not a resource id in this record"]


def test_direct_answer_repairs_an_invented_id(record) -> None:  # type: ignore[no-untyped-def]
    bad = json.dumps({"answer": "6.9%", "claims": [{"text": "HbA1c 6.9%", "sources": ["Observation/123"]}]})
    good = json.dumps({"answer": "6.9%", "claims": [{"text": "HbA1c 6.9%", "sources": [HBA1C_LATEST]}]})
    engine = FakeEngine(replies=[bad, good])
    r = get_task("ehr-ask").run(engine, [record], "What is the latest HbA1c?")
    assert r.repaired
    assert r.parsed == {"answer": "6.9%", "claims": [{"text": "HbA1c 6.9%", "sources": [HBA1C_LATEST]}]}
    prompt = engine.prompts[0]
    assert f"[{HBA1C_LATEST}]" in prompt  # the record, every fact line tagged with its id
    assert prompt.rstrip().endswith(
        "Question: What is the latest HbA1c?\nAnswer the question from the record. Reply with a JSON object: "
        '{"answer": "<short answer>", "claims": [{"text": "<a fact the answer rests on>", "sources": '
        '["Type/id", ...]}]}.<end_of_turn>\n<start_of_turn>model'
    )
    assert "'Observation/123' is not a resource id" in engine.prompts[1]
    # constrained: the sources enum is exactly the bundle's ids
    enum = engine.params[0].json_schema["properties"]["claims"]["items"]["properties"]["sources"]["items"][
        "enum"
    ]
    assert set(enum) == set(record.extra["resources"])


def test_summary_needs_claims_with_sources(record) -> None:  # type: ignore[no-untyped-def]
    engine = FakeEngine(replies=['{"claims": [{"text": "Has diabetes", "sources": []}]}', "{}"])
    r = get_task("ehr-summary").run(engine, [record])
    assert r.parsed is None
    assert any("sources" in e for e in r.errors)


def test_navigator_steps_manifest_facts_answer(record) -> None:  # type: ignore[no-untyped-def]
    engine = FakeEngine(
        replies=[
            '["Observation", "Condition"]',  # 1. the model picks types from the manifest
            json.dumps({"facts": []}),  # 2a. Patient (always read)
            json.dumps({"facts": [{"text": "HbA1c 6.9% on 2025-09-02", "sources": [HBA1C_LATEST]}]}),  # 2b.
            json.dumps({"facts": [{"text": "T2DM since 2024", "sources": ["Condition/81970dca"]}]}),  # 2c.
            json.dumps({"answer": "6.9%", "claims": [{"text": "HbA1c 6.9%", "sources": [HBA1C_LATEST]}]}),
        ]
    )
    r = get_task("ehr-ask").run(engine, [record], "Latest HbA1c?", options={"mode": "navigate"})
    assert r.errors == []
    assert [s["name"] for s in r.steps] == [
        "manifest",
        "facts:Patient:1",
        "facts:Observation:1",
        "facts:Condition:1",
        "answer",
    ]
    assert "- Observation: 56 (" in engine.prompts[0]
    assert engine.params[0].json_schema["items"]["enum"] == sorted(
        {k.split("/")[0] for k in record.extra["resources"]}
    )
    # the Observation step sees observations only
    assert "[Observation/" in engine.prompts[2]
    assert "[Condition/" not in engine.prompts[2]
    # the answer step sees the facts with their full ids, not the record
    assert f"- HbA1c 6.9% on 2025-09-02 [{HBA1C_LATEST}]" in engine.prompts[4]
    assert f"- T2DM since 2024 [{T2DM}]" in engine.prompts[4]
    assert "[MedicationRequest/" not in engine.prompts[4]
    assert r.parsed["answer"] == "6.9%"


def test_navigator_falls_back_when_the_model_is_no_help(record) -> None:  # type: ignore[no-untyped-def]
    engine = FakeEngine(replies=["I don't know"] * 12)
    r = get_task("ehr-summary").run(engine, [record], options={"mode": "navigate"})
    assert any("unusable" in w for w in r.warnings)
    assert any("record's own lines" in w for w in r.warnings)
    assert r.parsed is None
    assert r.errors
    assert "Organization" not in {s["name"].split(":")[1] for s in r.steps if s["name"].startswith("facts:")}


def test_auto_mode_navigates_when_the_record_does_not_fit(record) -> None:  # type: ignore[no-untyped-def]
    small = FakeEngine(max_context=3000, replies=['["Observation"]'])
    get_task("ehr-ask").run(small, [record], "Latest HbA1c?")
    assert "manifest" in small.prompts[0]
    big = FakeEngine(replies=["{}"])
    get_task("ehr-ask").run(big, [record], "Latest HbA1c?")
    assert "[Observation/" in big.prompts[0]  # the whole record, one call (plus the repair)


def test_manifest_lists_types_and_names(record) -> None:  # type: ignore[no-untyped-def]
    text = manifest_text(record.extra["resources"])
    assert text.splitlines()[0] == "- Observation: 56 (" + text.splitlines()[0].split("(", 1)[1]
    assert "Hemoglobin A1c/Hemoglobin.total in Blood" in text
    assert "- Patient: 1" in text


def test_bare_claims_list_is_accepted_for_a_summary(record) -> None:  # type: ignore[no-untyped-def]
    reply = f'Summary:\n```json\n[{{"text": "Type 2 diabetes", "sources": ["{T2DM}"]}}]\n```'
    out = get_task("ehr-summary").parse(reply, [record], {})
    assert out.claims[0].sources == [T2DM]
