"""Metrics named as in the MedGemma model card, as plain functions over predictions and references.

Where a well-kept library computes the metric, it is used (scikit-learn, rouge-score); what no library
does (VQA tokenized F1 with the stated normalization, box IoU on [y0, x0, y1, x1], lab-test matching)
is written here and tested against hand-computed values.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    """Macro F1 over classes (scikit-learn), e.g. yes/no per CXR condition averaged over conditions."""
    from sklearn.metrics import f1_score

    return float(
        f1_score(
            list(refs), list(preds), labels=list(labels) if labels else None, average="macro", zero_division=0
        )
    )


def macro_f1_over_conditions(rows: Sequence[tuple[str, str, str]]) -> float:
    """The model card's CXR metric: binary F1 (positive = "yes") per condition, averaged over conditions.

    ``rows`` are (condition, prediction, reference) with yes/no answers; any prediction other than
    "yes" (a missing or unreadable answer included) counts as negative, as binary F1 sees it.
    """
    from sklearn.metrics import f1_score

    by: dict[str, tuple[list[bool], list[bool]]] = {}
    for cond, p, r in rows:
        by.setdefault(cond, ([], []))
        by[cond][0].append(p.strip().lower() == "yes")
        by[cond][1].append(r.strip().lower() == "yes")
    scores = [f1_score(r, p, average="binary", zero_division=0) for p, r in by.values()]
    return float(np.mean(scores)) if scores else float("nan")


@register("macro_accuracy")
def macro_accuracy(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Mean over classes of per-class accuracy (balanced accuracy): the MS-CXR-T improved/stable/worsened metric."""
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(list(refs), list(preds)))


# -- VQA --------------------------------------------------------------------------------------------
_ARTICLES = {"a", "an", "the"}


def normalize_answer(text: str) -> list[str]:
    """Lower-case, drop punctuation and the articles a/an/the, split on whitespace (SQuAD-style)."""
    text = text.lower()
    text = "".join(" " if ch in string.punctuation else ch for ch in text)
    return [t for t in text.split() if t not in _ARTICLES]


def token_f1(pred: str, ref: str) -> float:
    """Token-overlap F1 between normalized answers; 1.0 when both are empty."""
    p, r = normalize_answer(pred), normalize_answer(ref)
    if not p and not r:
        return 1.0
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


@register("closed_accuracy")
def closed_accuracy(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Accuracy on the closed (yes/no reference) subset, answers normalized."""
    pairs = [
        (" ".join(normalize_answer(p)), " ".join(normalize_answer(r)))
        for p, r in zip(preds, refs, strict=True)
        if " ".join(normalize_answer(r)) in ("yes", "no")
    ]
    return float(np.mean([p == r for p, r in pairs])) if pairs else float("nan")


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


def _norm_field(v: Any) -> str:
    return " ".join(str(v if v is not None else "").lower().split())


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
