"""Each evaluation prompt of the MedGemma 1.5 technical report (Appendix B, Tables 7-13), quoted here
character for character, and the exact Gemma prompt each task renders from it with ``prompts="report"``.

The quotes below are this test's own copies of the report's rows (typos and the missing closing quote
included), so a change to a constant in :mod:`aris.tasks.report_prompts` fails here. The tasks run
through :func:`aris.runner.run_task` on the scripted engine (code above the engines), which records the
rendered prompt and the generation parameters.
"""

from __future__ import annotations

from typing import Any

import pytest

from aris.engines.fake import FakeEngine
from aris.errors import ConfigError
from aris.inputs import read
from aris.runner import run_task
from aris.tasks import report_prompts as R
from aris.types import ImagePart

# -- the report's rows, quoted ---------------------------------------------------------------------------

QUOTED = {
    "TEXT_MCQ": '{{ question }}\nYou may write out your argument before stating your final, very short, definitive, and concise answer (no more than a few words or the letter corresponding to your answer choice if the question is multiple choice) X in the format "Final Answer: X":',
    "CXR_YES_NO": '{{ image }} + {{ question }} You MUST end your responce with either "Final Answer: yes" or "Final Answer: no',
    "VQA": '{{image}} + {{ question }} You may write out your argument before stating your final, very short, definitive, and concise answer X (no more than a few words or the letter corresponding to your answer choice if the question is multiple choice) in the format "Final Answer: X":',
    "WSI": "{{images}} + Provide a brief diagnostic text for the set of pathology patches extracted from a pathology slide. Consider the tissue type and procedure (below) when deciding what to include in the diagnostic text. {{ type_procedure }} {{ question }}",
    "DERM": '{{image}} + {{ question }} You must choose the most likely diagnosis and respond with "The most likely diagnosis is:" followed by your choice letter.',
    "EYEPACS": '{{image}} + Given this fundus image, determine the most likely diabetic retinopathy (DR) stage present, even if you are unsure: A: No DR B: mild DR C: moderate DR D: severe DR E: proliferative DR You must choose the most likely diagnosis and respond with "The most likely diagnosis is:" followed by your choice letter.',
    "EHRNOTEQA": 'BEGIN_INSTRUCTIONS Given the following discharge note for a patient, answer the question by only picking one of the A, B, C, D, E options. Each discharge note starts with "DISCHARGE?:", the question starts with "QUESTION:" and the choices with "CHOICE_?:" where? is a single character. To answer, describe your thought process for each choice; finish your answer with "Final Answer: (?)" where? is a single character indicating the correct choice. END_INSTRUCTIONS {discharge_note} QUESTION: {orig_question} the choices are: CHOICE_A: {choice_A} … CHOICE_E: {choice_E} Describe your thought process for each choice and end your answer with "Final Answer: (?)" where? is a single character indicating the correct answer. Use this exact format at the end "Final Answer: (?)".',
    "LAB": "You are a Clinical Data Extraction Specialist. Your job is to parse lab reports with high precision. From the given lab report, extract all lab tests into a JSON list. Each test object in the list must include: name, result, unit, range, panel, method, specimen, sample_collection_time (formatted as DD-MM-YYYY HH:MM:SS)",
    "LOCALIZE": "{{image}} + Where is the {object}?",
    "CT_US1": '{{images}} + After looking at the indication and patient history "{HISTORY}"... Is there "{Label}" in the CT volume? You may write out your argument before stating your final answer "Final Answer: yes" or "Final Answer: no".',
    "MRI_US1": '{{images}} + \'After looking at the patient history "history_text", Is there {{label}} in the MRI volume? You may write out your argument before stating your final answer ""Final Answer: yes"" or ""Final Answer: no""',
    "CT_RATE": "{{images}} + You are an expert radiologist for chest CT. Looking at these CT slices, is there Emphysema? Answer with 'Final Answer: yes' or 'Final Answer: no'",
}  # fmt: skip

START = "<bos><start_of_turn>user\n"
END = "<end_of_turn>\n<start_of_turn>model\n"
THINK = "SYSTEM INSTRUCTION: think silently if needed.\n\n"  # no space before the blank line
IMG = "<start_of_image>"
CXR = "dicom/cxr/highdicom_dx_image.dcm"


@pytest.mark.parametrize("name", sorted(QUOTED))
def test_each_constant_is_the_reports_row_verbatim(name: str) -> None:
    assert R.template(name) == QUOTED[name]
    assert set(R.PLACEHOLDERS) == set(QUOTED)
    for placeholder in R.PLACEHOLDERS[name]:
        assert QUOTED[name].count(placeholder) == 1


