"""Metrics named as in the MedGemma model card, as plain functions over predictions and references.

Where a well-kept library computes the metric, it is used (scikit-learn, rouge-score); what no library
does (VQA tokenized F1 with the stated normalization, box IoU on [y0, x0, y1, x1], lab-test matching)
is written here and tested against hand-computed values.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

METRICS: dict[str, Callable[..., float]] = {}


def register(name: str) -> Callable[[Callable[..., float]], Callable[..., float]]:
    def deco(fn: Callable[..., float]) -> Callable[..., float]:
        METRICS[name] = fn
        return fn

    return deco


# -- answers ----------------------------------------------------------------------------------------
# Reading "Final Answer: X" and mapping X to an option is the task layer's job
# (aris.tasks.parsing.final_answer / match_option): eval scores what the tasks parse, one parser for both.


@register("accuracy")
def accuracy(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Exact match after lower-casing and trimming (multiple choice: compare letters)."""
    if not refs:
        return float("nan")
    return float(np.mean([p.strip().lower() == r.strip().lower() for p, r in zip(preds, refs, strict=True)]))


# -- classification ---------------------------------------------------------------------------------
@register("macro_f1")
def macro_f1(preds: Sequence[str], refs: Sequence[str], labels: Sequence[str] | None = None) -> float:
    """Macro F1 over classes (scikit-learn), e.g. the classes of an image classification set."""
    from sklearn.metrics import f1_score

    return float(
        f1_score(
            list(refs), list(preds), labels=list(labels) if labels else None, average="macro", zero_division=0
        )
    )


def binary_f1(preds: Sequence[str | None], refs: Sequence[str]) -> float:
    """F1 with "yes" as the positive class, an unreadable answer (None) counting as wrong.

    Unreadable on a "yes" reference is a false negative; on a "no" reference a false positive (it is
    not a correct "no"). ``2tp / (2tp + fp + fn)``; when that is 0/0 (no positive reference, no "yes"
    answer, nothing unreadable: every answer a correct "no") the condition scores 1.0, as
    scikit-learn's ``f1_score(zero_division=1.0)`` does, rather than 0 for a perfect set of answers.
    """
    tp = fp = fn = 0
    for p, r in zip(preds, refs, strict=True):
        if r == "yes":
            tp += p == "yes"
            fn += p != "yes"
        else:
            fp += p != "no"
    denom = 2 * tp + fp + fn
    return 1.0 if denom == 0 else 2 * tp / denom


def macro_f1_over_conditions(rows: Sequence[tuple[str, str | None, str]]) -> float:
    """The model card's chest X-ray metric: binary F1 per condition (:func:`binary_f1`), averaged over
    conditions ("macro F1", MedGemma technical reports, CXR classification tables).

    ``rows`` are (condition, prediction, reference) with "yes"/"no" references and "yes", "no" or
    None (unreadable) predictions.
    """
    by: dict[str, tuple[list[str | None], list[str]]] = {}
    for cond, p, r in rows:
        preds, refs = by.setdefault(cond, ([], []))
        preds.append(p.strip().lower() if p else None)
        refs.append(r.strip().lower())
    scores = [binary_f1(p, r) for p, r in by.values()]
    return float(np.mean(scores)) if scores else float("nan")


@register("balanced_accuracy")
def balanced_accuracy(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Mean over the reference classes of each class's recall (scikit-learn's balanced accuracy)."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        # a wrong or missing answer outside the reference classes is expected, not news
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(list(refs), list(preds)))


@register("macro_accuracy")
def macro_accuracy_by_finding(rows: Sequence[tuple[str, str | None, str]]) -> float:
    """MS-CXR-T's "macro accuracy": per finding, the mean of the per-class accuracies (recall of
    improved, stable and worsened: balanced accuracy, so the large "stable" class does not dominate),
    then the mean over findings.

    Source: MS-CXR-T (Bannur et al., CVPR 2023, BioViL-T) reports macro accuracy per finding; the
    MedGemma technical reports give one MS-CXR-T number, the mean over its five findings.
    ``rows`` are (finding, prediction, reference); an unreadable prediction (None) is a miss.
    """
    by: dict[str, tuple[list[str], list[str]]] = {}
    for finding, p, r in rows:
        preds, refs = by.setdefault(finding, ([], []))
        preds.append(p or "")
        refs.append(r)
    scores = [balanced_accuracy(p, r) for p, r in by.values()]
    return float(np.mean(scores)) if scores else float("nan")


# -- VQA --------------------------------------------------------------------------------------------


def normalize_answer(text: str) -> list[str]:
    """SQuAD's ``normalize_answer`` (v1.1/v2.0 evaluation script), split into tokens: lower-case,
    DELETE punctuation ("x-ray" -> "xray"), drop the articles a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


_PUNCTUATION = frozenset(string.punctuation)


def token_f1(pred: str, ref: str) -> float:
    """SQuAD's token F1 (v2.0 evaluation script ``compute_f1``): bag-of-tokens overlap of the
    normalized answers; when either is empty, 1.0 if both are, else 0.0."""
    p, r = normalize_answer(pred), normalize_answer(ref)
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


@register("token_f1")
def mean_token_f1(preds: Sequence[str], refs: Sequence[str]) -> float:
    return (
        float(np.mean([token_f1(p, r) for p, r in zip(preds, refs, strict=True)])) if refs else float("nan")
    )


def exact_normalized(pred: str, ref: str) -> bool:
    """Exact match of the SQuAD-normalized answers (closed choice questions: "left lung")."""
    return normalize_answer(pred) == normalize_answer(ref)


# -- boxes ------------------------------------------------------------------------------------------
def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``[y0, x0, y1, x1]`` boxes (any consistent unit)."""
    y0, x0 = max(a[0], b[0]), max(a[1], b[1])
    y1, x1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, y1 - y0) * max(0.0, x1 - x0)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


