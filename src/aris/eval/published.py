"""MedGemma 1.5 4B's published figures, each with its source, so a report shows "yours vs published".

Every value is the MedGemma 1.5 4B column of the model card's "Key performance metrics" section
(``google/medgemma-1.5-4b-it``; columns Gemma 3 4B | MedGemma 1 4B | MedGemma 1.5 4B | MedGemma 1
27B), cited with the card's sub-table. The card was read in full (issue 22). The technical report
(arXiv 2604.05081) prints a few of them differently in its main results table (PubMedQA 67.6, SLAKE
token F1 59.8, MMLU Med 69.7, MedXpertQA 26.4; CT-RATE 26.9 in its appendix); those values are known
here only as quoted by readers of the report's PDF, not from the report itself, so they are shown as
alternatives with that caveat and the card's value is the one compared with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CARD = "MedGemma 1.5 model card (huggingface.co/google/medgemma-1.5-4b-it), Key performance metrics"
REPORT_T3 = (
    "the technical report's main results table (arXiv 2604.05081 v2, as quoted secondhand; not re-read)"
)


def _card(table: str) -> str:
    return f"{CARD}, {table}"


@dataclass(frozen=True)
class Figure:
    benchmark: str
    metric: str
    value: float  # percent
    source: str
    alternatives: dict[float, str] = field(default_factory=dict)  # value -> where it appears instead

    def cite(self) -> str:
        alt = "; ".join(f"{v:.1f} in {where}" for v, where in self.alternatives.items())
        return self.source + (f" (also reported: {alt})" if alt else "")


TEXT = _card("text evaluations")
FIGURES: tuple[Figure, ...] = (
    Figure("MedQA", "accuracy", 69.1, TEXT + " (MedQA 4-option)"),
    Figure("MedMCQA", "accuracy", 59.8, TEXT),
    Figure("PubMedQA", "accuracy", 68.2, TEXT, {67.6: REPORT_T3}),
    Figure("MMLU-Med", "accuracy", 69.6, TEXT, {69.7: REPORT_T3}),
    Figure("MedXpertQA", "accuracy", 16.4, TEXT + " (text only)"),
    Figure("AfriMed-QA", "accuracy", 56.0, TEXT + " (25-question set)"),
    Figure("EHRQA", "accuracy", 89.6, _card("medical record evaluations")),
    Figure("EHRNoteQA", "accuracy", 80.4, _card("medical record evaluations")),
    Figure(
        "MIMIC-CXR",
        "macro_f1",
        89.5,
        _card("imaging evaluations, 2D classification (macro F1, top 5 conditions)"),
    ),
    Figure(
        "CheXpert",
        "macro_f1",
        48.2,
        _card("imaging evaluations, 2D classification (macro F1, top 5 conditions)"),
    ),
    Figure(
        "CXR14", "macro_f1", 48.4, _card("imaging evaluations, 2D classification (macro F1, 3 conditions)")
    ),
    Figure("PathMCQA", "accuracy", 70.0, _card("imaging evaluations, 2D classification")),
    Figure("US-DermMCQA", "accuracy", 73.5, _card("imaging evaluations, 2D classification")),
    Figure("EyePACS", "accuracy", 76.8, _card("imaging evaluations, 2D classification")),
    Figure(
        "WSI-Path", "rouge_l", 49.4, _card("imaging evaluations (the card says ROUGE; the report's ROUGE-L)")
    ),
    Figure("CT Dataset 1", "macro_accuracy", 61.1, _card("imaging evaluations, 3D (CT, 7 conditions)")),
    Figure("MRI Dataset 1", "macro_accuracy", 64.7, _card("imaging evaluations, 3D (MRI, 10 conditions)")),
    Figure(
        "CT-RATE",
        "macro_f1",
        27.0,
        _card("imaging evaluations, 3D"),
        {26.9: REPORT_T3.replace("main results table", "appendix")},
    ),
    Figure("SLAKE", "token_f1", 59.7, _card("imaging evaluations, VQA"), {59.8: REPORT_T3}),
    Figure(
        "SLAKE", "closed_accuracy", 82.8, _card("imaging evaluations, VQA (accuracy on the closed subset)")
    ),
    Figure("VQA-RAD", "token_f1", 48.1, _card("imaging evaluations, VQA")),
    Figure(
        "VQA-RAD", "closed_accuracy", 70.2, _card("imaging evaluations, VQA (accuracy on the closed subset)")
    ),
    Figure(
        "Chest ImaGenome", "mean_iou", 38.0, _card("imaging evaluations, region of interest detection (IoU)")
    ),
    Figure(
        "MS-CXR-T", "macro_accuracy", 65.7, _card("imaging evaluations, disease progression (longitudinal)")
    ),
    Figure(
        "Mendeley lab reports",
        "macro_f1",
        85.0,
        _card("document understanding, PDF-to-JSON (PNG image to JSON)"),
    ),
    Figure(
        "Mendeley lab reports",
        "micro_f1",
        83.0,
        _card("document understanding, PDF-to-JSON (PNG image to JSON)"),
    ),
)

# (benchmark, metric) -> value in percent (kept for callers that want the bare numbers).
MEDGEMMA_15_4B: dict[tuple[str, str], float] = {(f.benchmark, f.metric): f.value for f in FIGURES}


def figure(benchmark: str | None, metric: str) -> Figure | None:
    """The published figure for a benchmark name (case-insensitive) and metric, or None."""
    if not benchmark:
        return None
    key = benchmark.strip().lower()
    return next((f for f in FIGURES if f.benchmark.lower() == key and f.metric == metric), None)


def published(benchmark: str | None, metric: str) -> float | None:
    """The published value for a benchmark name (case-insensitive), or None."""
    f = figure(benchmark, metric)
    return f.value if f else None


def benchmarks() -> list[str]:
    return sorted({f.benchmark for f in FIGURES})
