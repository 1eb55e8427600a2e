"""CT preparation: Aris's read_series against a plain reference of Google's notebook recipe, same run.

Builds a >= 300-slice CT series of 512x512 slices from real pixels (scripts/make_volumes.py: shuffled
file names, mixed RescaleSlope/Intercept per file) in a cache folder, then times:

- reference: every file read with its pixels (pydicom.dcmread), HU by apply_rescale for every slice,
  sort by the z of ImagePositionPatient, take the 85 indices round(i/85*(n-1)), window each slice
  with the notebook's norm() (clip, float32, -lo, /(hi-lo), *255, round, uint8);
- aris: aris.inputs.series.read_series (headers only first, pixels decoded for the 85 chosen slices,
  windowing by a per-rescale lookup table).

Prints both times (best and median of --repeat interleaved rounds), the ratio (goal >= 3x), peak traced memory of each, and checks
the 85 RGB arrays are identical, then a one-line verdict.

    python bench/prep_ct.py [--slices 300] [--size 512] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_rescale

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import make_volumes  # noqa: E402

from aris.inputs.series import read_series  # noqa: E402

MAX_SLICE = 85
WINDOWS = [(-1024, 1024), (-135, 215), (0, 80)]


def norm(ct_vol: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The notebook's norm(): clip, float32, shift, scale to 0..255."""
    ct_vol = np.clip(ct_vol, lo, hi)
    ct_vol = ct_vol.astype(np.float32)
    ct_vol -= lo
    ct_vol /= hi - lo
    ct_vol *= 255.0
    return ct_vol


def reference(folder: Path) -> list[np.ndarray]:
    """A straightforward per-file implementation of the recipe, as a notebook user would write it."""
    slices = []
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        hu = apply_rescale(ds.pixel_array, ds)
        slices.append((float(ds.ImagePositionPatient[2]), hu))
    slices.sort(key=lambda s: s[0])
    n = len(slices)
    if n > MAX_SLICE:
        slices = [slices[int(round(i / MAX_SLICE * (n - 1)))] for i in range(1, MAX_SLICE + 1)]  # noqa: RUF046
    out = []
    for _, hu in slices:
        windowed = np.stack([norm(hu, lo, hi) for lo, hi in WINDOWS], axis=-1)
        out.append(np.round(windowed, 0).astype(np.uint8))
    return out


def aris(folder: Path) -> list[np.ndarray]:
    prepared = read_series(folder)
    return [np.asarray(im) for im in prepared.images]


def build(slices: int, size: int, seed: int) -> Path:
    folder = REPO / ".cache" / "bench" / f"ct-{slices}x{size}-seed{seed}"
    if folder.is_dir() and sum(1 for _ in folder.iterdir()) == slices:
        return folder
    spec = make_volumes.SeriesSpec(n_slices=slices, size=size, seed=seed)
    t0 = time.perf_counter()
    make_volumes.make_series(folder, spec)
    print(f"built {slices} slices of {size}x{size} in {time.perf_counter() - t0:.1f} s -> {folder}")
    return folder


def timed(
    fns: dict[str, Callable[[Path], list[np.ndarray]]], folder: Path, repeat: int
) -> tuple[dict[str, list[float]], dict[str, list[np.ndarray]]]:
    """Run the contenders in turn, ``repeat`` rounds, so load on a shared machine hits both alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    outs: dict[str, list[np.ndarray]] = {}
    for _ in range(repeat):
        for name, fn in fns.items():
            gc.collect()
            t0 = time.perf_counter()
            outs[name] = fn(folder)
            times[name].append(time.perf_counter() - t0)
    return times, outs


def peak_mb(fn: Callable[[Path], list[np.ndarray]], folder: Path) -> float:
    gc.collect()
    tracemalloc.start()
    result = fn(folder)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak / 2**20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slices", type=int, default=300)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.slices < MAX_SLICE + 1:
        p.error("use more than 85 slices, or there is nothing to sample")

    folder = build(a.slices, a.size, a.seed)
    reference(folder)  # warm the page cache for both
    times, outs = timed({"reference": reference, "aris": aris}, folder, a.repeat)
    ref_out, aris_out = outs["reference"], outs["aris"]
    t_ref, t_aris = min(times["reference"]), min(times["aris"])
    med_ref, med_aris = statistics.median(times["reference"]), statistics.median(times["aris"])
    m_ref, m_aris = peak_mb(reference, folder), peak_mb(aris, folder)

    same = len(ref_out) == len(aris_out) == MAX_SLICE and all(
        r.shape == s.shape and np.array_equal(r, s) for r, s in zip(ref_out, aris_out, strict=True)
    )
    ratio = t_ref / t_aris
    print(f"series: {a.slices} slices of {a.size}x{a.size}, mixed rescale, shuffled names")
    print(
        f"reference (read all with pixels, rescale all, window 85): best {t_ref:.3f} s, "
        f"median {med_ref:.3f} s, peak {m_ref:.0f} MiB"
    )
    print(
        f"aris read_series (headers, decode 85, LUT windowing):     best {t_aris:.3f} s, "
        f"median {med_aris:.3f} s, peak {m_aris:.0f} MiB"
    )
    print(
        f"speed-up: {ratio:.2f}x best-to-best, {med_ref / med_aris:.2f}x median-to-median (goal >= 3x); "
        f"memory: {m_ref / max(m_aris, 1e-9):.1f}x less"
    )
    n_equal = sum(np.array_equal(r, s) for r, s in zip(ref_out, aris_out, strict=False))
    print(f"outputs identical: {same} ({n_equal}/{len(ref_out)} RGB slices equal)")
    ok = same and ratio >= 3
    print(
        f"VERDICT: {'PASS' if ok else 'FAIL'}: aris {ratio:.1f}x faster than the reference, "
        f"{'identical' if same else 'DIFFERENT'} output"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
