"""MedSigLIP image embedding throughput on CPU at full size (random weights, 448 px), batch 1 to 16.

The model is ``google/medsiglip-448``'s architecture written by hand (:func:`aris.embed.tiny.medsiglip_config`:
SigLIP so400m towers, 27 layers, hidden 1152, 16 heads, 448 px / 14 px patches), randomly initialised:
the speed and memory of the real model, none of its knowledge. Two paths are timed on the same model:

* ``aris``: :meth:`TransformersEmbedder.embed_images` (Google's recipe in NumPy: pad square, bilinear
  without antialias, [-1, 1]; then ``get_image_features`` and L2 normalisation),
* ``reference``: what a careful user following the Hugging Face docs writes: ``SiglipImageProcessor``
  (448 px, mean = std = 0.5) then ``model.get_image_features(...).pooler_output``.

Prints images/s per batch size for both and the ratio aris/reference, with the load average (these
machines have 2 cores and are shared, so absolute numbers move with other work).

    python bench/embed_throughput.py [--batches 1,2,4,8,16] [--repeats 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from PIL import Image

from aris.embed.local import TransformersEmbedder
from aris.embed.tiny import medsiglip_config


def images(n: int, seed: int = 0) -> list[Image.Image]:
    """Chest-X-ray-sized greyscale-ish images (portrait, 2048x2500), as the readers hand them over."""
    rng = np.random.default_rng(seed)
    base = (rng.random((250, 205)) * 255).astype(np.uint8)
    out = []
    for i in range(n):
        im = Image.fromarray(np.roll(base, i * 7, axis=0)).resize((2048, 2500), Image.Resampling.BILINEAR)
        out.append(im.convert("RGB"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", default="1,2,4,8,16")
    ap.add_argument(
        "--reference-batches", default=None, help="batch sizes to time the reference at (default: all)"
    )
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per batch size (after one warm-up)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    ref_batches = (
        {int(b) for b in args.reference_batches.split(",")} if args.reference_batches else set(batches)
    )

    from transformers import SiglipImageProcessor, SiglipModel

    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = SiglipModel(medsiglip_config()).eval()
    n_params = sum(p.numel() for p in model.vision_model.parameters())
    print(
        f"built the full-size MedSigLIP architecture in {time.perf_counter() - t0:.0f}s: "
        f"vision tower {n_params / 1e6:.0f}M params, fp32, {args.threads} threads"
    )
    embedder = TransformersEmbedder.from_loaded(
        model, model_id="random-medsiglip-448", batch_size=max(batches)
    )
    processor = SiglipImageProcessor(
        size={"height": 448, "width": 448}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )

    def aris_path(batch: list[Image.Image]) -> np.ndarray:
        embedder.batch_size = len(batch)
        return embedder.embed_images(batch)

    def reference(batch: list[Image.Image]) -> np.ndarray:
        with torch.inference_mode():
            px = processor(images=batch, return_tensors="pt")["pixel_values"]
            out = model.get_image_features(pixel_values=px).pooler_output
        return torch.nn.functional.normalize(out, dim=-1).numpy()

    aris_path(images(1))  # warm-up (allocator, kernels)
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print(f"{'batch':>5}  {'aris img/s':>10}  {'ref img/s':>9}  {'ratio':>5}  {'aris s/img':>10}")
    for b in batches:
        batch = images(b, seed=b)
        # aris and reference alternate within each repeat, so the load of a shared machine falls on both.
        best: dict[str, float] = {}
        for _ in range(args.repeats):
            for name, fn in (("aris", aris_path), ("reference", reference)):
                if name == "reference" and b not in ref_batches:
                    continue
                t = time.perf_counter()
                fn(batch)
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - t)
        rates = {name: b / seconds for name, seconds in best.items()}
        ref = (
            f"{rates['reference']:>9.3f}  {rates['aris'] / rates['reference']:>5.2f}"
            if "reference" in rates
            else f"{'-':>9}  {'-':>5}"
        )
        print(f"{b:>5}  {rates['aris']:>10.3f}  {ref}  {1 / rates['aris']:>10.2f}", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
