"""MedSigLIP on Hugging Face transformers: ``AutoModel`` -> ``SiglipModel``, CPU or CUDA (bf16).

The weights load only from this machine (a folder, ``$ARIS_HOME/models`` after ``aris pull``, or the
Hugging Face cache), like the MedGemma engine: an absent model is a :class:`ModelNotFoundError` that
says how to get it. transformers 5 returns an output object from ``get_image_features`` and
``get_text_features``; the embedding is its ``pooler_output``, L2-normalised.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aris.embed import OnBatch
from aris.embed.preprocess import TEXT_TOKENS, l2_normalise, pixel_values, recipe
from aris.errors import ConfigError, EngineError, ModelNotFoundError

if TYPE_CHECKING:
    from PIL import Image

    from aris.config import ArisSettings

logger = logging.getLogger(__name__)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise EngineError("device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
    return name


def _dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    table = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}
    return table[name]


def _pooled(out: Any) -> Any:
    """The pooled embedding from transformers 5's output object (or a bare tensor from older releases)."""
    pooled = getattr(out, "pooler_output", None)
    return out if pooled is None else pooled


def _not_found(model: str, e: Exception) -> str:
    from aris.notice import HAI_DEF_TERMS

    if Path(model).expanduser().exists():
        return str(e)
    return (
        f"MedSigLIP model {model!r} is not on this machine and Aris never downloads silently. Get it "
        f"with `aris pull {model}` (network and, for the gated google/medsiglip-448, a Hugging Face "
        "token with its terms accepted: HF_TOKEN or --token), or copy the model folder here and pass "
        f"it with --embed-model PATH (or ARIS_EMBED_MODEL). {HAI_DEF_TERMS}"
    )


class TransformersEmbedder:
    """A local MedSigLIP (or any ``SiglipModel`` folder)."""

    kind = "transformers"

    @classmethod
    def from_settings(cls, settings: ArisSettings) -> TransformersEmbedder:
        return cls(
            settings.embed_model,
            device=settings.device,
            dtype=settings.dtype,
            batch_size=settings.embed_batch_size,
        )

    def __init__(self, model: str, *, device: str = "auto", dtype: str = "auto", batch_size: int = 8) -> None:
        from aris.engines.transformers import resolve_model

        self.model_id = model
        try:
            self.folder: Path | None = resolve_model(model)
        except ModelNotFoundError as e:
            raise ModelNotFoundError(_not_found(model, e)) from None
        self.batch_size = batch_size
        t0 = time.perf_counter()
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        # SiglipConfig validates default sub-configs against CLIP's token ids while loading and warns
        # about ids the saved config does not use; the noise would bury real warnings.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            config = AutoConfig.from_pretrained(self.folder, local_files_only=True)
            if getattr(config, "model_type", None) != "siglip":
                raise ModelNotFoundError(
                    f"{model}: a {getattr(config, 'model_type', 'unknown')!r} model, not SigLIP; "
                    "--embed-model takes MedSigLIP (google/medsiglip-448) or another SiglipModel folder"
                )
            self.device = _device(device)
            self.dtype = _dtype(dtype, self.device)
            self.model: Any = AutoModel.from_pretrained(self.folder, local_files_only=True, dtype=self.dtype)
            self.model.to(self.device).eval()
            try:
                self.tokenizer: Any = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
            except (OSError, ValueError, ImportError) as e:
                raise ModelNotFoundError(
                    f"{model}: its SigLIP tokenizer could not be loaded ({type(e).__name__}: {e}); "
                    "it needs spiece.model, sentencepiece and protobuf"
                ) from e
        finally:
            hf_logging.set_verbosity(verbosity)
        self._setup(config)
        logger.info(
            "embedder loaded: %d px, %d-d, %s on %s, %.1fs",
            self.image_size,
            self.dim,
            str(self.dtype).removeprefix("torch."),
            self.device,
            time.perf_counter() - t0,
        )

    def _setup(self, config: Any) -> None:
        import torch

        self.image_size = int(config.vision_config.image_size)
        self.dim = int(config.vision_config.hidden_size)
        self.text_tokens = min(TEXT_TOKENS, int(config.text_config.max_position_embeddings))
        self._lock = threading.Lock()  # one forward pass at a time on a shared model
        self._weights: str | None = None
        with torch.no_grad():
            self._scale = float(self.model.logit_scale.float().item())
            self._bias = float(self.model.logit_bias.float().item())

    @classmethod
    def from_loaded(
        cls, model: Any, tokenizer: Any = None, *, model_id: str = "in-memory", batch_size: int = 8
    ) -> TransformersEmbedder:
        """Wrap a ``SiglipModel`` already in memory (benchmarks, notebooks); its weights have no digest."""
        self = cls.__new__(cls)
        self.model_id, self.folder, self.batch_size = model_id, None, batch_size
        self.model, self.tokenizer = model.eval(), tokenizer
        param = next(model.parameters())
        self.device, self.dtype = param.device.type, param.dtype
        self._setup(model.config)
        self._weights = "unsaved"
        return self

    def _check_open(self) -> None:
        if self.model is None:
            raise EngineError("the embedder was closed")

    def embed_images(self, images: Sequence[Image.Image], *, on_batch: OnBatch | None = None) -> np.ndarray:
        import torch

        self._check_open()
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), self.batch_size):
            chunk = list(images[start : start + self.batch_size])
            pixels = torch.from_numpy(pixel_values(chunk, self.image_size))
            with self._lock, torch.inference_mode():
                feats = _pooled(
                    self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype))
                )
                out[start : start + len(chunk)] = feats.float().cpu().numpy()
            if on_batch is not None:
                on_batch(start + len(chunk), len(images))
        return l2_normalise(out)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        self._check_open()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if any(not t.strip() for t in texts):
            raise ConfigError("an empty text cannot be embedded")
        # Trained with max_length padding: the text tower pools the LAST position, so padding changes
        # the embedding and must match training.
        tokens = self.tokenizer(
            list(texts),
            padding="max_length",
            max_length=self.text_tokens,
            truncation=True,
            return_tensors="pt",
        )
        out = []
        for start in range(0, len(texts), 64):
            ids = tokens["input_ids"][start : start + 64].to(self.device)
            with self._lock, torch.inference_mode():
                feats = _pooled(self.model.get_text_features(input_ids=ids))
            out.append(feats.float().cpu().numpy())
        return l2_normalise(np.concatenate(out))

    def score_params(self) -> tuple[float, float]:
        return self._scale, self._bias

    def identity(self) -> dict[str, Any]:
        from aris.digests import folder_digest

        if self._weights is None and self.folder is not None:
            self._weights = folder_digest(self.folder)
        return {
            "model": self.model_id,
            "weights": self._weights,
            "dim": self.dim,
            "recipe": recipe(self.image_size),
            "runtime": {
                "engine": self.kind,
                "device": self.device,
                "dtype": str(self.dtype).removeprefix("torch."),
            },
        }

    def close(self) -> None:
        if self.model is None:
            return
        self.model = None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
