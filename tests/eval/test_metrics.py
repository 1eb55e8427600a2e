"""Every metric against hand-computed values and, where one exists, the reference library on the same inputs."""

from __future__ import annotations

import json

import pytest
from rouge_score import rouge_scorer
from sklearn.metrics import balanced_accuracy_score, f1_score

from aris.eval.metrics import (
    accuracy,
    bootstrap_ci,
    closed_accuracy,
    iou,
    lab_field_counts,
    lab_scores,
    lab_scores_from_counts,
    macro_accuracy,
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


def test_macro_accuracy_by_hand_and_against_sklearn() -> None:
    refs = ["improved", "improved", "stable", "worsened", "worsened", "worsened"]
    preds = ["improved", "stable", "stable", "worsened", "stable", "stable"]
    # per class accuracy: improved 1/2, stable 1/1, worsened 1/3
    assert macro_accuracy(preds, refs) == pytest.approx((0.5 + 1 + 1 / 3) / 3)
    assert macro_accuracy(preds, refs) == pytest.approx(balanced_accuracy_score(refs, preds))


def test_vqa_token_f1_normalization_and_closed_accuracy() -> None:
    assert normalize_answer("The LEFT lung, lower-lobe.") == ["left", "lung", "lower", "lobe"]
    assert token_f1("The left lung", "left lower lung") == pytest.approx(0.8)  # P 1, R 2/3
    assert token_f1("", "") == 1.0
    assert token_f1("heart", "lung") == 0.0
    assert mean_token_f1(["The left lung", "heart"], ["left lower lung", "lung"]) == pytest.approx(0.4)
    assert closed_accuracy(["Yes.", "no", "left lung"], ["yes", "yes", "left"]) == pytest.approx(0.5)


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
