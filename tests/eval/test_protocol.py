"""Per-task protocols: references checked, the batch item each row becomes, and the prediction read
from the Result each task really produces (tasks run on the scripted engine: this is code above engines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aris.engines.fake import FakeEngine
from aris.errors import ConfigError, InputError
from aris.eval.datasets import EvalItem
from aris.eval.metrics import lab_field_counts, macro_f1_over_conditions
from aris.eval.protocol import (
    Scored,
    first_reply,
    macro_f1_conditions,
    make_protocol,
    most_likely_choice,
    yes_no,
)
from aris.inputs import read
from aris.result import Result
from aris.tasks import get_task
from aris.tasks.parsing import final_answer, match_option
from aris.tasks.qa import FINAL_ANSWER_SUFFIX
from aris.tasks.volume import BINARY_SUFFIX

DS = Path("dataset.jsonl")
CXR = "dicom/cxr/highdicom_dx_image.dcm"


def item(id: str, answer: Any, question: str | None = None, inputs: list[Path] | None = None, **extra: Any) -> EvalItem:  # fmt: skip
    return EvalItem(id, inputs or [], question, answer, extra.pop("subgroup", None), extra)


def run_task(task: str, replies: list[str], inputs: list[Any], question: str | None, options: dict[str, Any]) -> Result:  # fmt: skip
    engine = FakeEngine(replies=replies)
    return get_task(task).run(engine, inputs, question, options=options)


@pytest.mark.parametrize(
    ("text", "answer", "choice"),
    [
        ("Reasoning... Final Answer: B", "B", "Insulin"),
        ("Final Answer: (C) Metformin.", "(C) Metformin", "Metformin"),
        ("first Final Answer: A then Final Answer: D. Warfarin", "D. Warfarin", "Warfarin"),
        ("**Final Answer: yes**", "yes", None),
        ("**Final Answer:** C", "C", "Metformin"),
        ("no marker here", None, None),
        ("final answer:   b\nmore text", "b", "Insulin"),
        ("<unused94>thought\nFinal Answer: A<unused95>So. Final Answer: B", "B", "Insulin"),
    ],
)
def test_final_answer_parsing_is_the_task_layers(text: str, answer: str | None, choice: str | None) -> None:
    """Eval reads answers with aris.tasks.parsing (the duplicate parser in metrics.py is gone)."""
    options = ["Aspirin", "Insulin", "Metformin", "Warfarin"]
    assert final_answer(text) == answer
    assert (match_option(answer, options) if answer else None) == choice


def test_text_qa_references_and_work_items() -> None:
    items = [
        item("1", "C", "Scurvy?", options=["A", "B12", "C", "D"]),
        item("2", "Metformin", "T2DM?", options={"B": "Metformin", "A": "Insulin"}),
        item("3", "(a) insulin", "Pancreas hormone?", options="Insulin|Glucagon"),
        item("4", "The Pancreas.", "Which organ?"),
    ]
    p = make_protocol("text-qa", items, DS, prompts="app")
    assert [p.refs[i.id] for i in items] == ["C", "B", "A", "pancreas"]
    w = p.work_item(items[1])
    assert w.paths == ()
    assert w.question == "T2DM?"
    assert w.task_options == {"choices": ["Insulin", "Metformin"]}  # dict options in letter order
    assert p.work_item(items[3]).task_options == {}
    rec = p.record()
    assert rec["think"] is True  # text multiple choice thinks, as evaluated
    assert rec["prompts"] == "app"
    assert rec["system_prompt"] == "none"
    assert rec["mode"] == "text"  # a row's own options make it multiple choice
    assert rec["metrics"] == ["accuracy"]
    report = make_protocol("text-qa", items, DS)  # eval's default: the report's prompt
    assert report.work_item(items[1]).task_options == {
        "choices": ["Insulin", "Metformin"],
        "prompts": "report",
        "constrain": False,
    }
    rp = report.record()["report_prompt"]
    assert rp["template"].endswith(FINAL_ANSWER_SUFFIX)  # the app's suffix is the report's text row
    assert rp["max_new_tokens"] == report.max_new_tokens() == 8192
    assert "Appendix B" in rp["source"]
    assert make_protocol("text-qa", items, DS, think=False).work_item(items[0]).task_options["think"] is False


def test_text_qa_bad_rows_name_the_dataset_and_row() -> None:
    with pytest.raises(InputError, match=r"dataset.jsonl: row 7: answer 'E' is not one of its options"):
        make_protocol("text-qa", [item("7", "E", "Q?", options=["a", "b"])], DS)
    with pytest.raises(InputError, match="row 8: text-qa needs a question"):
        make_protocol("text-qa", [item("8", "A", None, options=["a", "b"])], DS)
    with pytest.raises(ConfigError, match="no protocol for task 'ehr-summary'"):
        make_protocol("ehr-summary", [item("1", "x")], DS)


def test_text_qa_scores_the_first_reply_not_the_repair() -> None:
    """The paper parsed the one reply: a repair that fixes the format must not change the score."""
    it = item("1", "B", "Drug for T2DM?", options=["Insulin", "Metformin"])
    p = make_protocol("text-qa", [it], DS)
    r = run_task("text-qa", ["I would pick metformin.", "Final Answer: B"], [], it.question, {"choices": ["Insulin", "Metformin"]})  # fmt: skip
    assert r.repaired
    assert r.parsed["letter"] == "B"  # the task's own output used the repair
    assert first_reply(r) == "I would pick metformin."
    s = p.score(it, r)
    assert (s.prediction, s.reference, s.score) == (None, "B", 0.0)
    good = run_task(
        "text-qa",
        ["<unused94>thought\nFinal Answer: A?<unused95>Biguanides first. Final Answer: (B) Metformin."],
        [],
        it.question,
        {"choices": ["Insulin", "Metformin"]},
    )
    assert p.prediction(good, it) == "B"
    assert p.prediction(good.model_dump(mode="json"), it) == "B"  # a stored result reads the same
    assert p.score(it, good).score == 1.0


def test_open_text_qa_compares_normalized_answers() -> None:
    it = item("1", "the pancreas", "Which organ makes insulin?")
    p = make_protocol("text-qa", [it], DS)
    r = run_task("text-qa", ["Final Answer: Pancreas."], [], it.question, {})
    assert p.score(it, r).prediction == "pancreas"
    assert p.score(it, r).score == 1.0


def test_vqa_yes_no_is_an_explicit_mode(samples) -> None:  # type: ignore[no-untyped-def]
    cxr = samples(CXR)
    items = [
        item("1", "Yes", "Is there effusion?", [cxr], condition="effusion"),
        item("2", "no", "Is there edema?", [cxr]),
    ]
    assert make_protocol("vqa", items, DS).mode == "open"  # yes/no answers do not switch the mode
    p = make_protocol("vqa", items, DS, mode="yes-no")
    w = p.work_item(items[0])
    assert w.question == "Is there effusion?"
    assert w.task_options == {"report_form": "cxr-yes-no", "prompts": "report", "constrain": False}
    assert p.metrics().keys() == {"macro_f1", "accuracy"}
    inputs = [read(cxr)]
    r = run_task("vqa", ["The angles are blunted.\nFinal Answer: yes"], inputs, w.question, w.task_options)
    s = p.score(items[0], r)
    assert (s.prediction, s.reference, s.condition, s.score) == ("yes", "yes", "effusion", 1.0)
    r = run_task("vqa", ["Clear lungs. Final Answer: maybe"], inputs, w.question, w.task_options)
    assert p.score(items[1], r).prediction is None
    assert p.score(items[1], r).condition == "Is there edema?"  # no condition column: the question
    with pytest.raises(InputError, match="--mode yes-no takes yes/no answers"):
        make_protocol("vqa", [item("3", "left lobe", "Where?", [cxr])], DS, mode="yes-no")
    with pytest.raises(ConfigError, match="no mode 'binary'"):
        make_protocol("vqa", items, DS, mode="binary")


def test_vqa_open_set_uses_the_final_answer_suffix_and_token_f1(samples) -> None:  # type: ignore[no-untyped-def]
    cxr = samples(CXR)
    items = [item("1", "left lower lobe", "Where is it?", [cxr]), item("2", "yes", "Is it a CXR?", [cxr])]
    p = make_protocol("vqa", items, DS, prompts="app")
    assert p.mode == "open"
    w = p.work_item(items[0])
    assert (w.question, w.task_options) == ("Where is it?", {"final_answer": True})
    assert "a/an/the dropped" in p.record()["normalization"]
    assert p.record()["choices"] == ["closed questions: questions whose reference is yes or no"]
    r = run_task("vqa", ["It is in the LEFT lobe. Final Answer: the left lobe."], [read(cxr)], w.question, w.task_options)  # fmt: skip
    s = p.score(items[0], r)
    assert s.prediction == "the left lobe"
    assert s.score == pytest.approx(0.8)  # tokens {left, lobe} vs {left, lower, lobe}: P 1, R 2/3


def test_ct_reads_yes_no_from_the_first_reply(samples) -> None:  # type: ignore[no-untyped-def]
    series = samples("dicom/ct_series/head_ct2_4slices")
    items = [item("1", "no", "Is there hemorrhage?", [series])]
    p = make_protocol("ct", items, DS, prompts="app")
    w = p.work_item(items[0])
    assert w.task_options == {"yes_no": True}
    assert "report_prompt" not in p.record()  # app prompts: no report row to cite
    engine = FakeEngine(replies=["No blood seen. Final Answer: No."])
    r = get_task("ct").run(engine, [read(series, kind="ct")], w.question, options=w.task_options)
    assert engine.prompts[0].rstrip().endswith(BINARY_SUFFIX + "<end_of_turn>\n<start_of_turn>model")
    assert p.score(items[0], r).prediction == "no"
    with pytest.raises(InputError, match="row 2: ct answers are yes or no"):
        make_protocol("ct", [item("2", "small", "Size?", [series])], DS)


def test_classify_maps_references_through_the_sets_aliases(samples) -> None:  # type: ignore[no-untyped-def]
    tile = samples("dicom/compressed/SC_jpeg_no_color_transform.dcm")
    items = [
        item("1", "STR", None, [tile], choices="nct-crc-he", kind="image"),
        item("2", "ADI", None, [tile], choices="nct-crc-he", kind="image"),
    ]
    p = make_protocol("classify", items, DS, prompts="app")
    assert p.refs == {"1": "cancer-associated stroma", "2": "adipose"}
    w = p.work_item(items[0])
    assert (w.kind, w.task_options) == ("image", {"choices": "nct-crc-he"})
    r = run_task("classify", ['{"answer": "stroma"}'], [read(tile, kind="image")], None, w.task_options)
    assert p.score(items[0], r).prediction == "cancer-associated stroma"
    assert p.score(items[0], r).score == 1.0
    scored = [
        Scored("1", "cancer-associated stroma", "cancer-associated stroma"),
        Scored("2", "adipose", "cancer-associated stroma"),
        Scored("3", None, "adipose"),
    ]
    # stroma: P 1, R 1/2 -> 2/3; adipose: predicted once wrongly, missed once -> 0; no class for "no answer"
    assert p.metrics()["macro_f1"](scored) == pytest.approx((2 / 3 + 0) / 2)
    custom = make_protocol("classify", [item("3", "B", None, [tile], choices=["benign", "malignant"])], DS)
    assert custom.refs["3"] == "malignant"  # a letter names the option
    with pytest.raises(InputError, match="row 4: answer 'cat' is not one of: benign, malignant"):
        make_protocol("classify", [item("4", "cat", None, [tile], choices="benign|malignant")], DS)


def test_cxr_compare_reads_the_rows_finding(samples) -> None:  # type: ignore[no-untyped-def]
    cxr = samples(CXR)
    it = item("1", "(A) Improved", None, [cxr, cxr], finding="Pleural effusion")
    p = make_protocol("cxr-compare", [it], DS)
    assert p.refs["1"] == "improved"
    w = p.work_item(it)
    assert (w.question, w.task_options) == (None, {"findings": ["Pleural effusion"]})
    inputs = [read(cxr), read(cxr)]
    r = run_task("cxr-compare", ['{"narrative": "less fluid", "changes": {"pleural effusion": "B"}}'], inputs, None, w.task_options)  # fmt: skip
    assert p.score(it, r).prediction == "stable"
    assert p.score(it, r).score == 0.0
    with pytest.raises(InputError, match=r"row 2: cxr-compare takes input 'prior\|current'"):
        make_protocol("cxr-compare", [item("2", "stable", None, [cxr], finding="edema")], DS)


def test_localize_compares_boxes_in_original_pixels(samples) -> None:  # type: ignore[no-untyped-def]
    cxr = samples(CXR)  # 211 wide, 169 high: padded to 211 x 211 with 21 rows on top
    it = item("1", "[20, 20, 150, 100]", None, [cxr], label="right lung")
    it.answer = [20, 20, 150, 100]  # datasets.py decodes JSON answers
    p = make_protocol("cxr-localize", [it], DS, prompts="app")
    w = p.work_item(it)
    assert w.task_options == {"labels": ["right lung"]}
    inputs = [read(cxr, pad_square=True)]
    reply = 'Final Answer: ```json\n[{"box_2d": [200, 100, 800, 500], "label": "Right lung"}]\n```'
    r = run_task("cxr-localize", [reply], inputs, None, w.task_options)
    # by hand: x = x/1000*211 - 0, y = y/1000*211 - 21 (MEDGEMMA.md)
    want = [200 / 1000 * 211 - 21, 100 / 1000 * 211, 800 / 1000 * 211 - 21, 500 / 1000 * 211]
    s = p.score(it, r)
    assert s.prediction == pytest.approx(want)
    inter = (min(want[2], 150) - max(want[0], 20)) * (min(want[3], 100) - max(want[1], 20))
    union = (want[2] - want[0]) * (want[3] - want[1]) + 130 * 80 - inter
    assert s.score == pytest.approx(inter / union)
    other = 'Final Answer: ```json\n[{"box_2d": [200, 100, 800, 500], "label": "lung"}]\n```'
    r2 = run_task("cxr-localize", [other], inputs, None, w.task_options)
    assert p.prediction(r2, it) == pytest.approx(want)  # one label asked: the reply's first box
    assert p.score(it, None).score == 0.0
    with pytest.raises(InputError, match="needs a 'label' column"):
        make_protocol("cxr-localize", [item("2", [1, 2, 3, 4], None, [cxr])], DS)


def test_wsi_and_lab_read_the_validated_output(samples) -> None:  # type: ignore[no-untyped-def]
    import json

    p = make_protocol(
        "wsi", [item("1", "colon mucosa", None, [], organ="colon", procedure="biopsy")], DS, prompts="app"
    )
    assert p.work_item(item("1", "x", None, [], organ="colon")).task_options == {"organ": "colon"}
    assert (
        p.prediction({"parsed": {"description": "Normal colon mucosa."}}, item("1", "x"))
        == "Normal colon mucosa."
    )
    assert p.score(item("1", "colon mucosa"), {"parsed": {"description": "colon mucosa"}}).score == 1.0

    truth = json.loads(samples("lab/synthetic_lab_report.truth.json").read_text())
    lab = item("d1", truth, None, [samples("lab/synthetic_lab_report.pdf")])
    p = make_protocol("lab-extract", [lab], DS, prompts="app")
    assert p.work_item(lab).question is None
    half = truth[:5]
    s = p.score(lab, {"parsed": {"tests": half, "pages": 2}})
    assert s.counts == lab_field_counts(half, truth)
    assert s.counts[1] == 0  # nothing invented
    none = p.score(lab, {"parsed": None, "errors": ["page 1: no JSON"]})
    assert none.prediction is None
    assert none.counts == (0, 0, sum(bool(v) for t in truth for v in t.values()))
    with pytest.raises(InputError, match="answer must be a JSON list of tests"):
        make_protocol("lab-extract", [item("d2", "missing.json")], DS)


def test_binary_macro_f1_counts_a_missing_answer_as_wrong() -> None:
    rows = [
        Scored("1", "yes", "yes", condition="a"),
        Scored("2", None, "yes", condition="a"),  # missed positive: FN
        Scored("3", None, "no", condition="a"),  # unreadable on a negative: not a correct "no", a FP
        Scored("4", "no", "no", condition="b"),
        Scored("5", "yes", "yes", condition="b"),
    ]
    # condition a: tp 1, fn 1, fp 1 -> F1 1/2; condition b: perfect -> 1
    assert macro_f1_conditions(rows) == pytest.approx((1 / 2 + 1) / 2)
    assert macro_f1_over_conditions([("a", "yes", "yes"), ("a", "", "yes")]) == pytest.approx(2 / 3)
    assert [yes_no(x) for x in ("Yes.", "absent", "FALSE", "maybe", None)] == ["yes", "no", "no", None, None]


# -- report mode -----------------------------------------------------------------------------------------


def test_protocols_are_a_registry_with_entry_points() -> None:
    from aris.eval.protocol import PROTOCOLS, TextQaProtocol
    from aris.registry import Registry

    assert isinstance(PROTOCOLS, Registry)
    assert PROTOCOLS.group == "aris.protocols"
    assert PROTOCOLS.get("text-qa") is TextQaProtocol
    assert {
        "text-qa",
        "vqa",
        "ct",
        "mri",
        "classify",
        "cxr-compare",
        "cxr-localize",
        "wsi",
        "lab-extract",
    } <= set(PROTOCOLS)


def test_ct_report_mode_asks_for_the_label_with_the_rows_history(samples) -> None:  # type: ignore[no-untyped-def]
    series = samples("dicom/ct_series/head_ct2_4slices")
    items = [
        item("1", "no", "Is there hemorrhage?", [series], label="intracranial hemorrhage", history="Fall."),
        item("2", "yes", "Is there a fracture?", [series], label="skull fracture"),
    ]
    p = make_protocol("ct", items, DS)
    w = p.work_item(items[0])
    assert w.question == "intracranial hemorrhage"
    assert w.task_options == {
        "yes_no": True,
        "report_form": "ct-us1",
        "history": "Fall.",
        "prompts": "report",
        "constrain": False,
    }
    assert "1 of 2 rows have no 'history'" in " ".join(p.record()["choices"])
    engine = FakeEngine(replies=["No hyperdensity.\nFinal Answer: no"])
    r = get_task("ct").run(engine, [read(series, kind="ct")], w.question, options=w.task_options)
    assert (
        'patient history "Fall."... Is there "intracranial hemorrhage" in the CT volume?' in engine.prompts[0]
    )
    s = p.score(items[0], r)
    assert (s.prediction, s.condition, s.score) == ("no", "intracranial hemorrhage", 1.0)
    rate = make_protocol("ct", items, DS, mode="ct-rate")
    assert rate.work_item(items[1]).task_options["report_form"] == "ct-rate"
    assert rate.max_new_tokens() == 1024
    with pytest.raises(ConfigError, match="no mode 'mri-us1'"):
        make_protocol("ct", items, DS, mode="mri-us1")


def test_classify_report_mode_reads_the_most_likely_diagnosis(samples) -> None:  # type: ignore[no-untyped-def]
    tile = samples("dicom/compressed/SC_jpeg_no_color_transform.dcm")
    it = item("1", "mild", None, [tile], choices="diabetic-retinopathy", kind="image")
    p = make_protocol("classify", [it], DS, mode="eyepacs")
    w = p.work_item(it)
    assert w.task_options == {
        "choices": "diabetic-retinopathy",
        "report_form": "eyepacs",
        "prompts": "report",
        "constrain": False,
    }
    inputs = [read(tile, kind="image")]
    r = run_task("classify", ["Microaneurysms only.\nThe most likely diagnosis is: B", '{"answer": "mild"}'], inputs, None, w.task_options)  # fmt: skip
    assert p.score(it, r).prediction == "mild"
    assert p.score(it, r).score == 1.0
    # no phrase: unreadable, even though the task's repair produced an answer
    r = run_task("classify", ["Stage B.", '{"answer": "mild"}'], inputs, None, w.task_options)
    assert r.parsed["answer"] == "mild"
    assert p.score(it, r).prediction is None
    options = ["No DR", "mild", "moderate"]
    assert most_likely_choice("The most likely diagnosis is: **C: moderate**", options) == "moderate"
    assert most_likely_choice("The most likely diagnosis is: mild", options) == "mild"
    assert most_likely_choice("A or B. The most likely diagnosis is:\n\n(A)", options) == "No DR"
    assert most_likely_choice("The most likely diagnosis is: F", options) is None  # not offered


def test_localize_report_mode_scores_a_repaired_reply_as_the_failed_first(samples) -> None:  # type: ignore[no-untyped-def]
    cxr = samples(CXR)
    it = item("1", [20, 20, 150, 100], None, [cxr], label="right lung")
    p = make_protocol("cxr-localize", [it], DS)
    w = p.work_item(it)
    assert w.task_options == {"labels": ["right lung"], "prompts": "report", "constrain": False}
    inputs = [read(cxr, pad_square=True)]
    good = 'The right lung is on the left of the image.\nFinal Answer: ```json\n[{"box_2d": [200, 100, 800, 500], "label": "right lung"}]\n```'
    r = run_task("cxr-localize", [good], inputs, None, w.task_options)
    assert not r.repaired
    assert p.score(it, r).score > 0
    r = run_task("cxr-localize", ["It is on the left.", good], inputs, None, w.task_options)
    assert r.repaired
    assert r.parsed["boxes"]  # the task's own output used the repair
    assert p.score(it, r).prediction is None
    assert p.score(it, r).score == 0.0


def test_closed_questions_follow_slakes_answer_type(samples) -> None:  # type: ignore[no-untyped-def]
    cxr = samples(CXR)
    items = [
        item("1", "Left lung", "Which lung is larger?", [cxr], answer_type="CLOSED"),
        item("2", "yes", "Is this a CT?", [cxr], answer_type="CLOSED"),
        item("3", "yes", "Is the heart normal?", [cxr], answer_type="OPEN"),
    ]
    p = make_protocol("vqa", items, DS)
    assert p.record()["choices"] == ["closed questions: the dataset's answer_type CLOSED"]
    scored = [
        p.score(items[0], {"text": "Final Answer: the left lung."}),
        p.score(items[1], {"text": "Final Answer: Yes, it is."}),
        p.score(items[2], {"text": "Final Answer: yes"}),
    ]
    assert [s.closed for s in scored] == [True, True, False]
    assert [s.closed_correct for s in scored] == [True, True, False]
    m = p.metrics()
    assert m["closed_accuracy"](scored) == 1.0
    assert p.metric_n("closed_accuracy", scored) == 2
    assert m["token_f1"](scored) == pytest.approx(
        (1.0 + 2 / 4 + 1.0) / 3
    )  # "yes it is" vs "yes": P 1/3, R 1 -> 1/2
