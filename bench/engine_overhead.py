"""Aris's whole generation path against the bare transformers call, on the tiny Gemma 3 VLM, same run.

Aris: ``aris.generate.generate`` (prompt building, budget check, prompt hash over the pixels, generation on
a thread with a streamer, thought splitting, the Result). Raw: the processor and ``model.generate`` on the
same model object, the prompt string written once beforehand, greedy, the same ``max_new_tokens``. After a
warm-up the two alternate, the order flipping every repeat, so drift on a shared machine hits both alike;
both must produce the same text, so the model did the same work. The verdict uses the median of paired
differences (each Aris call against the raw call beside it). Goal: Aris adds at most 5%.

    python bench/engine_overhead.py [--repeats 20] [--max-new-tokens 32] [--cache .cache/test-models]
"""

from __future__ import annotations

import os

# Before torch loads OpenMP. With OpenMP's default spin-waiting on a CPU shared with other work, the
# bare call made from a long-lived thread ran 3-7x slower than the same call from a fresh thread (as
# Aris makes for each generation): that measured the scheduler and flattered Aris. Sleeping waits
# make the two comparable; pass OMP_WAIT_POLICY=ACTIVE to see the effect.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aris.demo.tiny import build_tiny_vlm
from aris.engines.transformers import TransformersEngine, clean_reply
from aris.generate import generate
from aris.prompt import build_turns, render
from aris.types import GenerationParams, ImagePart, Message

REPO = Path(__file__).resolve().parents[1]
QUESTION = "Describe the findings in this chest X-ray."
GOAL = 0.05


def chest_like_image(size: int = 2048) -> Image.Image:
    """A radiograph-sized grey image with structure: Aris hashes the full pixels, so size matters."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    body = 180 * np.exp(-(((x - 0.5) / 0.35) ** 2 + ((y - 0.55) / 0.45) ** 2))
    noise = rng.normal(0, 8, (size, size))
    gray = np.clip(body + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def raw_call(engine: TransformersEngine, prompt: str, image: Image.Image, max_new_tokens: int) -> str:
    inputs = engine.processor(text=prompt, images=[image], add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        out = engine.model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=[1, 106], pad_token_id=0
        )
    return clean_reply(
        engine.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=False)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--cache", type=Path, default=REPO / ".cache" / "test-models")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    engine = TransformersEngine(str(build_tiny_vlm(args.cache)))
    image = chest_like_image(args.image_size)
    messages = [Message.user(ImagePart(image), QUESTION)]
    prompt = render(build_turns(messages))  # the raw caller writes the template string once
    params = GenerationParams(max_new_tokens=args.max_new_tokens)

    for _ in range(args.warmup):
        ref = raw_call(engine, prompt, image, args.max_new_tokens)
        got = generate(engine, messages, params).raw
    if got != ref:
        raise SystemExit(f"the two paths disagree, not comparable:\n raw:  {ref!r}\n aris: {got!r}")
    n_tokens = len(engine.tokenizer.encode(ref, add_special_tokens=False))

    def raw() -> None:
        raw_call(engine, prompt, image, args.max_new_tokens)

    def aris() -> None:
        generate(engine, messages, params)

    # Wall time is what a user waits; process CPU time (all threads) is the work each path does,
    # which other processes on a shared machine disturb far less.
    walls: dict[str, list[float]] = {"raw": [], "aris": []}
    cpus: dict[str, list[float]] = {"raw": [], "aris": []}
    for i in range(args.repeats):
        # The order flips every repeat, so whatever the previous call leaves behind (caches,
        # garbage, a busy neighbour) falls on both paths alike.
        for name, fn in (("aris", aris), ("raw", raw)) if i % 2 else (("raw", raw), ("aris", aris)):
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            walls[name].append(time.perf_counter() - w0)
            cpus[name].append(time.process_time() - c0)

    def paired(runs: dict[str, list[float]]) -> float:
        """Median of (Aris - raw) over neighbouring calls, relative to the raw median."""
        diffs = [a - r for a, r in zip(runs["aris"], runs["raw"], strict=True)]
        return statistics.median(diffs) / statistics.median(runs["raw"])

    print(
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, "
        f"{torch.get_num_threads()} torch threads on {os.cpu_count()} cores, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"
    )
    print(
        f"tiny Gemma 3 VLM, CPU, 1 image {args.image_size}x{args.image_size} + question, "
        f"{n_tokens} generated tokens, {args.repeats} repeats each (alternating order, {args.warmup} warm-up)"
    )
    labels = {"raw": "raw  processor + model.generate", "aris": "aris generate() full path      "}
    for name in ("raw", "aris"):
        w, c = walls[name], cpus[name]
        print(
            f"{labels[name]}: wall total {sum(w):7.3f} s  mean {statistics.mean(w) * 1000:7.1f} ms  "
            f"median {statistics.median(w) * 1000:7.1f} ms | CPU mean {statistics.mean(c) * 1000:7.1f} ms"
        )
    mean_ratio = statistics.mean(walls["aris"]) / statistics.mean(walls["raw"]) - 1
    mean_ms = (statistics.mean(walls["aris"]) - statistics.mean(walls["raw"])) * 1000
    wall_paired, cpu_paired = paired(walls), paired(cpus)
    print(
        f"overhead: wall mean {mean_ratio:+.1%} ({mean_ms:+.1f} ms/call), wall paired median "
        f"{wall_paired:+.1%}, CPU paired median {cpu_paired:+.1%}"
    )
    verdict = "PASS" if wall_paired <= GOAL else "FAIL"
    print(
        f"verdict: {verdict}: Aris adds {wall_paired:+.1%} wall time per call (paired median; CPU "
        f"{cpu_paired:+.1%}) over the bare transformers call (goal <= {GOAL:.0%})"
    )
    engine.close()


if __name__ == "__main__":
    main()