@register("mean_iou")
def mean_iou(preds: Sequence[Sequence[float] | None], refs: Sequence[Sequence[float]]) -> float:
    """Mean IoU over reference boxes; a missing prediction scores 0."""
    return float(np.mean([iou(p, r) if p is not None else 0.0 for p, r in zip(preds, refs, strict=True)]))


# -- text -------------------------------------------------------------------------------------------
@register("rouge_l")
def rouge_l(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (rouge-score, with stemming), the WSI description metric."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return float(np.mean([scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs, strict=True)]))


# -- lab reports ------------------------------------------------------------------------------------
LAB_FIELDS = ("name", "result", "unit", "range", "panel", "method", "specimen", "sample_collection_time")


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _canon_number(m: re.Match[str]) -> str:
    try:
        return format(Decimal(m.group(0)).normalize(), "f")
    except InvalidOperation:  # pragma: no cover - the pattern only matches decimals
        return m.group(0)


def _norm_field(v: Any) -> str:
    """A field as compared: lower-cased, whitespace collapsed, every number in canonical form
    ("13.50" -> "13.5", "4.0-11.0" -> "4-11"), so equal values written differently match."""
    text = " ".join(str(v if v is not None else "").lower().split())
    return _NUMBER.sub(_canon_number, text)


@dataclass
class LabScore:
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int


def _prf(tp: int, fp: int, fn: int) -> LabScore:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return LabScore(p, r, f, tp, fp, fn)


def match_tests(pred: Sequence[dict[str, Any]], ref: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """Pair predicted with true tests by name (normalized; one-to-one, greedy on field agreement)."""
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    for j, r in enumerate(ref):
        best, best_agree = None, -1
        for i, p in enumerate(pred):
            if i in used or _norm_field(p.get("name")) != _norm_field(r.get("name")):
                continue
            agree = sum(_norm_field(p.get(f)) == _norm_field(r.get(f)) for f in LAB_FIELDS)
            if agree > best_agree:
                best, best_agree = i, agree
        if best is not None:
            used.add(best)
            pairs.append((best, j))
    return pairs


def lab_field_counts(pred: Sequence[dict[str, Any]], ref: Sequence[dict[str, Any]]) -> tuple[int, int, int]:
    """(tp, fp, fn) over fields: a field is a true positive when the matched test has the same value.

    Fields of unmatched predicted tests are false positives; of unmatched true tests, false negatives.
    A matched field with a wrong value is both (the prediction is wrong and the truth is missed).
    Empty fields on both sides are not counted.
    """
    pairs = match_tests(pred, ref)
    tp = fp = fn = 0
    matched_p = {i for i, _ in pairs}
    matched_r = {j for _, j in pairs}
    for i, j in pairs:
        for f in LAB_FIELDS:
            pv, rv = _norm_field(pred[i].get(f)), _norm_field(ref[j].get(f))
            if not pv and not rv:
                continue
            if pv == rv:
                tp += 1
            else:
                fp += bool(pv)
                fn += bool(rv)
    for i, p in enumerate(pred):
        if i not in matched_p:
            fp += sum(bool(_norm_field(p.get(f))) for f in LAB_FIELDS)
    for j, r in enumerate(ref):
        if j not in matched_r:
            fn += sum(bool(_norm_field(r.get(f))) for f in LAB_FIELDS)
    return tp, fp, fn


def lab_scores(
    docs: Sequence[tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]]]],
) -> dict[str, LabScore]:
    """Macro (mean of per-document P/R/F1) and micro (pooled over all fields) scores."""
    return lab_scores_from_counts([lab_field_counts(p, r) for p, r in docs])


def lab_scores_from_counts(counts: Sequence[tuple[int, int, int]]) -> dict[str, LabScore]:
    """Macro and micro scores from each document's (tp, fp, fn): the bootstrap resamples these
    counts instead of matching the tests again on every resample."""
    if not counts:
        nan = float("nan")
        return {"macro": LabScore(nan, nan, nan, 0, 0, 0), "micro": LabScore(nan, nan, nan, 0, 0, 0)}
    per_doc = [_prf(*c) for c in counts]
    tp, fp, fn = (sum(c) for c in zip(*counts, strict=True))
    macro = LabScore(
        float(np.mean([d.precision for d in per_doc])),
        float(np.mean([d.recall for d in per_doc])),
        float(np.mean([d.f1 for d in per_doc])),
        tp,
        fp,
        fn,
    )
    return {"macro": macro, "micro": _prf(tp, fp, fn)}


# -- uncertainty ------------------------------------------------------------------------------------
def bootstrap_ci(
    values: Sequence[Any],
    statistic: Callable[[Sequence[Any]], float],
    *,
    n: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` over items (resampled with replacement)."""
    if not values:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n, len(values)))
    stats = [statistic([values[i] for i in row]) for row in idx]
    lo, hi = np.nanpercentile(stats, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)
