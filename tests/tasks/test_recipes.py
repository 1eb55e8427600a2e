"""Each recipe's exact prompt layout (pure ``messages``) and its parser on real-shaped replies."""

from __future__ import annotations

import pytest
from PIL import Image

from aris.engines.fake import FakeEngine
from aris.inputs.base import PreparedInput
from aris.prompt import build_turns, render
from aris.tasks import get_task
from aris.tasks.parsing import ParseError
from aris.tasks.qa import FINAL_ANSWER_SUFFIX
from aris.tasks.volume import BINARY_SUFFIX
from aris.tasks.wsi import WSI_PROMPT
from aris.types import ImagePart, Message, Provenance, TextPart


def img(color: int = 100, size: tuple[int, int] = (32, 32)) -> Image.Image:
    return Image.new("RGB", size, (color, color, color))


def volume(kind: str = "ct", n: int = 3) -> PreparedInput:
    parts: list = []
    for i in range(n):
        parts += [ImagePart(img(i * 40)), TextPart(f"SLICE {i + 1}")]
    return PreparedInput(kind, parts, Provenance(kind, ["series/"]))  # type: ignore[arg-type]


def film(color: int = 100) -> PreparedInput:
    return PreparedInput("cxr", [ImagePart(img(color))], Provenance("cxr", ["cxr.dcm"]))


def layout(messages: list[Message]) -> list[str]:
    """The user turn as a list: 'IMG' for images, the text for text parts."""
    (msg,) = [m for m in messages if m.role == "user"]
    return ["IMG" if isinstance(p, ImagePart) else p.text for p in msg.parts]


# -- CT / MRI ----------------------------------------------------------------------------------------


def test_ct_instruction_first_slices_labelled_question_last() -> None:
    parts = layout(get_task("ct").messages([volume()], "Is there a hemorrhage?", {}))
    assert parts[0].startswith("You are an instructor teaching medical students.")
    assert "contiguous block of CT slices" in parts[0]
    assert parts[1:7] == ["IMG", "SLICE 1", "IMG", "SLICE 2", "IMG", "SLICE 3"]
    assert parts[-1] == (
        "Based on the visual evidence in the slices provided above, answer this question: Is there a hemorrhage?"
    )


def test_mri_yes_no_suffix_and_region() -> None:
    parts = layout(
        get_task("mri").messages([volume("mri")], "Any mass?", {"yes_no": True, "region": "the brain"})
    )
    assert "contiguous block of MRI slices from the brain" in parts[0]
    assert parts[-1].endswith(BINARY_SUFFIX)


def test_ct_findings_one_call_each_with_final_answer_parsing() -> None:
    engine = FakeEngine(
        replies=[
            "Dense crescent along the convexity.\nFinal Answer: yes",
            "No cortical break. **Final Answer: No**",
            "unsure",  # fails, then repaired
            "Final Answer: no",
        ]
    )
    r = get_task("ct").run(engine, [volume()], options={"findings": "hemorrhage, fracture, mass"})
    assert r.parsed["findings"] == {"hemorrhage": "yes", "fracture": "no", "mass": "no"}
    assert r.repaired
    assert [s["name"] for s in r.steps] == [
        "finding:hemorrhage",
        "finding:fracture",
        "finding:mass",
        "finding:mass-repair",
    ]
    assert "answer this question: Is there fracture?" in engine.prompts[1]
    assert all(p.count("<start_of_image>") == 3 for p in engine.prompts)


def test_ct_free_question_keeps_any_final_answer() -> None:
    r = get_task("ct").run(FakeEngine(replies=["Small bleed.\nFinal Answer: yes"]), [volume()], "Bleed?")
    assert r.parsed == {"answer": "yes", "final_answer": "yes"} or r.parsed["final_answer"] == "yes"


# -- WSI ------------------------------------------------------------------------------------------------


def test_wsi_education_prompt_then_patches() -> None:
    wsi = PreparedInput(
        "wsi", [ImagePart(img(1)), TextPart("TILE 1"), ImagePart(img(2))], Provenance("wsi", ["s.svs"])
    )
    parts = layout(get_task("wsi").messages([wsi], None, {"organ": "colon", "procedure": "biopsy"}))
    assert parts == [WSI_PROMPT.format(organ="colon", procedure="biopsy"), "IMG", "IMG"]
    assert parts[0].endswith("when deciding what to include in the descriptive text.\ncolon, biopsy:")


# -- chest X-ray ------------------------------------------------------------------------------------------


def test_cxr_compare_prior_then_current_then_text() -> None:
    prior, current = film(10), film(200)
    msgs = get_task("cxr-compare").messages([prior, current], None, {})
    (msg,) = msgs
    assert [p.image.getpixel((0, 0))[0] if isinstance(p, ImagePart) else "T" for p in msg.parts] == [
        10,
        200,
        "T",
    ]
    text = msg.parts[-1].text
    assert "(A) Improved (B) Stable (C) Worsened" in text
    for f in ("consolidation", "edema", "pleural effusion", "pneumonia", "pneumothorax"):
        assert f"- {f}:" in text


