"""Prefix reuse: several questions about one volume encode its slices once, on both local engines, with
exactly the answers separate calls give; another volume with the same number of slices (so the same token
ids) is never served from the first one's cache."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aris.engines.base import Engine
from aris.engines.llamacpp import LlamaCppEngine
from aris.engines.transformers import TransformersEngine
from aris.prompt import Turn, build_turns
from aris.types import GenerationParams, ImagePart, Message

QUESTIONS = ["Is there hemorrhage?", "Is there a fracture?", "Is there edema?"]
PARAMS = GenerationParams(max_new_tokens=10)


def volume(seed: int, n: int = 6) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)) for _ in range(n)]


def ct_turns(images: list[Image.Image], question: str) -> list[Turn]:
    parts: list[ImagePart | str] = ["Here are the slices of a CT."]
    for i, img in enumerate(images):
        parts += [ImagePart(img), f"SLICE {i + 1}"]
    parts.append(question)
    return build_turns([Message.user(*parts)])


def replies(engine: Engine, images: list[Image.Image]) -> list[str]:
    return ["".join(engine.stream(ct_turns(images, q), PARAMS)) for q in QUESTIONS]


@pytest.fixture(scope="module")
def hf(tiny_vlm: Path) -> Iterator[tuple[TransformersEngine, TransformersEngine]]:
    cached = TransformersEngine(str(tiny_vlm), device="cpu")
    plain = TransformersEngine(str(tiny_vlm), device="cpu", prefix_cache=False)
    yield cached, plain
    cached.close()
    plain.close()


def test_transformers_continues_from_the_images_cache_with_the_same_logits(
    hf: tuple[TransformersEngine, TransformersEngine],
) -> None:
    engine, _ = hf
    inputs = engine.encode([ct_turns(volume(0), QUESTIONS[0])])
    ids = inputs["input_ids"]
    boundary = int((ids[0] == 256000).nonzero().max()) + 1
    with torch.inference_mode():
        whole = engine.model(**inputs).logits[0, -1]
        head = {k: (v[:, :boundary] if v.dim() == 2 else v) for k, v in inputs.items()}
        cache = engine.model(**head, use_cache=True).cache
        tail = engine.model(
            input_ids=ids[:, boundary:],
            attention_mask=inputs["attention_mask"],
            cache=copy.deepcopy(cache),
        ).logits[0, -1]
    assert torch.allclose(whole, tail, atol=1e-4), (whole - tail).abs().max()


def test_transformers_reuses_the_prefix_and_answers_as_separate_calls(
    hf: tuple[TransformersEngine, TransformersEngine],
) -> None:
    cached, plain = hf
    cached.prefix_stats.update(hits=0, misses=0)
    first = replies(cached, volume(0))
    assert cached.prefix_stats == {"hits": 2, "misses": 1}  # the slices were encoded once
    assert first == replies(plain, volume(0))  # the answers separate, uncached calls give
    assert plain.prefix_stats == {"hits": 0, "misses": 0}
    # Same slice count, same text, other pixels: a miss, not the first volume's cache.
    other = replies(cached, volume(1))
    assert cached.prefix_stats["misses"] == 2
    assert other == replies(plain, volume(1))


@pytest.fixture(scope="module")
def gguf(test_cache: Path) -> Iterator[tuple[LlamaCppEngine, LlamaCppEngine]]:
    from aris.demo.tiny_gguf import build_tiny_gguf

    model, mmproj = build_tiny_gguf(test_cache)
    cached = LlamaCppEngine(str(model), mmproj=str(mmproj), n_ctx=2048)
    plain = LlamaCppEngine(str(model), mmproj=str(mmproj), n_ctx=2048, prefix_cache=False)
    yield cached, plain
    cached.close()
    plain.close()


def test_llamacpp_restores_the_prefix_state_and_answers_as_separate_calls(
    gguf: tuple[LlamaCppEngine, LlamaCppEngine],
) -> None:
    cached, plain = gguf
    first = replies(cached, volume(0))
    assert cached.prefix_stats == {"hits": 2, "misses": 1}
    assert first == replies(plain, volume(0))
    other = replies(cached, volume(1))
    assert cached.prefix_stats["misses"] == 2
    assert other == replies(plain, volume(1))
    # A text-only prompt in between does not disturb the kept prefix.
    "".join(cached.stream(build_turns([Message.user("Hello")]), PARAMS))
    assert replies(cached, volume(1)) == other


def test_a_hit_is_tokenized_from_text_alone_exactly_as_the_processor_does(
    hf: tuple[TransformersEngine, TransformersEngine],
) -> None:
    engine, _ = hf
    turns = ct_turns(volume(2), QUESTIONS[1])
    full = engine.encode([turns])
    engine._prefix = None
    engine._generation_inputs(turns)  # a miss: prefilled from the processor's inputs
    hit = engine._generation_inputs(turns)  # a hit: ids from the tokenizer, no pixels
    assert "pixel_values" not in hit
    assert torch.equal(hit["input_ids"], full["input_ids"])
    assert torch.equal(hit["attention_mask"], full["attention_mask"])
    assert torch.equal(hit["token_type_ids"], full["token_type_ids"])
