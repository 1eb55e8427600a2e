"""The transformers engine on the tiny random Gemma 3 VLM (real processor, real generate, CPU).

References come from paths that do not go through the engine: the processor's own chat template
and ``model.generate`` called directly, a hand-built PEFT model, the tokenizer's ids.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from PIL import Image

from aris.engines.transformers import TransformersEngine
from aris.errors import BudgetError, EngineError, ModelNotFoundError, UnsupportedDtypeError
from aris.generate import generate
from aris.prompt import build_turns
from aris.thinking import split_text
from aris.types import GenerationParams, ImagePart, Message

QUESTION = "What is shown in this image?"


@pytest.fixture(scope="module")
def engine(tiny_vlm: Path) -> Iterator[TransformersEngine]:
    eng = TransformersEngine(str(tiny_vlm))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def image() -> Image.Image:
    # Not square and not 224 px: the processor's resize is part of the path under test.
    img = Image.new("RGB", (300, 200), (40, 40, 40))
    img.paste((220, 220, 220), (60, 40, 200, 160))
    return img


def reference_greedy(engine: TransformersEngine, messages: list[dict[str, Any]], max_new_tokens: int) -> str:
    """Greedy reply through the processor's chat template and ``model.generate``, no Aris code."""
    inputs = engine.processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.inference_mode():
        out = engine.model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=[1, 106], pad_token_id=0
        )
    text = engine.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=False)
    for marker in ("<end_of_turn>", "<eos>", "<pad>"):
        text = text.replace(marker, "")
    return text


def test_capabilities_describe_the_checkpoint(engine: TransformersEngine) -> None:
    caps = engine.capabilities
    assert caps.vision
    assert caps.max_context == 32768  # text_config.max_position_embeddings of the tiny model
    assert caps.image_tokens == 16  # the processor's image_seq_length (MedGemma: 256)
    assert caps.max_images == 128
    assert caps.json_schema
    # The real tokenizer: <start_of_turn>, "user", "\n" are one token each.
    assert engine.count_text_tokens("<start_of_turn>user\n") == 3


def test_stream_image_and_text_equals_plain_greedy(engine: TransformersEngine, image: Image.Image) -> None:
    turns = build_turns([Message.user(ImagePart(image), QUESTION)])
    chunks = list(engine.stream(turns, GenerationParams(max_new_tokens=24)))
    assert len(chunks) > 1
    assert all(chunks)
    ref = reference_greedy(
        engine,
        [
            {
                "role": "user",
                "content": [{"type": "image", "image": image}, {"type": "text", "text": QUESTION}],
            }
        ],
        24,
    )
    assert ref
    assert "".join(chunks) == ref


def test_prompt_ids_match_the_chat_template(engine: TransformersEngine, image: Image.Image) -> None:
    turns = build_turns([Message.system("Be brief."), Message.user(ImagePart(image), QUESTION)])
    ours = engine.encode([turns])
    theirs = engine.processor.apply_chat_template(
        [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {
                "role": "user",
                "content": [{"type": "image", "image": image}, {"type": "text", "text": QUESTION}],
            },
        ],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    assert ours["input_ids"].tolist() == theirs["input_ids"].tolist()
    assert ours["input_ids"][0, 0].item() == 2  # exactly one <bos>
    assert int((ours["input_ids"] == 262144).sum()) == 16  # the image's soft tokens
    assert torch.equal(ours["pixel_values"], theirs["pixel_values"])


class ForceTokens:
    """Makes the model emit a fixed token sequence, so the real streaming path sees thought markers."""

    def __init__(self, ids: list[int], prompt_len: int) -> None:
        self.ids = ids
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_len
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.ids[min(step, len(self.ids) - 1)]] = 0.0
        return forced


def test_thought_markers_survive_streaming(engine: TransformersEngine) -> None:
    tok = engine.tokenizer
    assert tok.convert_tokens_to_ids(["<unused94>", "<unused95>", "<end_of_turn>"]) == [100, 101, 106]
    # They are special tokens: the usual skip_special_tokens=True decoding would erase them.
    assert tok.decode([100, 101], skip_special_tokens=True) == ""
    thought = "thought\nThe lungs look clear."
    answer = " No acute findings."
    ids = [
        100,
        *tok.encode(thought, add_special_tokens=False),
        101,
        *tok.encode(answer, add_special_tokens=False),
    ]
    turns = build_turns([Message.user("Any findings?")], think=True)
    prompt_len = engine.encode([turns])["input_ids"].shape[1]
    chunks = list(
        engine._stream(turns, GenerationParams(max_new_tokens=50), [ForceTokens([*ids, 106], prompt_len)])
    )
    raw = "".join(chunks)
    assert raw == f"<unused94>{thought}<unused95>{answer}"  # <end_of_turn> removed, markers kept
    assert split_text(raw) == ("The lungs look clear.", answer)


