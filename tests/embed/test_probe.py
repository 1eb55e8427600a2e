"""Linear probes on frozen embeddings: learn a separable split, match scikit-learn, refuse other models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aris.embed.probe import Probe, embed_samples, identity_check, load_samples, train
from aris.embed.store import EmbeddingStore
from aris.errors import ConfigError, InputError


def test_probe_learns_the_sample_classes_and_predicts_like_sklearn(
    embedder, class_folder: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    samples = load_samples(class_folder)
    assert len(samples) == 15
    data = embed_samples(samples, embedder, EmbeddingStore(tmp_path / "e.db"))
    assert data.X.shape == (15, 32)
    probe = train(data.X, data.y, embedder.identity(), seed=0)
    assert probe.classes == ["chest_xray", "ct_slice", "pathology"]
    assert probe.metrics["accuracy"] == 1.0  # out-of-fold: each view predicted by a probe that never saw it
    assert probe.metrics["macro_auc"] == 1.0
    ref = LogisticRegression(C=probe.C, class_weight="balanced", max_iter=5000).fit(data.X, data.y)
    np.testing.assert_allclose(probe.predict_proba(data.X), ref.predict_proba(data.X), atol=1e-6)

    path = probe.save(tmp_path / "p" / "probe.json")
    assert json.loads(path.read_text())["format"] == "aris-probe-v1"  # JSON, never a pickle
    loaded = Probe.load(path)
    np.testing.assert_allclose(loaded.predict_proba(data.X), probe.predict_proba(data.X))
    identity_check(loaded, embedder)


def test_binary_probe_and_csv_dataset(embedder, class_folder: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    csv = tmp_path / "d.csv"
    rows = ["input,answer"] + [
        f"{p.relative_to(tmp_path)},{'xray' if p.parent.name == 'chest_xray' else 'other'}"
        for p in sorted(class_folder.rglob("*.png"))
    ]
    csv.write_text("\n".join(rows) + "\n")
    data = embed_samples(load_samples(csv), embedder, None)
    probe = train(data.X, data.y, embedder.identity())
    assert probe.coef.shape == (1, 32)
    ref = LogisticRegression(C=probe.C, class_weight="balanced", max_iter=5000).fit(data.X, data.y)
    np.testing.assert_allclose(probe.predict_proba(data.X), ref.predict_proba(data.X), atol=1e-6)


def test_a_class_of_one_is_refused_for_cross_validation() -> None:
    X = np.random.default_rng(0).random((5, 4))
    with pytest.raises(InputError, match="at least two examples"):
        train(X, ["a", "a", "a", "a", "b"], {"model": "m"})


def test_probe_refuses_another_embedder(embedder, other_siglip: Path) -> None:  # type: ignore[no-untyped-def]
    from aris.embed.local import TransformersEmbedder

    probe = train(
        np.eye(4, 32)[[0, 0, 1, 1, 2, 2, 3, 3]].astype(np.float32) + 0.01,
        list("aabbccdd"),
        embedder.identity(),
    )
    other = TransformersEmbedder(str(other_siglip), device="cpu")
    try:
        with pytest.raises(ConfigError, match="Retrain the probe"):
            identity_check(probe, other)
    finally:
        other.close()
