"""Every metric against hand-computed values and, where one exists, the reference library on the same inputs."""

from __future__ import annotations

import json

import pytest
from rouge_score import rouge_scorer
from sklearn.metrics import balanced_accuracy_score, f1_score

from aris.eval.metrics import (
    accuracy,
    binary_f1,
    bootstrap_ci,
    exact_normalized,
    iou,
    lab_field_counts,
    lab_scores,
    lab_scores_from_counts,
    macro_accuracy_by_finding,
    macro_f1,
    macro_f1_over_conditions,
    mean_iou,
    mean_token_f1,
    normalize_answer,
    rouge_l,
    token_f1,
)


def test_accuracy_by_hand() -> None:
    assert accuracy(["A", "b", "C", "D"], ["A", "B", "D", "D"]) == 0.75


def test_macro_f1_by_hand_and_against_sklearn() -> None:
    refs, preds = ["a", "a", "b", "b"], ["a", "b", "b", "b"]
    # class a: P 1, R .5, F 2/3; class b: P 2/3, R 1, F .8
    assert macro_f1(preds, refs) == pytest.approx((2 / 3 + 0.8) / 2)
    assert macro_f1(preds, refs) == pytest.approx(f1_score(refs, preds, average="macro"))


def test_macro_f1_over_conditions_by_hand() -> None:
    rows = [
        ("effusion", "yes", "yes"),
        ("effusion", "no", "yes"),
        ("effusion", "yes", "no"),  # tp1 fn1 fp1 -> .5
        ("edema", "yes", "yes"),
        ("edema", "no", "no"),  # perfect -> 1
    ]
    assert macro_f1_over_conditions(rows) == pytest.approx(0.75)


def test_a_condition_without_positives_scores_one_when_every_answer_is_right() -> None:
    """Not F1 = 0 for a perfect set of answers: scikit-learn's zero_division=1.0 convention."""
    refs = ["no", "no", "no"]
    assert binary_f1(["no", "no", "no"], refs) == 1.0
    assert binary_f1(["no"] * 3, refs) == f1_score(refs, ["no"] * 3, pos_label="yes", zero_division=1.0)
    assert binary_f1(["no", "yes", "no"], refs) == 0.0  # one false positive: 0 / 1
    assert binary_f1(["no", None, "no"], refs) == 0.0  # unreadable on a "no" is not a correct "no"
    rows = [("pneumothorax", "no", "no"), ("pneumothorax", "no", "no"), ("edema", "yes", "yes")]
    assert macro_f1_over_conditions(rows) == 1.0


def test_binary_f1_counts_unreadable_as_wrong_against_sklearn() -> None:
    preds = ["yes", None, "no", None, "yes", "no"]
    refs = ["yes", "yes", "no", "no", "no", "yes"]
    # sklearn on the same items, each unreadable answer replaced by the opposite of its reference
    opposite = [
        p if p is not None else ("no" if r == "yes" else "yes") for p, r in zip(preds, refs, strict=True)
    ]
    assert binary_f1(preds, refs) == pytest.approx(f1_score(refs, opposite, pos_label="yes"))
    assert binary_f1(preds, refs) == pytest.approx(2 * 1 / (2 * 1 + 2 + 2))  # tp 1, fp 2, fn 2


def test_ms_cxr_t_macro_accuracy_is_per_finding_then_averaged() -> None:
    rows = [
        ("edema", "improved", "improved"),
        ("edema", "stable", "improved"),
        ("edema", "stable", "stable"),  # improved 1/2, stable 1/1 -> .75
        ("effusion", "worsened", "worsened"),
        ("effusion", None, "worsened"),
        ("effusion", "stable", "worsened"),  # worsened 1/3 -> 1/3
    ]
    assert macro_accuracy_by_finding(rows) == pytest.approx((0.75 + 1 / 3) / 2)
    edema = balanced_accuracy_score(["improved", "improved", "stable"], ["improved", "stable", "stable"])
    effusion = balanced_accuracy_score(["worsened"] * 3, ["worsened", "", "stable"])
    assert macro_accuracy_by_finding(rows) == pytest.approx((edema + effusion) / 2)
    # pooled balanced accuracy (the old definition) differs: the findings no longer weigh equally
    pooled = balanced_accuracy_score([r for _, _, r in rows], [p or "" for _, p, _ in rows])
    assert pooled != pytest.approx(macro_accuracy_by_finding(rows))