def test_generate_end_to_end(engine: TransformersEngine, image: Image.Image) -> None:
    pieces: list[tuple[str, str]] = []
    result = generate(
        engine,
        [Message.user(ImagePart(image), QUESTION)],
        GenerationParams(max_new_tokens=16),
        on_piece=lambda kind, text: pieces.append((kind, text)),
    )
    ref = reference_greedy(
        engine,
        [
            {
                "role": "user",
                "content": [{"type": "image", "image": image}, {"type": "text", "text": QUESTION}],
            }
        ],
        16,
    )
    assert result.engine == "transformers"
    assert result.raw == ref
    assert result.text == ref.strip()
    assert result.thought is None
    assert "".join(t for _, t in pieces) == ref
    assert result.usage["images"] == 1
    assert result.usage["completion_tokens"] == engine.count_text_tokens(ref)
    assert result.timings.first_token_s is not None
    assert "not for diagnosis" in result.notice


def test_batch_equals_single(engine: TransformersEngine) -> None:
    questions = ["Hi", "List the lobes of the right lung and what each borders.", "Is this normal?"]
    prompts = [build_turns([Message.user(q)]) for q in questions]
    params = GenerationParams(max_new_tokens=20)
    batch = engine.generate_batch(prompts, params)
    singles = ["".join(engine.stream(p, params)) for p in prompts]
    assert len(set(singles)) == 3
    assert batch == singles
    # Left padding: every row of the padded batch ends exactly where its prompt ends.
    ids = engine.encode(prompts)
    tail = engine.tokenizer.encode("<start_of_turn>model\n", add_special_tokens=False)
    assert all(row[-len(tail) :] == tail for row in ids["input_ids"].tolist())
    assert ids["attention_mask"][:, -1].tolist() == [1, 1, 1]
    assert ids["attention_mask"][:, 0].tolist() == [0, 1, 0]  # only the longest prompt is unpadded


def test_batch_with_images(engine: TransformersEngine, image: Image.Image) -> None:
    prompts = [
        build_turns([Message.user(ImagePart(image), QUESTION)]),
        build_turns([Message.user("No image here, a longer question to pad against.")]),
    ]
    params = GenerationParams(max_new_tokens=12)
    assert engine.generate_batch(prompts, params) == ["".join(engine.stream(p, params)) for p in prompts]


def test_stop_strings(engine: TransformersEngine) -> None:
    turns = build_turns([Message.user("Describe a normal chest X-ray.")])
    full = "".join(engine.stream(turns, GenerationParams(max_new_tokens=24)))
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    expected = full[: full.find(stop)]
    params = GenerationParams(max_new_tokens=24, stop=(stop,))
    assert "".join(engine.stream(turns, params)) == expected
    assert engine.generate_batch([turns], params) == [expected]


