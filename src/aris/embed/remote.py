"""MedSigLIP behind any OpenAI-compatible ``/v1/embeddings`` server (httpx).

Text goes as the OpenAI API sends it (``input``: strings). Images go as ``data:image/png;base64,...``
strings with ``"modality": "image"`` (the convention of Infinity and of Aris's own server), already
padded and resized by this recipe (:func:`aris.embed.preprocess.as_png_image`), so a server that
resizes to its input size again changes nothing.

Zero-shot needs the model's logit scale and bias, which the OpenAI response has no field for: an
Aris server adds them (with its model identity) under ``"aris"``; from another server they are
unknown and zero-shot refuses rather than invent them.
"""

from __future__ import annotations

import base64
import io
import logging
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from aris.embed import OnBatch
from aris.embed.preprocess import as_png_image, l2_normalise, recipe
from aris.errors import ConfigError, EngineError

if TYPE_CHECKING:
    from PIL import Image

    from aris.config import ArisSettings

logger = logging.getLogger(__name__)
DEFAULT_SIZE = 448


def decode_embedding(item: dict[str, Any]) -> np.ndarray:
    """One ``data[i].embedding``: a list of floats, or base64 little-endian float32 (``encoding_format``)."""
    value = item.get("embedding")
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
    if isinstance(value, list):
        return np.asarray(value, dtype=np.float32)
    raise EngineError("the embeddings server sent an entry without an embedding")


def image_data_url(image: Image.Image, size: int) -> str:
    buf = io.BytesIO()
    as_png_image(image, size).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class OpenAIEmbedder:
    kind = "openai"

    @classmethod
    def from_settings(cls, settings: ArisSettings) -> OpenAIEmbedder:
        if not settings.embed_base_url:
            raise ConfigError(
                "--embed-engine openai needs --embed-base-url (e.g. http://127.0.0.1:8765/v1) or ARIS_EMBED_BASE_URL"
            )
        key = settings.embed_api_key.get_secret_value() if settings.embed_api_key else None
        return cls(
            settings.embed_base_url,
            settings.embed_model,
            api_key=key,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
            batch_size=settings.embed_batch_size,
        )

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        max_retries: int = 3,
        batch_size: int = 8,
        backoff: float = 0.5,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model_id = model
        self.max_retries = max_retries
        self.batch_size = batch_size
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=timeout, headers=headers)
        self._info: dict[str, Any] | None = None  # the server's "aris" block, once seen
        self._dim: int | None = None

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        url = f"{self.base_url}/embeddings"
        for attempt in range(self.max_retries + 1):
            try:
                resp = self._http.post(url, json=body)
            except httpx.TransportError as e:
                if attempt >= self.max_retries:
                    raise EngineError(
                        f"embeddings server unreachable at {self.base_url}: {type(e).__name__}"
                    ) from e
                self._sleep(attempt)
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                if attempt >= self.max_retries:
                    raise EngineError(
                        f"embeddings server answered HTTP {resp.status_code} after {attempt + 1} tries"
                    )
                self._sleep(attempt)
                continue
            if resp.status_code != 200:
                try:
                    msg = resp.json()["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    msg = resp.text[:200]
                raise EngineError(f"embeddings server refused the request (HTTP {resp.status_code}): {msg}")
            data: dict[str, Any] = resp.json()
            if isinstance(data.get("aris"), dict):
                self._info = data["aris"]
            return data
        raise EngineError("unreachable")  # pragma: no cover - the loop returns or raises

    def _sleep(self, attempt: int) -> None:
        time.sleep(self.backoff * 2**attempt * random.uniform(1.0, 1.5))

    def _embed(self, inputs: list[str], modality: str) -> np.ndarray:
        body: dict[str, Any] = {"model": self.model_id, "input": inputs, "encoding_format": "float"}
        if modality != "text":
            body["modality"] = modality
        data = self._post(body)
        rows = sorted(data.get("data") or [], key=lambda d: int(d.get("index", 0)))
        if len(rows) != len(inputs):
            raise EngineError(f"embeddings server returned {len(rows)} embeddings for {len(inputs)} inputs")
        out = l2_normalise(np.stack([decode_embedding(r) for r in rows]))
        self._dim = int(out.shape[1])
        return out

    def _server_info(self) -> dict[str, Any]:
        if self._info is None:
            self._embed(["a"], "text")  # any answer tells; an Aris server adds its "aris" block
        return self._info or {}

    @property
    def image_size(self) -> int:
        size = ((self._server_info().get("identity") or {}).get("recipe") or {}).get("size")
        return int(size) if size else DEFAULT_SIZE

    def embed_images(self, images: Sequence[Image.Image], *, on_batch: OnBatch | None = None) -> np.ndarray:
        size = self.image_size
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            out.append(self._embed([image_data_url(im, size) for im in chunk], "image"))
            if on_batch is not None:
                on_batch(start + len(chunk), len(images))
        return np.concatenate(out) if out else np.zeros((0, self._dim or 0), np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if any(not t.strip() for t in texts):
            raise ConfigError("an empty text cannot be embedded")
        return self._embed(list(texts), "text") if texts else np.zeros((0, self._dim or 0), np.float32)

    def score_params(self) -> tuple[float, float]:
        info = self._server_info()
        if "logit_scale" not in info or "logit_bias" not in info:
            raise EngineError(
                "the embeddings server does not report MedSigLIP's logit scale and bias (an Aris server "
                "does); zero-shot probabilities cannot be computed from it. Search and probes still work"
            )
        return float(info["logit_scale"]), float(info["logit_bias"])

    def identity(self) -> dict[str, Any]:
        server = dict(self._server_info().get("identity") or {})
        return {
            "model": server.get("model", self.model_id),
            "weights": server.get("weights"),
            "dim": server.get("dim", self._dim),
            "recipe": server.get("recipe") or recipe(self.image_size),
            "runtime": {"engine": self.kind, "base_url": self.base_url},
        }

    def close(self) -> None:
        self._http.close()
