"""MedGemma 1.5 4B's published figures, each with its source, so a report shows "yours vs published".

Every figure below is the one in the project's notes on MedGemma (its headline 1.5 4B numbers),
compiled from the MedGemma 1.5 model card (``google/medgemma-1.5-4b-it``) and the MedGemma
1.5 technical report (arXiv 2604.05081). Two benchmarks carry a second value in another table of the
technical report (issue 22): PubMedQA 67.6 beside the card's 68.2, SLAKE token F1 59.8 beside 59.7.
Aris compares with the model card's value (the figure a reader of the card sees) and prints the other
with its source; neither primary document could be re-read while writing this module, so the table
each alternative sits in is given as the issue reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CARD = "MedGemma 1.5 model card (huggingface.co/google/medgemma-1.5-4b-it), results"
REPORT = "MedGemma 1.5 technical report (arXiv 2604.05081)"


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


FIGURES: tuple[Figure, ...] = (
    Figure("MedQA", "accuracy", 69.1, CARD),
    Figure("MedMCQA", "accuracy", 59.8, CARD),
    Figure(
        "PubMedQA",
        "accuracy",
        68.2,
        CARD,
        {67.6: "a results table of the technical report (issue 22; not re-checked here)"},
    ),
    Figure("EHRQA", "accuracy", 89.6, CARD),
    Figure("MIMIC-CXR", "macro_f1", 89.5, CARD + " (macro F1, top 5 conditions)"),
    Figure(
        "SLAKE",
        "token_f1",
        59.7,
        CARD,
        {59.8: "a results table of the technical report (issue 22; not re-checked here)"},
    ),
    Figure("SLAKE", "closed_accuracy", 82.8, CARD),
    Figure("VQA-RAD", "token_f1", 48.1, CARD),
    Figure("VQA-RAD", "closed_accuracy", 70.2, CARD),
    Figure("Chest ImaGenome", "mean_iou", 38.0, REPORT + " (localization, IoU)"),
    Figure("MS-CXR-T", "macro_accuracy", 65.7, REPORT + " (longitudinal CXR, macro accuracy)"),
    Figure("WSI-Path", "rouge_l", 49.4, REPORT + " (WSI description, ROUGE-L)"),
    Figure("Mendeley lab reports", "macro_f1", 85.0, REPORT + " (lab report extraction, macro F1)"),
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