def rendered(task: str, inputs: Any = (), question: str | None = None, **options: Any) -> tuple[str, Any]:
    engine = FakeEngine(replies=["Final Answer: A"])
    run_task(task, inputs, models=engine, question=question, options={"prompts": "report", **options})
    return engine.prompts[0], engine.params[0]


def slices(path: Any, kind: str) -> str:
    """The slices as the template renders them: each image, then its "SLICE n" label."""
    parts = read(path, kind=kind).parts
    return "".join(IMG if isinstance(p, ImagePart) else p.text.strip() for p in parts)


def test_text_mcq_prompt_thinks_without_a_trailing_space() -> None:
    prompt, params = rendered("text-qa", question="Which vitamin prevents scurvy?", choices=["B12", "C"])
    question = "Which vitamin prevents scurvy?\nA. B12\nB. C"
    assert prompt == START + THINK + QUOTED["TEXT_MCQ"].replace("{{ question }}", question) + END
    assert params.think is True
    assert params.json_schema is None


def test_ehrnoteqa_prompt_writes_out_all_five_choices() -> None:
    choices = ["aspirin", "heparin", "warfarin", "apixaban", "none"]
    prompt, params = rendered(
        "text-qa",
        question="Which anticoagulant was started?",
        choices=choices,
        report_form="ehrnoteqa",
        note="DISCHARGE1: Started apixaban for AF.",
    )
    text = (
        QUOTED["EHRNOTEQA"]
        .replace("{discharge_note}", "DISCHARGE1: Started apixaban for AF.")
        .replace("{orig_question}", "Which anticoagulant was started?")
        .replace(
            "CHOICE_A: {choice_A} … CHOICE_E: {choice_E}",
            "CHOICE_A: aspirin CHOICE_B: heparin CHOICE_C: warfarin CHOICE_D: apixaban CHOICE_E: none",
        )
    )
    assert prompt == START + THINK + text + END
    assert params.think is True
    with pytest.raises(ConfigError, match="five choices"):
        rendered("text-qa", question="Q?", choices=["a", "b"], report_form="ehrnoteqa", note="n")


def test_vqa_and_cxr_yes_no_prompts_put_the_image_first(samples) -> None:  # type: ignore[no-untyped-def]
    cxr = samples(CXR)
    prompt, params = rendered("vqa", cxr, question="Which lobe is affected?")
    vqa = QUOTED["VQA"].removeprefix("{{image}} + ").replace("{{ question }}", "Which lobe is affected?")
    assert prompt == START + IMG + vqa + END
    assert params.think is False
    prompt, _ = rendered("vqa", cxr, question="Is there pleural effusion?", report_form="cxr-yes-no")
    binary = (
        QUOTED["CXR_YES_NO"]
        .removeprefix("{{ image }} + ")
        .replace("{{ question }}", "Is there pleural effusion?")
    )
    assert prompt == START + IMG + binary + END
    assert prompt.endswith('or "Final Answer: no' + END)  # the report's missing closing quote


def test_derm_and_eyepacs_prompts(samples) -> None:  # type: ignore[no-untyped-def]
    img = samples("dicom/compressed/SC_jpeg_no_color_transform.dcm")
    engine = FakeEngine(replies=["The most likely diagnosis is: B"])
    opts = {"prompts": "report", "choices": ["melanoma", "nevus"], "report_form": "derm"}
    run_task(
        "classify",
        img,
        models=engine,
        kind="image",
        question="What is the most likely diagnosis?",
        options=opts,
    )
    derm = (
        QUOTED["DERM"]
        .removeprefix("{{image}} + ")
        .replace("{{ question }}", "What is the most likely diagnosis? A: melanoma B: nevus")
    )
    assert engine.prompts[0] == START + IMG + derm + END
    assert engine.params[0].json_schema is None  # the report's prompt is not constrained
    engine = FakeEngine(replies=["The most likely diagnosis is: C"])
    opts = {"prompts": "report", "choices": "diabetic-retinopathy", "report_form": "eyepacs"}
    run_task("classify", img, models=engine, kind="image", options=opts)
    assert engine.prompts[0] == START + IMG + QUOTED["EYEPACS"].removeprefix("{{image}} + ") + END
    with pytest.raises(ConfigError, match="EyePACS prompt lists five stages"):
        run_task("classify", img, models=FakeEngine(), kind="image", options={**opts, "choices": ["a", "b"]})


def test_localization_prompt_asks_where_one_object_is(samples) -> None:  # type: ignore[no-untyped-def]
    prompt, params = rendered("cxr-localize", samples(CXR), labels=["right lung"])
    assert prompt == START + IMG + "Where is the right lung?" + END
    assert params.json_schema is None  # the model's own Final Answer + fenced JSON
    with pytest.raises(ConfigError, match="one label at a time"):
        rendered("cxr-localize", samples(CXR), labels=["right lung", "heart"])