# SQuAD v2.0's official evaluation functions (evaluate-v2.0.py, normalize_answer and compute_f1),
# copied to check our normalization against the reference it claims to follow.
def _squad_normalize(s: str) -> str:
    import re
    import string

    def remove_articles(text: str) -> str:
        return re.compile(r"\b(a|an|the)\b", re.UNICODE).sub(" ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _squad_f1(a_gold: str, a_pred: str) -> float:
    import collections

    gold_toks = _squad_normalize(a_gold).split()
    pred_toks = _squad_normalize(a_pred).split()
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return float(gold_toks == pred_toks)
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def test_vqa_token_f1_is_squads() -> None:
    assert normalize_answer("The LEFT lung, lower-lobe.") == ["left", "lung", "lowerlobe"]
    assert token_f1("x-ray", "xray") == 1.0  # SQuAD deletes punctuation
    assert token_f1("The left lung", "left lower lung") == pytest.approx(0.8)  # P 1, R 2/3
    assert token_f1("", "") == 1.0
    assert token_f1("heart", "lung") == 0.0
    assert mean_token_f1(["The left lung", "heart"], ["left lower lung", "lung"]) == pytest.approx(0.4)
    pairs = [
        ("T2-weighted MRI", "t2 weighted mri"),
        ("the liver, and spleen", "Liver and the spleen."),
        ("a", "the"),
        ("Left  kidney's upper pole", "left kidneys upper pole"),
        ("CT (axial)", "axial ct"),
        ("no", "No."),
    ]
    for pred, ref in pairs:
        assert token_f1(pred, ref) == pytest.approx(_squad_f1(ref, pred)), (pred, ref)
    assert exact_normalized("The Left Lung.", "left lung")
    assert not exact_normalized("left lung", "lung")


def test_iou_by_hand() -> None:
    assert iou([0, 0, 10, 10], [5, 5, 15, 15]) == pytest.approx(25 / 175)
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    assert mean_iou([[0, 0, 10, 10], None], [[0, 0, 10, 10], [0, 0, 5, 5]]) == 0.5


def test_rouge_l_by_hand_and_against_rouge_score() -> None:
    pred, ref = "the cat sat", "the cat sat on the mat"
    assert rouge_l([pred], [ref]) == pytest.approx(2 * 1 * 0.5 / 1.5)  # LCS 3: P 3/3, R 3/6
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    preds = ["tumor cells infiltrating stroma", "benign colonic mucosa"]
    refs = ["infiltrating tumour cells in the stroma", "normal colonic mucosa without dysplasia"]
    expected = sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs, strict=True)) / 2
    assert rouge_l(preds, refs) == pytest.approx(expected)


def test_lab_extraction_counts_by_hand() -> None:
    truth = [
        {"name": "Hemoglobin", "result": "13.5", "unit": "g/dL", "range": "13.0-17.0", "panel": "CBC"},
        {"name": "Glucose", "result": "101", "unit": "mg/dL", "range": "70-99", "panel": "CMP"},
    ]
    pred = [
        {
            "name": "hemoglobin",
            "result": "13.5",
            "unit": "g/dL",
            "range": "13.0-17.0",
            "panel": "CBC",
        },  # 5 tp
        {
            "name": "Glucose",
            "result": "110",
            "unit": "mg/dL",
            "range": "70-99",
            "panel": "CMP",
        },  # 4 tp, 1 fp+fn
        {"name": "Sodium", "result": "140", "unit": "mmol/L"},  # unmatched: 3 fp
    ]
    assert lab_field_counts(pred, truth) == (9, 4, 1)
    scores = lab_scores([(pred, truth), (truth, truth)])
    doc1_p, doc1_r = 9 / 13, 9 / 10
    doc1_f = 2 * doc1_p * doc1_r / (doc1_p + doc1_r)
    assert scores["macro"].f1 == pytest.approx((doc1_f + 1.0) / 2)
    micro_p, micro_r = 19 / 23, 19 / 20  # pooled: tp 9+10, fp 4, fn 1
    assert scores["micro"].precision == pytest.approx(micro_p)
    assert scores["micro"].recall == pytest.approx(micro_r)


def test_lab_fields_compare_numbers_by_value() -> None:
    truth = [{"name": "Hemoglobin", "result": "13.50", "unit": "g/dL", "range": "13.0 - 17.0"}]
    pred = [{"name": "Hemoglobin", "result": "13.5", "unit": "g/dL", "range": "13 - 17"}]
    assert lab_field_counts(pred, truth) == (4, 0, 0)
    wrong = [{"name": "Hemoglobin", "result": "135", "unit": "g/dL", "range": "13 - 17"}]
    assert lab_field_counts(wrong, truth) == (3, 1, 1)  # a different number is still different


def test_lab_scores_from_counts_equal_lab_scores() -> None:
    a = [{"name": "Hb", "result": "13"}, {"name": "Na", "result": "140"}]
    b = [{"name": "Hb", "result": "12"}]
    docs = [(a, a), (b, a), ([], a)]
    counts = [lab_field_counts(p, r) for p, r in docs]
    assert counts == [(4, 0, 0), (1, 1, 3), (0, 0, 4)]  # Hb name tp, result fp+fn; Na missed
    assert lab_scores_from_counts(counts) == lab_scores(docs)
    assert lab_scores_from_counts([])["micro"].f1 != lab_scores_from_counts([])["micro"].f1  # NaN


def test_lab_scores_on_the_sample_truth_file(samples) -> None:  # type: ignore[no-untyped-def]
    truth = json.loads(samples("lab/synthetic_lab_report.truth.json").read_text())
    perfect = lab_scores([(truth, truth)])
    assert perfect["micro"].f1 == 1.0
    half = lab_scores([(truth[: len(truth) // 2], truth)])
    assert half["micro"].precision == 1.0
    assert half["micro"].recall == pytest.approx(
        sum(bool(v) for t in truth[: len(truth) // 2] for v in t.values())
        / sum(bool(v) for t in truth for v in t.values())
    )


def test_bootstrap_ci_is_deterministic_and_brackets_the_mean() -> None:
    values = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1] * 5
    stat = lambda xs: sum(xs) / len(xs)  # noqa: E731
    lo, hi = bootstrap_ci(values, stat, n=500, seed=1)
    assert (lo, hi) == bootstrap_ci(values, stat, n=500, seed=1)
    assert lo < 0.7 < hi
    assert lo > 0.5
    assert hi < 0.9
