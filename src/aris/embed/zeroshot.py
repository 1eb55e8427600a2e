"""Zero-shot classification: an image against text labels.

MedSigLIP scores a pair as ``exp(logit_scale) * cos(image, text) + logit_bias`` and was trained with a
sigmoid loss, so ``sigmoid(score)`` is a per-label probability that does not depend on the other
labels (several findings can be present at once). Google's notebooks also show a softmax over the
candidate labels: the relative preference among them, summing to 1. Both are reported; they answer
different questions, and neither is a diagnosis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aris.embed import Embedder
from aris.embed.labels import prompts
from aris.embed.preprocess import l2_normalise
from aris.errors import ConfigError


@dataclass
class Scores:
    labels: list[str]
    cosine: np.ndarray  # (L,) or (n, L)
    logits: np.ndarray
    sigmoid: np.ndarray
    softmax: np.ndarray


def label_embeddings(embedder: Embedder, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """(L, d): each label's template prompts embedded, averaged, normalised (a prompt ensemble)."""
    if len(labels) < 2:
        raise ConfigError("zero-shot needs at least two labels")
    if len(set(labels)) != len(labels):
        raise ConfigError("zero-shot labels must be distinct")
    texts = [p for label in labels for p in prompts(label, list(templates))]
    emb = embedder.embed_texts(texts).reshape(len(labels), len(templates), -1)
    return l2_normalise(emb.mean(axis=1))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    out: np.ndarray = z / z.sum(axis=-1, keepdims=True)
    return out


def score(
    image: np.ndarray, text: np.ndarray, labels: Sequence[str], logit_scale: float, logit_bias: float
) -> Scores:
    """Scores of image embedding(s) (d,) or (n, d) against label embeddings (L, d)."""
    cos = image @ text.T
    logits = np.exp(logit_scale) * cos + logit_bias
    return Scores(list(labels), cos, logits, _sigmoid(logits), _softmax(logits))
