"""The llama.cpp engine on real GGUFs: the Gemma 3 270M (text) and the tiny VLM converted with its mmproj.

Answers are checked against independent paths: llama-cpp-python's own ``create_completion`` on the
same prompt string, transformers' tokenizer/processor and transformers' greedy generation on the
same weights (the tiny model in f32, text and image).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from PIL import Image

from aris.engines.llamacpp import LlamaCppEngine, _Detokenizer, _StopFilter, resolve_gguf
from aris.errors import BudgetError, EngineError, ModelNotFoundError, ProjectorMissingError
from aris.generate import generate
from aris.prompt import Turn, build_turns, render
from aris.types import GenerationParams, ImagePart, Message

IMAGE_SOFT_TOKEN = 262144
QUESTION = "What is the capital of France?"


def turns_of(*messages: Message) -> list[Turn]:
    return build_turns(list(messages))


def noise(seed: int, size: int = 224) -> Image.Image:
    """An image the tiny model's processor and libmtmd both take at its native size (no resize)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def engine(gguf_270m: Path) -> Iterator[LlamaCppEngine]:
    eng = LlamaCppEngine(str(gguf_270m), n_ctx=2048)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def gemma_tokenizer(tiny_vlm: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_vlm)


@pytest.fixture(scope="module")
def greedy_24(engine: LlamaCppEngine) -> list[str]:
    return list(engine.stream(turns_of(Message.user(QUESTION)), GenerationParams(max_new_tokens=24)))


# -- text, on the real Gemma 3 270M ------------------------------------------------------------


def test_text_stream_matches_llama_cpp_completion(
    engine: LlamaCppEngine, gguf_270m: Path, greedy_24: list[str], gemma_tokenizer: Any
) -> None:
    import llama_cpp

    turns = turns_of(Message.user(QUESTION))
    assert len(greedy_24) > 1
    assert all(isinstance(c, str) for c in greedy_24)
    reference = llama_cpp.Llama(model_path=str(gguf_270m), n_ctx=512, verbose=False)
    try:
        done = reference.create_completion(render(turns, bos=False), max_tokens=24, temperature=0.0)
    finally:
        reference.close()
    assert "".join(greedy_24) == done["choices"][0]["text"]  # type: ignore[index]

    # The ids llama.cpp evaluated are transformers' ids for Aris's rendered prompt, <bos> included once.
    expected = gemma_tokenizer(render(turns), add_special_tokens=False)["input_ids"]
    list(engine.stream(turns, GenerationParams(max_new_tokens=2)))
    assert engine._llama.input_ids[: len(expected)].tolist() == expected
    assert engine.prompt_tokens(turns) == expected
    assert expected[:2] == [2, 105]


def test_greedy_is_deterministic_whatever_came_before(engine: LlamaCppEngine, greedy_24: list[str]) -> None:
    turns = turns_of(Message.user(QUESTION))
    other = turns_of(Message.user("Name three colours."))
    assert list(engine.stream(turns, GenerationParams(max_new_tokens=24))) == greedy_24
    list(engine.stream(other, GenerationParams(max_new_tokens=8)))  # shares a prefix, left in the cache
    assert list(engine.stream(turns, GenerationParams(max_new_tokens=24))) == greedy_24


def test_stop_strings_cut_the_reply(engine: LlamaCppEngine, greedy_24: list[str]) -> None:
    turns = turns_of(Message.user(QUESTION))
    full = "".join(greedy_24)
    boundary = len("".join(greedy_24[:4]))
    spanning = full[boundary - 2 : boundary + 2]  # begins in one chunk, ends in the next
    out = "".join(engine.stream(turns, GenerationParams(max_new_tokens=24, stop=(spanning,))))
    assert out == full[: full.index(spanning)]
    out = "".join(engine.stream(turns, GenerationParams(max_new_tokens=24, stop=("never-said", spanning))))
    assert out == full[: full.index(spanning)]
    assert "".join(engine.stream(turns, GenerationParams(max_new_tokens=24, stop=("never-said",)))) == full


def test_max_new_tokens(engine: LlamaCppEngine, greedy_24: list[str]) -> None:
    out = list(engine.stream(turns_of(Message.user(QUESTION)), GenerationParams(max_new_tokens=5)))
    assert out == greedy_24[:5]