def test_usage_counts_the_ids_generated_and_says_whether_the_reply_was_cut(
    engine: TransformersEngine,
) -> None:
    turns = build_turns([Message.user("Describe a normal chest X-ray.")])
    inputs = engine.encode([turns])
    with torch.inference_mode():
        out = engine.model.generate(**inputs, max_new_tokens=12, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    ended = new[-1] in (1, 106)  # <eos>, <end_of_turn>
    reply = engine.stream(turns, GenerationParams(max_new_tokens=12))
    "".join(reply)
    assert reply.usage == {
        "prompt_tokens": inputs["input_ids"].shape[1],
        "completion_tokens": len(new) - int(ended),
        "cut": int(not ended),
    }
    # The text re-tokenized need not give the ids back: the count comes from the ids.
    full = "".join(engine.stream(turns, GenerationParams(max_new_tokens=24)))
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    reply = engine.stream(turns, GenerationParams(max_new_tokens=24, stop=(stop,)))
    "".join(reply)
    assert reply.usage["cut"] == 0  # a stop string ended it


def test_sampling_is_seeded(engine: TransformersEngine) -> None:
    turns = build_turns([Message.user("Hello")])
    params = GenerationParams(max_new_tokens=12, temperature=1.0, seed=7)
    first = "".join(engine.stream(turns, params))
    assert "".join(engine.stream(turns, params)) == first
    greedy = "".join(engine.stream(turns, GenerationParams(max_new_tokens=12)))
    assert first != greedy


SCHEMA = {
    "type": "object",
    "properties": {
        "finding": {"type": "string", "enum": ["normal", "effusion", "pneumothorax"]},
        "urgent": {"type": "boolean"},
        "side": {"type": "string", "enum": ["left", "right", "both", "none"]},
    },
    "required": ["finding", "urgent", "side"],
    "additionalProperties": False,
}


def test_json_schema_constrains_output(engine: TransformersEngine, image: Image.Image) -> None:
    turns = build_turns([Message.user(ImagePart(image), "Report as JSON.")])
    params = GenerationParams(max_new_tokens=60, json_schema=SCHEMA)
    unconstrained = "".join(engine.stream(turns, GenerationParams(max_new_tokens=60)))
    with pytest.raises(json.JSONDecodeError):
        json.loads(unconstrained)  # the random model writes noise unless constrained
    text = "".join(engine.stream(turns, params))
    jsonschema.validate(json.loads(text), SCHEMA)
    (batch,) = engine.generate_batch([turns], params)
    assert batch == text


def test_early_close_stops_generation(engine: TransformersEngine) -> None:
    turns = build_turns([Message.user("Write a very long report.")])
    gen = engine.stream(turns, GenerationParams(max_new_tokens=4000))
    assert next(gen)
    t0 = time.perf_counter()
    gen.close()
    closed_in = time.perf_counter() - t0
    # 4000 tokens take about a minute here; stopping must take one decoding step.
    assert closed_in < 2.0
    assert not any(t.name == "aris-generate" and t.is_alive() for t in threading.enumerate())


class FailAt:
    """A logits processor that breaks after a few steps, as an out-of-memory error would."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.calls = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.calls += 1
        if self.calls > self.step:
            raise RuntimeError("simulated device failure")
        return scores


def test_generation_failure_reaches_the_consumer(engine: TransformersEngine) -> None:
    turns = build_turns([Message.user("Hello")])
    with pytest.raises(EngineError, match="simulated device failure"):
        list(engine._stream(turns, GenerationParams(max_new_tokens=50), [FailAt(3)]))
    assert not any(t.name == "aris-generate" and t.is_alive() for t in threading.enumerate())


def test_budget_refuses_too_many_images(engine: TransformersEngine) -> None:
    small = Image.new("RGB", (8, 8))
    turns = build_turns([Message.user(*[ImagePart(small)] * 129, "Which slice?")])
    with pytest.raises(BudgetError, match="129 images exceed this engine's limit of 128") as err:
        engine.check_budget(turns, GenerationParams())
    assert "sample fewer" in str(err.value)


def test_budget_refuses_too_long_a_prompt(engine: TransformersEngine) -> None:
    text = "pleural effusion " * 8000  # about 16,000 tokens with the real tokenizer
    assert 15000 < engine.count_text_tokens(text) < 17000
    small = Image.new("RGB", (8, 8))
    fits = build_turns([Message.user(*[ImagePart(small)] * 100, text)])
    engine.check_budget(fits, GenerationParams(max_new_tokens=512))  # 16k + 1.6k + 0.5k < 32k
    with pytest.raises(BudgetError, match="context is 32768") as err:
        engine.check_budget(fits, GenerationParams(max_new_tokens=16000))
    assert "send fewer images" in str(err.value)
    too_long = build_turns([Message.user(text * 3)])
    with pytest.raises(BudgetError, match="raise the context"):
        engine.check_budget(too_long, GenerationParams())


# -- settings refused before any weights load ---------------------------------------------------


def test_fp16_is_refused(tiny_vlm: Path) -> None:
    with pytest.raises(UnsupportedDtypeError) as err:
        TransformersEngine(str(tiny_vlm), dtype="float16")
    msg = str(err.value)
    assert "36822" in msg
    assert "bfloat16" in msg
    assert "garbage" in msg


def test_4bit_without_cuda_is_refused(tiny_vlm: Path) -> None:
    assert not torch.cuda.is_available()
    with pytest.raises(EngineError, match="needs a CUDA GPU"):
        TransformersEngine(str(tiny_vlm), quantization="4bit")


def test_4bit_without_bitsandbytes_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from aris.engines.transformers import nf4_config

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # what an install without the extra sees
    with pytest.raises(EngineError, match=r"pip install 'aris\[cuda\]'"):
        nf4_config()


def test_missing_model_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with pytest.raises(ModelNotFoundError) as err:
        TransformersEngine("google/medgemma-1.5-4b-it")
    msg = str(err.value)
    assert "aris pull google/medgemma-1.5-4b-it" in msg
    assert "Health AI Developer Foundations" in msg
    assert "local folder" in msg


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        TransformersEngine(str(tmp_path / "no-model-here"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        TransformersEngine(str(tmp_path / "empty"))


def test_model_pulled_into_aris_home_is_found(tiny_vlm: Path, aris_home: Path) -> None:
    from aris.engines.transformers import resolve_model

    pulled = aris_home / "models" / "google--medgemma-1.5-4b-it"
    pulled.mkdir(parents=True)
    (pulled / "config.json").write_text("{}")
    assert resolve_model("google/medgemma-1.5-4b-it") == pulled


def test_missing_adapter_is_named(tiny_vlm: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="adapter folder not found") as err:
        TransformersEngine(str(tiny_vlm), adapter=str(tmp_path / "my-adapter"))
    assert "my-adapter" in str(err.value)
    (tmp_path / "not-an-adapter").mkdir()
    with pytest.raises(EngineError, match=r"no adapter_config\.json"):
        TransformersEngine(str(tiny_vlm), adapter=str(tmp_path / "not-an-adapter"))


# -- a LoRA adapter and a text-only checkpoint -----------------------------------------------------


def test_adapter_is_applied(engine: TransformersEngine, tiny_vlm: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(tiny_vlm, local_files_only=True)
    torch.manual_seed(1)
    # Non-zero LoRA weights (the default init is a no-op), on the text attention only.
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)", init_lora_weights=False
    )
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")

    tuned = TransformersEngine(str(tiny_vlm), adapter=str(tmp_path / "adapter"))
    turns = build_turns([Message.user("Hello there")])
    params = GenerationParams(max_new_tokens=16)
    got = "".join(tuned.stream(turns, params))
    # The answer is attributed to the adapter, not to the base model alone.
    assert generate(tuned, [Message.user("Hello there")], params).model == f"{tiny_vlm}+adapter"
    tuned.close()

    by_hand = PeftModel.from_pretrained(
        AutoModelForImageTextToText.from_pretrained(tiny_vlm, local_files_only=True), tmp_path / "adapter"
    ).eval()
    inputs = engine.encode([turns])
    with torch.inference_mode():
        out = by_hand.generate(
            **inputs, max_new_tokens=16, do_sample=False, eos_token_id=[1, 106], pad_token_id=0
        )
    expected = engine.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=False)
    assert got == expected.replace("<end_of_turn>", "").replace("<eos>", "").replace("<pad>", "")
    assert got != "".join(engine.stream(turns, params))


@pytest.fixture(scope="module")
def tiny_text_model(test_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random text-only Gemma 3 (the shape of MedGemma 27B text, scaled down)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from aris.demo.tiny import chat_template, gemma3_tokenizer

    folder = tmp_path_factory.mktemp("tiny-text")
    config = Gemma3TextConfig(
        vocab_size=262208,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=16,
        max_position_embeddings=8192,
        eos_token_id=[1, 106],
        bos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    Gemma3ForCausalLM(config).save_pretrained(folder)
    tok = gemma3_tokenizer(test_cache)
    tok.chat_template = chat_template()
    tok.save_pretrained(folder)
    return folder


def test_text_only_checkpoint(tiny_text_model: Path, image: Image.Image) -> None:
    eng = TransformersEngine(str(tiny_text_model))
    assert type(eng.model).__name__ == "Gemma3ForCausalLM"
    assert not eng.capabilities.vision
    assert eng.capabilities.max_context == 8192
    messages = [{"role": "user", "content": "Name two causes of chest pain."}]
    turns = build_turns([Message.user("Name two causes of chest pain.")])
    got = "".join(eng.stream(turns, GenerationParams(max_new_tokens=12)))
    ids = eng.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        out = eng.model.generate(
            **ids, max_new_tokens=12, do_sample=False, eos_token_id=[1, 106], pad_token_id=0
        )
    expected = eng.tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=False)
    assert got == expected.replace("<end_of_turn>", "").replace("<eos>", "").replace("<pad>", "")
    with pytest.raises(BudgetError, match="cannot take images"):
        eng.check_budget(build_turns([Message.user(ImagePart(image), "What?")]), GenerationParams())
    eng.close()