def test_wsi_prompt_puts_the_patches_first(samples) -> None:  # type: ignore[no-untyped-def]
    slide = samples("wsi/cmu_small_region.svs")
    n = len(read(slide, kind="wsi").images)
    prompt, _ = rendered("wsi", slide, question="Grade the tumour.", organ="colon", procedure="biopsy")
    text = (
        QUOTED["WSI"]
        .removeprefix("{{images}} + ")
        .replace("{{ type_procedure }}", "colon, biopsy")
        .replace("{{ question }}", "Grade the tumour.")
    )
    assert prompt == START + IMG * n + text + END
    prompt, _ = rendered("wsi", slide, type_procedure="Colon, polypectomy")
    assert prompt.endswith("diagnostic text. Colon, polypectomy" + END)  # no question: nothing after it


def test_lab_prompt_is_one_call_for_the_whole_report(samples) -> None:  # type: ignore[no-untyped-def]
    pdf = samples("lab/synthetic_lab_report.pdf")
    n = len(read(pdf, kind="pdf").images)
    engine = FakeEngine(replies=['[{"name": "Hemoglobin", "result": "13.5"}]'])
    result = run_task("lab-extract", pdf, models=engine, options={"prompts": "report"})
    assert len(engine.prompts) == 1
    assert engine.prompts[0] == START + QUOTED["LAB"] + IMG * n + END
    assert engine.params[0].json_schema is None
    assert result.parsed["tests"][0]["name"] == "Hemoglobin"


def test_ct_us1_and_ct_rate_prompts(samples) -> None:  # type: ignore[no-untyped-def]
    series = samples("dicom/ct_series/head_ct2_4slices")
    shown = slices(series, "ct")
    assert shown.startswith(IMG + "SLICE 1" + IMG)
    prompt, params = rendered("ct", series, question="intracranial hemorrhage", history="Fall; headache.")
    us1 = (
        QUOTED["CT_US1"]
        .removeprefix("{{images}} + ")
        .replace("{HISTORY}", "Fall; headache.")
        .replace("{Label}", "intracranial hemorrhage")
    )
    assert prompt == START + shown + us1 + END
    assert params.think is False
    prompt, _ = rendered("ct", series, question="Emphysema", report_form="ct-rate")
    assert prompt == START + shown + QUOTED["CT_RATE"].removeprefix("{{images}} + ") + END
    prompt, _ = rendered("ct", series, question="pneumothorax", report_form="ct-rate")
    assert "Looking at these CT slices, is there pneumothorax? Answer with" in prompt
    with pytest.raises(ConfigError, match="report_form 'mri-us1'"):
        rendered("ct", series, question="x", report_form="mri-us1")


def test_mri_us1_prompt_keeps_the_reports_quotes(samples) -> None:  # type: ignore[no-untyped-def]
    series = samples("dicom/mr_series/mra_mr700_7slices")
    prompt, _ = rendered("mri", series, question="an aneurysm", history="Headache for 3 weeks.")
    text = (
        QUOTED["MRI_US1"]
        .removeprefix("{{images}} + ")
        .replace("history_text", "Headache for 3 weeks.")
        .replace("{{label}}", "an aneurysm")
    )
    assert prompt == START + slices(series, "mri") + text + END
    assert '\'After looking at the patient history "Headache for 3 weeks.", Is there an aneurysm' in prompt


def test_a_value_holding_a_placeholder_is_left_as_written() -> None:
    text = R.fill(R.CT_US1, {"{HISTORY}": 'says "{Label}"', "{Label}": "edema"})
    assert 'history "says "{Label}""... Is there "edema"' in text
    with pytest.raises(ValueError, match="exactly once"):
        R.fill(R.LOCALIZE, {"{label}": "heart"})


def test_app_prompts_stay_the_default(samples) -> None:  # type: ignore[no-untyped-def]
    engine = FakeEngine(replies=['{"answer": "adipose"}'])
    run_task(
        "classify", samples("dicom/compressed/SC_jpeg_no_color_transform.dcm"), models=engine, kind="image"
    )
    assert "The most likely diagnosis is" not in engine.prompts[0]
    assert engine.params[0].json_schema is not None  # the app's prompt is constrained
    for task in ("text-qa", "vqa", "ct", "mri", "classify", "cxr-localize", "wsi", "lab-extract"):
        from aris.tasks import get_task

        assert get_task(task).opts({}).prompts == "app"
