"""The local MedSigLIP engine through the real transformers path (tiny random SigLIP, trained tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aris.config import ArisSettings
from aris.embed import identity_key, load_embedder
from aris.embed.preprocess import pixel_values
from aris.errors import ModelNotFoundError


def test_loads_through_automodel_as_siglip(embedder) -> None:  # type: ignore[no-untyped-def]
    from transformers import SiglipModel, SiglipTokenizer

    assert isinstance(embedder.model, SiglipModel)
    assert isinstance(embedder.tokenizer, SiglipTokenizer)
    assert embedder.dim == 32


def test_embeddings_are_deterministic_and_unit_length(tiny_siglip: Path, class_images) -> None:  # type: ignore[no-untyped-def]
    from aris.embed.local import TransformersEmbedder

    images = [v[0] for v in class_images.values()]
    a = TransformersEmbedder(str(tiny_siglip), device="cpu", batch_size=2)
    b = TransformersEmbedder(str(tiny_siglip), device="cpu", batch_size=3)
    try:
        ea, eb = a.embed_images(images), b.embed_images(images)
        ta, tb = (
            a.embed_texts(["pleural effusion", "no finding"]),
            b.embed_texts(["pleural effusion", "no finding"]),
        )
        assert a.identity() == b.identity()
    finally:
        a.close()
        b.close()
    np.testing.assert_allclose(ea, eb, atol=1e-6)  # another batch size, another process state: same vectors
    np.testing.assert_allclose(ta, tb, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(ea, axis=1), 1.0, atol=1e-5)
    assert ea.shape == (3, 32)
    assert float(ea[0] @ ea[1]) < 0.999  # different images, different embeddings


def test_scores_match_siglip_forward(embedder, class_images) -> None:  # type: ignore[no-untyped-def]
    """Our sigmoid/softmax equal transformers' own ``logits_per_image`` (its scale, bias, normalisation)."""
    from aris.embed.zeroshot import score

    images = [class_images["chest_xray"][0], class_images["pathology"][1]]
    labels = ["pleural effusion", "adipose tissue", "no finding"]
    tokens = embedder.tokenizer(labels, padding="max_length", max_length=64, return_tensors="pt")
    with torch.no_grad():
        out = embedder.model(
            input_ids=tokens["input_ids"],
            pixel_values=torch.from_numpy(pixel_values(images, embedder.image_size)),
        )
    s = score(embedder.embed_images(images), embedder.embed_texts(labels), labels, *embedder.score_params())
    np.testing.assert_allclose(s.logits, out.logits_per_image.numpy(), atol=1e-4)
    np.testing.assert_allclose(s.sigmoid, torch.sigmoid(out.logits_per_image).numpy(), atol=1e-6)
    np.testing.assert_allclose(s.softmax, torch.softmax(out.logits_per_image, dim=1).numpy(), atol=1e-6)


def test_text_padding_to_64_changes_nothing_between_calls(embedder) -> None:  # type: ignore[no-untyped-def]
    """A text embeds the same alone or beside a longer one (max_length padding, not longest)."""
    alone = embedder.embed_texts(["edema"])
    together = embedder.embed_texts(["edema", "a much longer description of an enlarged cardiomediastinum"])
    np.testing.assert_allclose(alone[0], together[0], atol=1e-6)


def test_medsiglip_absent_offline_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    settings = ArisSettings.from_flags()
    assert settings.embed_model == "google/medsiglip-448"
    with pytest.raises(ModelNotFoundError) as err:
        load_embedder(settings)
    msg = str(err.value)
    assert "aris pull google/medsiglip-448" in msg
    assert "--embed-model" in msg
    assert "never downloads" in msg


def test_a_non_siglip_folder_is_refused(tmp_path: Path) -> None:
    from aris.embed.local import TransformersEmbedder

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelNotFoundError, match="not SigLIP"):
        TransformersEmbedder(str(tmp_path))


def test_identity_key_ignores_the_folder_and_runtime(embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ident = embedder.identity()
    moved = {
        **ident,
        "model": str(tmp_path / "elsewhere"),
        "runtime": {"device": "cuda", "dtype": "bfloat16"},
    }
    assert identity_key(moved) == identity_key(ident)
    assert identity_key({**ident, "weights": "0" * 64}) != identity_key(ident)
    assert identity_key({**ident, "recipe": {**ident["recipe"], "size": 448}}) != identity_key(ident)


def test_16_bit_grey_images_keep_their_depth(embedder) -> None:  # type: ignore[no-untyped-def]
    a = np.linspace(0, 65535, 64 * 64, dtype=np.uint16).reshape(64, 64)
    img16 = Image.fromarray(a)  # mode I;16
    img8 = Image.fromarray((a // 257).astype(np.uint8)).convert("RGB")
    from aris.embed.preprocess import to_array

    np.testing.assert_allclose(to_array(img16), to_array(img8), atol=1 / 255)  # not clipped at 255 of 65535
    cos = float(embedder.embed_images([img16])[0] @ embedder.embed_images([img8])[0])
    assert cos > 0.99
