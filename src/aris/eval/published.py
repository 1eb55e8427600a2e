"""The model card's published figures for MedGemma 1.5 4B, so a report shows "yours vs published"."""

from __future__ import annotations

# (benchmark, metric) -> value in percent. Source: MedGemma 1.5 model card / technical report (2026).
MEDGEMMA_15_4B: dict[tuple[str, str], float] = {
    ("MedQA", "accuracy"): 69.1,
    ("MedMCQA", "accuracy"): 59.8,
    ("PubMedQA", "accuracy"): 68.2,
    ("EHRQA", "accuracy"): 89.6,
    ("MIMIC-CXR", "macro_f1"): 89.5,
    ("SLAKE", "token_f1"): 59.7,
    ("SLAKE", "closed_accuracy"): 82.8,
    ("VQA-RAD", "token_f1"): 48.1,
    ("VQA-RAD", "closed_accuracy"): 70.2,
    ("Chest ImaGenome", "mean_iou"): 38.0,
    ("MS-CXR-T", "macro_accuracy"): 65.7,
    ("WSI-Path", "rouge_l"): 49.4,
    ("Mendeley lab reports", "macro_f1"): 85.0,
}


def published(benchmark: str | None, metric: str) -> float | None:
    """The published figure for a benchmark name (case-insensitive), or None."""
    if not benchmark:
        return None
    for (name, m), value in MEDGEMMA_15_4B.items():
        if name.lower() == benchmark.lower() and m == metric:
            return value
    return None
