"""MedSigLIP: image and text embeddings for zero-shot classification, linear probes and image search.

MedSigLIP (``google/medsiglip-448``) is the MedGemma family's image encoder: two ~400M towers (image
and text) trained with a sigmoid loss, 448 px input, 1152-d embeddings. Google recommends it over
MedGemma when no text needs generating. This package:

==================  ===================================================================
module              concern
==================  ===================================================================
``preprocess``      the input recipe (zero-pad square, bilinear 448 w/o antialias, [-1, 1])
``local``           :class:`~aris.embed.local.TransformersEmbedder` (``SiglipModel``, CPU/GPU)
``remote``          :class:`~aris.embed.remote.OpenAIEmbedder` (any ``/v1/embeddings`` server)
``embedding``       prepared inputs -> per-part and pooled embeddings, input digests
``store``           embeddings kept with provenance, so an input is never embedded twice
``labels``          built-in label sets and prompt templates
``zeroshot``        sigmoid per label and softmax across labels
``probe``           logistic-regression probes on frozen embeddings
``index``           image search: faiss, sqlite-vec, Qdrant
``task``            the ``zero-shot`` and ``probe`` tasks for :func:`aris.runner.run_task`
==================  ===================================================================

Importing this package imports neither torch nor transformers: the role loader picks the backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aris.errors import ConfigError
from aris.registry import load_target

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from aris.config import ArisSettings

# Embedding engines by name; each module is imported only when chosen.
EMBED_ENGINES: dict[str, str] = {
    "transformers": "aris.embed.local:TransformersEmbedder",
    "openai": "aris.embed.remote:OpenAIEmbedder",
}

# Called after each batch: (images or texts done so far, total).
OnBatch = Callable[[int, int], None]


@runtime_checkable
class Embedder(Protocol):
    """What every embedding engine provides. Embeddings are float32 rows, L2-normalised."""

    kind: str
    model_id: str

    def embed_images(
        self, images: Sequence[Image.Image], *, on_batch: OnBatch | None = None
    ) -> np.ndarray: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def score_params(self) -> tuple[float, float]:
        """``(logit_scale, logit_bias)``: a pair's score is ``exp(scale) * cos + bias``."""
        ...

    def identity(self) -> dict[str, Any]:
        """Model id, weights digest and preprocessing recipe: what can change an embedding."""
        ...

    def close(self) -> None: ...


def load_embedder(settings: ArisSettings) -> Embedder:
    """The embedder ``settings`` name (``embed_engine``, ``embed_model``, ``embed_base_url``)."""
    name = settings.embed_engine
    if name not in EMBED_ENGINES:
        raise ConfigError(f"unknown embed engine {name!r}; choose one of {', '.join(EMBED_ENGINES)}")
    cls = load_target(EMBED_ENGINES[name])
    embedder: Embedder = cls.from_settings(settings)
    return embedder


def identity_key(identity: dict[str, Any]) -> str:
    """A short stable key for an embedder identity (store and index keys).

    ``runtime`` (device, dtype, server address) is left out: the same weights and recipe on a GPU in bf16
    give the same embeddings to within rounding, and an archive indexed on one machine stays searchable
    from another.
    """
    import hashlib
    import json

    # With a weights digest the bytes identify the model; its folder may move without a re-index.
    core = {
        k: v for k, v in identity.items() if k != "runtime" and not (k == "model" and identity.get("weights"))
    }
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()[:32]


__all__ = ["EMBED_ENGINES", "Embedder", "OnBatch", "identity_key", "load_embedder"]