def test_usage_counts_the_tokens_generated_and_says_whether_the_reply_was_cut(
    engine: LlamaCppEngine, greedy_24: list[str], gguf_270m: Path
) -> None:
    turns = turns_of(Message.user(QUESTION))
    reply = engine.stream(turns, GenerationParams(max_new_tokens=5))
    assert "".join(reply) == "".join(greedy_24[:5])
    assert reply.usage == {
        "prompt_tokens": len(engine.prompt_tokens(turns)),
        "completion_tokens": 5,
        "cut": 1,
    }
    # A stop string ends the reply: not cut.
    stop = "".join(greedy_24[:3])[-3:]
    reply = engine.stream(turns, GenerationParams(max_new_tokens=24, stop=(stop,)))
    "".join(reply)
    assert reply.usage["cut"] == 0
    # A full context cuts the reply well short of max_new_tokens, and says so.
    n_prompt = len(engine.prompt_tokens(turns))
    small = LlamaCppEngine(str(gguf_270m), n_ctx=n_prompt + 4)
    try:
        reply = small.stream(turns, GenerationParams(max_new_tokens=100))
        text = "".join(reply)
    finally:
        small.close()
    assert reply.usage["cut"] == 1
    assert reply.usage["completion_tokens"] < 100
    assert text == "".join(greedy_24)[: len(text)]


def test_a_token_longer_than_32_bytes_reaches_the_stream(engine: LlamaCppEngine) -> None:
    # llama-cpp-python's detokenize has a 32-byte buffer and returns b"" for a longer piece: 379
    # Gemma 3 tokens, whole words in Bengali, Devanagari, Tamil... vanished from replies.
    word = " পাকিস্তানের"
    assert len(word.encode()) > 32
    (token,) = engine._llama.tokenize(word.encode(), add_bos=False, special=False)
    pieces = _Detokenizer(engine._llama)
    assert pieces.feed(token) + pieces.finish() == word


def test_closing_the_stream_stops_generation(engine: LlamaCppEngine, greedy_24: list[str]) -> None:
    turns = turns_of(Message.user(QUESTION))
    n_prompt = len(engine.prompt_tokens(turns))
    stream = engine.stream(turns, GenerationParams(max_new_tokens=500))
    assert [next(stream), next(stream)] == greedy_24[:2]
    stream.close()
    assert engine._llama.n_tokens <= n_prompt + 2  # nothing decoded after the consumer left
    assert list(engine.stream(turns, GenerationParams(max_new_tokens=24))) == greedy_24


def test_json_schema_constrains_the_reply(engine: LlamaCppEngine) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "country": {"type": "string", "enum": ["France", "Italy", "Spain"]},
            "is_capital": {"type": "boolean"},
        },
        "required": ["city", "country", "is_capital"],
        "additionalProperties": False,
    }
    turns = turns_of(Message.user("Which city is the capital of France? Answer in JSON."))
    out = "".join(engine.stream(turns, GenerationParams(max_new_tokens=60, json_schema=schema)))
    jsonschema.validate(json.loads(out), schema)
    assert engine.capabilities.json_schema


