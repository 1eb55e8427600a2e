"""The published-figure table: one figure per benchmark and metric, each citing where it is printed."""

from __future__ import annotations

from aris.eval.published import FIGURES, figure


def test_one_figure_per_benchmark_and_metric_each_with_its_table() -> None:
    keys = [(f.benchmark.lower(), f.metric) for f in FIGURES]
    assert len(keys) == len(set(keys))
    for f in FIGURES:
        assert 0 < f.value <= 100
        assert "model card" in f.source
        assert "Key performance metrics" in f.source
        assert f.source.count(",") >= 2, f"{f.benchmark}: the card's sub-table is named"


def test_lookup_is_case_insensitive_and_names_the_other_value() -> None:
    pubmed = figure("pubmedqa", "accuracy")
    assert pubmed is not None
    assert pubmed.value == 68.2
    assert "67.6 in the technical report" in pubmed.cite()
    assert figure("PubMedQA", "token_f1") is None
    assert figure(None, "accuracy") is None
