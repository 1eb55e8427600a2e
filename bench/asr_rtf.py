"""MedASR's real-time factor on CPU: the full-size architecture with random weights, 1 and 2 threads.

The model is transformers' ``LasrCTCConfig()`` as it stands (Conformer encoder, 17 layers, hidden 512,
8 heads, FFN 2048, conv kernel 32, 128 mel bins, vocabulary 512: 105.3M parameters, the size the
MedASR model card states), saved to a temporary folder with a 512-piece vocabulary and loaded the way
``google/medasr`` is (``aris.speech.model.MedAsrTranscriber``). Random weights cost what MedASR's do:
CTC decoding is greedy and the forward pass does not depend on the audio's content. The recording is 60 s
of noise at 16 kHz (``--seconds``).

Each configuration runs in its own process (its own thread count and peak memory):

- ``aris``: ``MedAsrTranscriber.transcribe`` (20 s windows, 2 s context each side, merge at words),
- ``hf-pipeline``: the reference a careful user would write from Google's notebook,
  ``pipeline("automatic-speech-recognition", model=..., chunk_length_s=20, stride_length_s=2)``.

Prints, per configuration: RTF = processing seconds / audio seconds (lower is better; 0.1 = ten times
faster than real time), load time, peak resident memory, and aris/pipeline ratios.

    python bench/asr_rtf.py [--seconds 60] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build(folder: Path) -> int:
    """The full-size model with random weights, saved like a MedASR checkpoint; returns its parameters."""
    import torch
    from transformers import LasrCTCConfig, LasrFeatureExtractor, LasrForCTC, LasrProcessor, LasrTokenizer

    config = LasrCTCConfig()
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    letters = "abcdefghijklmnopqrstuvwxyz"
    pieces += [(f"▁{a}{b}", -5.0) for a in letters for b in letters][: config.vocab_size - len(pieces)]
    tokenizer = LasrTokenizer(vocab=pieces, extra_ids=0)
    torch.manual_seed(0)
    model = LasrForCTC(config).eval()
    model.save_pretrained(folder)
    LasrProcessor(LasrFeatureExtractor(), tokenizer).save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def child(kind: str, folder: str, threads: int, seconds: float) -> None:
    """One measurement, in its own process: prints a JSON line."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(int(seconds * 16000)) * 0.05).astype(np.float32)
    warm = audio[: 5 * 16000]
    t0 = time.perf_counter()
    if kind == "aris":
        from aris.speech.model import MedAsrTranscriber

        t = MedAsrTranscriber(folder, device="cpu")
        load_s = time.perf_counter() - t0
        t.transcribe(warm)
        t1 = time.perf_counter()
        out = t.transcribe(audio)
        run_s = time.perf_counter() - t1
        windows = len(out.chunks)
    else:
        from transformers import pipeline

        pipe = pipeline("automatic-speech-recognition", model=folder, device="cpu")
        load_s = time.perf_counter() - t0
        pipe(warm, chunk_length_s=20, stride_length_s=2)
        t1 = time.perf_counter()
        pipe(audio, chunk_length_s=20, stride_length_s=2)
        run_s = time.perf_counter() - t1
        windows = -1
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "kind": kind,
                "threads": threads,
                "load_s": load_s,
                "run_s": run_s,
                "rtf": run_s / seconds,
                "peak_mb": peak_mb,
                "windows": windows,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--child", nargs=3, metavar=("KIND", "FOLDER", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.seconds)
        return
    with tempfile.TemporaryDirectory(prefix="aris-asr-bench-") as tmp:
        folder = Path(tmp) / "medasr-random"
        t0 = time.perf_counter()
        n = build(folder)
        print(
            f"model: LasrForCTC, {n / 1e6:.1f}M parameters (random), built in {time.perf_counter() - t0:.0f}s"
        )
        print(
            f"audio: {args.seconds:.0f} s at 16 kHz; cpu cores {os.cpu_count()}; load avg {os.getloadavg()[0]:.1f}"
        )
        results: dict[tuple[str, int], dict[str, float]] = {}
        for threads in args.threads:
            for kind in ("aris", "hf-pipeline"):
                cmd = [
                    sys.executable,
                    __file__,
                    "--seconds",
                    str(args.seconds),
                    "--child",
                    kind,
                    str(folder),
                    str(threads),
                ]
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                line = next((x for x in out.stdout.splitlines() if x.startswith("{")), None)
                if line is None:
                    print(f"{kind} x{threads}: failed\n{out.stderr[-2000:]}")
                    continue
                r = json.loads(line)
                results[(kind, threads)] = r
                print(
                    f"{kind:12s} threads={threads}  RTF {r['rtf']:.3f}  ({r['run_s']:.1f} s for {args.seconds:.0f} s)  "
                    f"load {r['load_s']:.1f} s  peak RSS {r['peak_mb']:.0f} MB"
                )
        for threads in args.threads:
            a, p = results.get(("aris", threads)), results.get(("hf-pipeline", threads))
            if a and p:
                print(f"threads={threads}: aris/pipeline time ratio {a['run_s'] / p['run_s']:.2f}")
        if ("aris", 1) in results and ("aris", 2) in results:
            print(
                f"aris 1->2 threads speed-up {results[('aris', 1)]['run_s'] / results[('aris', 2)]['run_s']:.2f}x"
            )
        print(f"load avg after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