def test_sampling_follows_the_seed(engine: LlamaCppEngine) -> None:
    turns = turns_of(Message.user(QUESTION))
    runs = [
        "".join(engine.stream(turns, GenerationParams(max_new_tokens=12, temperature=1.0, seed=s)))
        for s in (7, 7, 8)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_count_text_tokens_uses_the_model_tokenizer(engine: LlamaCppEngine, gemma_tokenizer: Any) -> None:
    text = "<start_of_turn>user\nThe chest X-ray shows  a 2.5 cm nodule; Ответ: нет 🧬<end_of_turn>\n"
    assert engine.count_text_tokens(text) == len(gemma_tokenizer(text, add_special_tokens=False)["input_ids"])


def test_special_tokens_and_split_characters_reach_the_stream(engine: LlamaCppEngine) -> None:
    text = "<unused94>thought: ☤ 🧬 Ответ<unused95>The answer."
    ids = engine._llama.tokenize(text.encode(), add_bos=False, special=True)
    assert ids[0] == 100  # <unused94>
    assert 101 in ids  # <unused95>
    detok = _Detokenizer(engine._llama)
    pieces = [detok.feed(t) for t in ids] + [detok.finish()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_stop_filter_holds_back_a_possible_stop() -> None:
    f = _StopFilter(["<end>", "STOP"])
    assert f.feed("abc<e") == ("abc", False)
    assert f.feed("n") == ("", False)
    assert f.feed("x") == ("<enx", False)
    assert f.feed("yST") == ("y", False)
    assert f.feed("OPzz") == ("", True)
    g = _StopFilter(["<end>"])
    assert g.feed("tail<e") == ("tail", False)
    assert g.finish() == "<e"


def test_image_without_projector_is_refused(engine: LlamaCppEngine) -> None:
    assert engine.capabilities.vision is False
    turns = turns_of(Message.user(ImagePart(noise(0)), "Describe."))
    with pytest.raises(ProjectorMissingError) as err:
        engine.stream(turns, GenerationParams())
    message = str(err.value)
    for part in (
        "mmproj-*.gguf",
        "mmproj-F16.gguf",
        "mmproj-model-f16.gguf",
        "--mmproj FILE",
        "same repository",
    ):
        assert part in message
    with pytest.raises(ProjectorMissingError):
        engine.check_budget(turns, GenerationParams())
    with pytest.raises(ProjectorMissingError):
        generate(engine, [Message.user(ImagePart(noise(0)), "Describe.")])


def test_projector_beside_the_model_is_named(gguf_270m: Path, tmp_path: Path) -> None:
    (tmp_path / "model-Q4_K_M.gguf").symlink_to(gguf_270m)
    (tmp_path / "mmproj-F16.gguf").write_bytes(b"")
    eng = LlamaCppEngine(str(tmp_path), n_ctx=512)  # the folder `aris pull` makes
    try:
        with pytest.raises(ProjectorMissingError, match=r"--mmproj .*mmproj-F16\.gguf"):
            eng.stream(turns_of(Message.user(ImagePart(noise(0)))), GenerationParams())
    finally:
        eng.close()


def test_missing_files_say_how_to_get_them(gguf_270m: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        LlamaCppEngine(str(tmp_path / "medgemma-4b-it-Q4_K_M.gguf"))
    assert "aris pull <gguf repo> --quant Q4_K_M" in str(err.value)
    assert "mmproj" in str(err.value)
    with pytest.raises(ModelNotFoundError) as err:
        LlamaCppEngine(str(gguf_270m), mmproj=str(tmp_path / "mmproj-F16.gguf"))
    assert "projector file not found" in str(err.value)
    assert "mmproj-*.gguf" in str(err.value)


def test_wrong_projector_fails_at_load(gguf_270m: Path, tiny_gguf: tuple[Path, Path]) -> None:
    with pytest.raises(EngineError, match="could not load this projector"):
        LlamaCppEngine(str(gguf_270m), mmproj=str(tiny_gguf[1]), n_ctx=512)


def test_resolve_gguf(tmp_path: Path, aris_home: Path) -> None:
    pulled = aris_home / "models" / "unsloth--medgemma-4b-it-GGUF"
    pulled.mkdir(parents=True)
    (pulled / "medgemma-4b-it-Q4_K_M.gguf").write_bytes(b"")
    (pulled / "mmproj-F16.gguf").write_bytes(b"")
    assert resolve_gguf("unsloth/medgemma-4b-it-GGUF") == pulled / "medgemma-4b-it-Q4_K_M.gguf"
    assert resolve_gguf(str(pulled)) == pulled / "medgemma-4b-it-Q4_K_M.gguf"
    (pulled / "medgemma-4b-it-Q8_0.gguf").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match=r"Q4_K_M\.gguf, medgemma-4b-it-Q8_0\.gguf; pass the file"):
        resolve_gguf(str(pulled))
    with pytest.raises(EngineError, match="vision projector"):
        resolve_gguf(str(pulled / "mmproj-F16.gguf"))


def test_budget_refusal(engine: LlamaCppEngine) -> None:
    assert engine.capabilities.max_context == 2048
    turns = turns_of(Message.user(QUESTION))
    with pytest.raises(BudgetError) as err:
        engine.check_budget(turns, GenerationParams(max_new_tokens=4000))
    message = str(err.value)
    assert "context is 2048" in message
    assert "--n-ctx" in message
    assert ">= 32768" in message
    long = turns_of(Message.user("nodule " * 2500))
    with pytest.raises(BudgetError):
        engine.check_budget(long, GenerationParams(max_new_tokens=1))
    with pytest.raises(BudgetError, match=r"llama\.cpp context is 2048"):
        next(engine.stream(long, GenerationParams(max_new_tokens=1)))


# -- images, on the tiny VLM converted by llama.cpp's converter ---------------------------------


@pytest.fixture(scope="module")
def tiny_gguf(test_cache: Path) -> tuple[Path, Path]:
    from aris.demo.tiny_gguf import build_tiny_gguf

    return build_tiny_gguf(test_cache)


@pytest.fixture(scope="module")
def vision(tiny_gguf: tuple[Path, Path]) -> Iterator[LlamaCppEngine]:
    model, mmproj = tiny_gguf
    eng = LlamaCppEngine(str(model), mmproj=str(mmproj), n_ctx=2048)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def hf_tiny(tiny_vlm: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_vlm)
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm, dtype=torch.float32).eval()
    return processor, model


def test_the_budget_counts_the_tokens_around_each_image(
    vision: LlamaCppEngine, tiny_gguf: tuple[Path, Path]
) -> None:
    # Each image costs "\n\n" <start_of_image> soft tokens <end_of_image> "\n\n" (newlines of
    # neighbouring images may merge): counted as the soft tokens alone, 20 images passed the check
    # 40 tokens short and the reply hit the context. Now it errs high, by at most a token an image.
    turns = turns_of(Message.user(*[ImagePart(noise(i)) for i in range(20)], "Describe."))
    needed = len(vision.prompt_tokens(turns)) + 64
    model, mmproj = tiny_gguf
    for n_ctx, fits in ((needed - 1, False), (needed + 20, True)):
        eng = LlamaCppEngine(str(model), mmproj=str(mmproj), n_ctx=n_ctx)
        try:
            if fits:
                eng.check_budget(turns, GenerationParams(max_new_tokens=64))
            else:
                with pytest.raises(BudgetError, match="20 images x"):
                    eng.check_budget(turns, GenerationParams(max_new_tokens=64))
        finally:
            eng.close()


def hf_inputs(processor: Any, turns: list[Turn]) -> Any:
    images = [img for turn in turns for img in turn.images]
    return processor(text=render(turns), images=images or None, return_tensors="pt", add_special_tokens=False)


def test_image_request_streams_through_libmtmd(
    vision: LlamaCppEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    from aris.demo.tiny import TINY_IMAGE_TOKENS

    caps = vision.capabilities
    assert caps.vision
    assert caps.image_tokens == TINY_IMAGE_TOKENS
    assert caps.max_context == 2048
    capfd.readouterr()
    result = generate(
        vision,
        [Message.user(ImagePart(noise(1)), "Describe this image.")],
        GenerationParams(max_new_tokens=12),
    )
    assert result.engine == "llamacpp"
    assert result.usage["images"] == 1
    assert result.raw
    err = capfd.readouterr().err
    assert "Describe this image" not in err  # libmtmd logs every prompt fragment unless silenced
    assert "add_text" not in err


def test_image_prompt_tokens_match_the_processor(vision: LlamaCppEngine, hf_tiny: tuple[Any, Any]) -> None:
    processor, _ = hf_tiny
    turns = turns_of(
        Message.system("You are a radiologist."),
        Message.user(ImagePart(noise(2)), "SLICE 1", ImagePart(noise(3, 300)), "SLICE 2\n\nCompare."),
        Message.assistant("<unused94>plan<unused95>Both clear."),
        Message.user("And now?", ImagePart(noise(4))),
    )
    expected = hf_inputs(processor, turns)["input_ids"][0].tolist()
    ours = [IMAGE_SOFT_TOKEN if t == -1 else t for t in vision.prompt_tokens(turns)]
    assert ours == expected
    # and what libmtmd actually evaluated
    stream = vision.stream(turns, GenerationParams(max_new_tokens=3))
    next(stream)
    seen = vision._llama.input_ids[: len(expected)].tolist()
    stream.close()
    assert [IMAGE_SOFT_TOKEN if t == -1 else t for t in seen] == expected


@pytest.mark.parametrize("with_image", [False, True], ids=["text", "image"])
def test_greedy_tokens_match_transformers(
    vision: LlamaCppEngine, hf_tiny: tuple[Any, Any], with_image: bool
) -> None:
    """Same greedy reply as transformers, up to a near-tie the 2e-4 logit noise may break either way."""
    import torch

    processor, model = hf_tiny
    parts: list[Any] = [ImagePart(noise(5, 300))] if with_image else []
    turns = turns_of(Message.user(*parts, "Write a short story about a lighthouse keeper."))
    with torch.no_grad():
        out = model.generate(
            **hf_inputs(processor, turns),
            max_new_tokens=24,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
        )
    hf_new = out.sequences[0, -len(out.scores) :].tolist()
    margins = [float(np.diff(np.sort(s[0].numpy())[-2:])[0]) for s in out.scores]  # top-1 minus top-2

    ours = "".join(vision.stream(turns, GenerationParams(max_new_tokens=24)))
    agreed, step = 0, len(hf_new)
    for n in range(1, len(hf_new) + 1):
        prefix = processor.tokenizer.decode(hf_new[:n], skip_special_tokens=False)
        if prefix.endswith("\ufffd"):  # a character still split over byte tokens
            continue
        if not ours.startswith(prefix):
            step = n
            break
        agreed = n
    # Text-only prompts agree to 2e-4 per logit. With an image, clip.cpp's and torch's SigLIP differ by
    # ~1e-3 per logit at the first token (test_image_logits_match_transformers) and that drifts while
    # decoding, so a near-tie there is one under 2e-2.
    tie = 2e-2 if with_image else 2e-3
    if agreed < len(hf_new):
        assert min(margins[agreed:step]) < tie, f"diverged after {agreed} tokens without a near-tie"
    else:
        assert ours == processor.tokenizer.decode(hf_new, skip_special_tokens=False)


def first_logits(vision: LlamaCppEngine, turns: list[Turn]) -> np.ndarray[Any, Any]:
    """llama.cpp's next-token logits after evaluating ``turns`` the way the engine does."""
    vision._mtmd_chunks(turns, evaluate=True)
    llama = vision._llama
    return np.ctypeslib.as_array(llama._ctx.get_logits_ith(-1), shape=(llama.n_vocab(),)).copy()


def hf_logits(hf_tiny: tuple[Any, Any], turns: list[Turn]) -> np.ndarray[Any, Any]:
    import torch

    processor, model = hf_tiny
    with torch.no_grad():
        return model(**hf_inputs(processor, turns)).logits[0, -1].numpy()  # type: ignore[no-any-return]


@pytest.mark.parametrize("size", [(224, 224), (500, 300), (90, 100)], ids=["native", "wide", "small"])
def test_image_logits_match_transformers(
    vision: LlamaCppEngine, hf_tiny: tuple[Any, Any], size: tuple[int, int]
) -> None:
    rng = np.random.default_rng(8)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    turns = turns_of(Message.user(ImagePart(image), "Describe the findings."))
    assert np.abs(first_logits(vision, turns) - hf_logits(hf_tiny, turns)).max() < 2e-3


def test_the_image_reaches_the_logits(vision: LlamaCppEngine, hf_tiny: tuple[Any, Any]) -> None:
    black = turns_of(Message.user(ImagePart(Image.new("RGB", (224, 224))), "Describe the findings."))
    white = turns_of(Message.user(ImagePart(Image.new("RGB", (224, 224), "white")), "Describe the findings."))
    hf_change = hf_logits(hf_tiny, black) - hf_logits(hf_tiny, white)
    ours_change = first_logits(vision, black) - first_logits(vision, white)
    assert np.abs(ours_change - hf_change).max() < 2e-3
    assert np.abs(hf_change).max() > 0.1


def test_text_after_an_image_request_is_unaffected(vision: LlamaCppEngine) -> None:
    params = GenerationParams(max_new_tokens=12)
    text_turns = turns_of(Message.user("Describe the findings."))
    before = list(vision.stream(text_turns, params))
    list(vision.stream(turns_of(Message.user(ImagePart(noise(6)), "Describe the findings.")), params))
    assert list(vision.stream(text_turns, params)) == before