@pytest.mark.parametrize(
    "reply",
    [
        '{"narrative": "Effusion larger.", "changes": {"consolidation": "B", "edema": "(B) Stable", '
        '"pleural effusion": "worse", "pneumonia": "improving", "pneumothorax": "stable"}}',
        "The effusion is larger.\nConsolidation: (B) Stable\nEdema: B\nPleural effusion: (C) Worsened\n"
        "Pneumonia: (A) Improved\nPneumothorax: stable",
        '```json\n{"narrative": "x", "changes": {"Consolidation": "stable", "EDEMA": "stable", '
        '"pleural_effusion": "C", "pneumonia": "A", "pneumothorax": "unchanged"}}\n```',
    ],
)
def test_cxr_compare_parses_letters_words_and_lines(reply: str) -> None:
    out = get_task("cxr-compare").parse(reply, [film(), film()], {})
    assert out.changes == {
        "consolidation": "stable",
        "edema": "stable",
        "pleural effusion": "worsened",
        "pneumonia": "improved",
        "pneumothorax": "stable",
    }


def test_cxr_compare_refuses_missing_or_unknown() -> None:
    with pytest.raises(ParseError) as e:
        get_task("cxr-compare").parse(
            '{"narrative": "", "changes": {"edema": "D", "consolidation": "maybe"}}', [film(), film()], {}
        )
    text = " ".join(e.value.errors)
    assert "changes.edema: 'D'" in text
    assert "changes.pneumothorax: missing" in text


@pytest.mark.parametrize(
    "reply",
    [
        "FINDINGS: Lungs are clear. No effusion.\nIMPRESSION: No acute disease.",
        "**Findings:** Lungs are clear. No effusion.\n\n**Impression:** No acute disease.",
        "## FINDINGS:\nLungs are clear. No effusion.\n## IMPRESSION:\nNo acute disease.\nRecommendation: none",
        '{"findings": "Lungs are clear. No effusion.", "impression": "No acute disease."}',
    ],
)
def test_cxr_report_sections(reply: str) -> None:
    out = get_task("cxr-report").parse(reply, [film()], {})
    assert out.findings == "Lungs are clear. No effusion."
    assert out.impression == "No acute disease."


def test_cxr_report_without_impression_is_repaired_with_the_section_names() -> None:
    engine = FakeEngine(replies=["FINDINGS: clear lungs.", "FINDINGS: clear lungs.\nIMPRESSION: normal."])
    r = get_task("cxr-report").run(engine, [film()], "cough")
    assert r.repaired
    assert r.parsed == {"findings": "clear lungs.", "impression": "normal."}
    assert "no IMPRESSION: section" in engine.prompts[1]
    assert "Clinical indication: cough" in engine.prompts[0]
    assert engine.params[0].json_schema is None  # free-text report: not constrained
    json_mode = FakeEngine(replies=['{"findings": "a", "impression": "b"}'])
    get_task("cxr-report").run(json_mode, [film()], options={"format": "json"})
    assert json_mode.params[0].json_schema["required"] == ["findings", "impression"]


# -- classify, VQA, text QA -------------------------------------------------------------------------------


def test_classify_built_in_sets_and_user_lists() -> None:
    t = get_task("classify")
    msgs = t.messages([film()], None, {"choices": "nct-crc-he"})
    text = layout(msgs)[-1]
    assert "A. adipose" in text
    assert "I. colorectal adenocarcinoma epithelium" in text
    assert (
        t.parse('{"answer": "STR"}', [film()], {"choices": "colorectal"}).answer == "cancer-associated stroma"
    )
    assert t.parse("Final Answer: B", [film()], {"choices": "dr"}).answer == "mild"
    own = t.parse("It is most likely a cat.", [film()], {"choices": ["cat", "dog"]})
    assert (own.answer, own.letter) == ("cat", "A")
    with pytest.raises(ParseError, match="not exactly one of"):
        t.parse('{"answer": "giraffe"}', [film()], {"choices": ["cat", "dog"]})


def test_vqa_final_answer_suffix() -> None:
    t = get_task("vqa")
    assert layout(t.messages([film()], "Is the heart enlarged?", {"final_answer": True}))[-1] == (
        f"Is the heart enlarged? {FINAL_ANSWER_SUFFIX}"
    )
    assert t.parse("Borderline.\nFinal Answer: no", [film()], {"final_answer": True}).answer == "no"
    assert t.parse("It is borderline.", [film()], {}).answer == "It is borderline."
    with pytest.raises(ParseError):
        t.parse("It is borderline.", [film()], {"final_answer": True})


def test_text_qa_thinks_and_maps_letters() -> None:
    engine = FakeEngine(
        replies=["<unused94>thought\nACE inhibitors cause cough.<unused95>It is B.\nFinal Answer: B"]
    )
    r = get_task("text-qa").run(
        engine, [], "Which drug causes a dry cough?", options={"choices": "metformin,lisinopril,atorvastatin"}
    )
    assert r.parsed == {"answer": "B. lisinopril", "choice": "lisinopril", "letter": "B"}
    assert r.thought == "ACE inhibitors cause cough."
    prompt = engine.prompts[0]
    assert "SYSTEM INSTRUCTION: think silently if needed." in prompt
    assert "A. metformin\nB. lisinopril\nC. atorvastatin\n" + FINAL_ANSWER_SUFFIX in prompt
    turns = build_turns(get_task("text-qa").messages([], "Q?", {}), think=True)
    assert render(turns).endswith(f"Q?\n{FINAL_ANSWER_SUFFIX}<end_of_turn>\n<start_of_turn>model\n")
