"""Whole-slide preparation: Aris's read_wsi against a straightforward reference, same slide, same run.

The slide is synthetic but made of real pixels: the CMU H&E region (tests/data wsi/cmu_small_region.svs)
tiled into a 24576 x 24576 px, 7-level (2x steps) JPEG pyramidal TIFF at 0.499 um/px, with about one
block in five left as glass, cached under .cache/bench/. Writing it once takes a minute or two.

- aris: ``read_wsi(path, magnification=M)``: tissue mask from the lowest level, then only the <= 126
  chosen tiles are read.
- reference: the loop one writes first: every 896 px cell of the grid at the level Aris chose, read with
  ``read_region`` and kept (in memory) when its mean is < 240; then 126 of them sampled at random and
  kept in spatial order, like Aris, so both end with a model-ready list of tiles.

Each method runs in its own fresh process (imports done before the clock starts), so its time and
peak resident memory (VmHWM, reset after the imports; also shown above the resident size at the
start) are its own.

What is compared, because the two pick tiles differently:
1. the tissue decision on the same grid cells: Aris's mask candidates (>= 25% of a cell covered by
   the saturation mask) vs the reference's ``mean < 240`` (which keeps cells with ~5% tissue);
   reported as both / aris-only / reference-only and the Jaccard index;
2. the tiles Aris returned: each must be a reference tissue tile, with byte-identical pixels
   (MD5 of the 896x896x3 array from each process).

    python bench/prep_wsi.py [--size 24576] [--magnification 10X 20X]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SVS = REPO.parent / "shared" / "data" / "wsi" / "cmu_small_region.svs"
CACHE = REPO / ".cache" / "bench"
MPP = 0.499
BLOCK_W, BLOCK_H = 2048, 2944  # the SVS region cropped to multiples of 64, so every level aligns
LEVELS = 7
TILE = 896
REF_MEAN = 240
MAX_TILES = 126


# --- the synthetic slide -------------------------------------------------------------------------


def _glass(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """About one block in five is empty glass (block row i, column j)."""
    return (i * 7 + j * 3) % 5 == 0


def build_slide(size: int) -> Path:
    import tifffile
    from PIL import Image

    path = CACHE / f"wsi_synth_{size}.tiff"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    src0 = tifffile.imread(SVS)[:BLOCK_H, :BLOCK_W]
    srcs = [src0]
    for _ in range(LEVELS - 1):
        srcs.append(np.asarray(Image.fromarray(srcs[-1]).reduce(2)))
    rng = np.random.default_rng(0)
    glass_tile = np.clip(243 + rng.normal(0, 1.5, (256, 256, 3)), 0, 255).astype(np.uint8)

    def tiles(k: int):  # type: ignore[no-untyped-def]
        src = srcs[k]
        bh, bw = src.shape[:2]
        h = w = size >> k
        for ty in range(0, h, 256):
            ys = np.minimum(np.arange(ty, ty + 256), h - 1)
            for tx in range(0, w, 256):
                xs = np.minimum(np.arange(tx, tx + 256), w - 1)
                tile = src[(ys % bh)[:, None], (xs % bw)[None, :]]
                glass = _glass((ys // bh)[:, None], (xs // bw)[None, :])
                if glass.any():
                    tile = np.where(glass[..., None], glass_tile, tile)
                yield tile

    tmp = path.with_suffix(".part")
    opts: dict[str, Any] = {
        "tile": (256, 256),
        "photometric": "rgb",
        "compression": "jpeg",
        "compressionargs": {"level": 85},
        "resolutionunit": "CENTIMETER",
        "dtype": np.uint8,
        "metadata": None,
        "maxworkers": 2,
    }
    t0 = time.perf_counter()
    with tifffile.TiffWriter(tmp, bigtiff=True) as tw:
        for k in range(LEVELS):
            n = size >> k
            res = 1e4 / MPP / 2**k
            extra = {"subifds": LEVELS - 1} if k == 0 else {"subfiletype": 1}
            tw.write(tiles(k), shape=(n, n, 3), resolution=(res, res), **extra, **opts)
    tmp.rename(path)
    print(
        f"built {path.name}: {size}x{size}, {LEVELS} levels, {path.stat().st_size / 1e6:.0f} MB "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    return path


# --- the two methods, each run in a child process ------------------------------------------------


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def _reset_peak() -> float:
    """Reset the peak-RSS mark to the current RSS (Linux clear_refs 5) and return that baseline, MB.

    ru_maxrss would not do: it survives exec, so a child started by a big parent inherits its peak.
    """
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    return _status_mb("VmHWM")


def _md5(arr: np.ndarray) -> str:
    return hashlib.md5(np.ascontiguousarray(arr).tobytes()).hexdigest()


def run_aris(path: Path, magnification: str) -> dict[str, Any]:
    from aris.inputs import wsi

    base = _reset_peak()
    t0 = time.perf_counter()
    p = wsi.read_wsi(path, magnification=magnification)
    seconds = time.perf_counter() - t0
    peak = _peak_mb()
    d = p.provenance.details
    chosen = [[t["col"], t["row"]] for t in d["tiles"]]
    hashes = [_md5(np.asarray(img)) for img in p.images]
    # untimed: the full candidate list, for comparing tissue decisions cell by cell
    slide = wsi.open_slide(path)
    choice, _ = wsi.choose_level(slide, magnification)
    mask = wsi.build_mask(slide, choice.region * choice.level_downsample)
    cands, grid = wsi.grid_tiles(slide, choice, mask)
    slide.close()
    return {
        "seconds": seconds,
        "peak_mb": peak,
        "base_mb": base,
        "level": d["level"],
        "grid": list(grid),
        "candidates": [[t.col, t.row] for t in cands],
        "chosen": chosen,
        "hashes": hashes,
    }


def run_reference(path: Path, level: int) -> dict[str, Any]:
    import tiffslide

    base = _reset_peak()
    t0 = time.perf_counter()
    slide = tiffslide.TiffSlide(path)
    w, h = slide.level_dimensions[level]
    ds = slide.level_downsamples[level]
    kept: list[tuple[int, int, np.ndarray]] = []
    for row in range(h // TILE):
        for col in range(w // TILE):
            # level-0 location that lands exactly on level pixel (col*896, row*896)
            loc = (int(np.ceil(col * TILE * ds - 1e-6)), int(np.ceil(row * TILE * ds - 1e-6)))
            arr = np.asarray(slide.read_region(loc, level, (TILE, TILE), as_array=True))[..., :3]
            if arr.mean() < REF_MEAN:
                kept.append((col, row, arr))
    slide.close()
    # then the same cap as Aris: 126 at random without replacement, kept in spatial order
    if len(kept) > MAX_TILES:
        pick = np.sort(np.random.default_rng(0).choice(len(kept), MAX_TILES, replace=False))
        chosen = [kept[i] for i in pick]
    else:
        chosen = kept
    seconds = time.perf_counter() - t0
    peak = _peak_mb()
    return {
        "seconds": seconds,
        "peak_mb": peak,
        "base_mb": base,
        "kept": [[c, r] for c, r, _ in kept],
        "chosen": [[c, r] for c, r, _ in chosen],
        "hashes": {f"{c},{r}": _md5(a) for c, r, a in kept},
        "grid": [w // TILE, h // TILE],
    }


def child(method: str, path: Path, arg: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, str(path), arg],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{method} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- main ----------------------------------------------------------------------------------------


def compare(path: Path, magnification: str) -> str:
    aris = child("aris", path, magnification)
    ref = child("reference", path, str(aris["level"]))
    a_set = {tuple(c) for c in aris["candidates"]}
    r_set = {tuple(c) for c in ref["kept"]}
    both, a_only, r_only = len(a_set & r_set), len(a_set - r_set), len(r_set - a_set)
    jaccard = both / len(a_set | r_set) if a_set | r_set else 1.0
    chosen_in_ref = sum(tuple(c) in r_set for c in aris["chosen"])
    same_pixels = sum(
        ref["hashes"].get(f"{c},{r}") == h for (c, r), h in zip(aris["chosen"], aris["hashes"], strict=True)
    )
    n = len(aris["chosen"])
    speed = ref["seconds"] / aris["seconds"]
    mem = (ref["peak_mb"] - ref["base_mb"]) / max(1.0, aris["peak_mb"] - aris["base_mb"])
    print(
        f"\n[{magnification}] level {aris['level']}, grid {aris['grid'][0]}x{aris['grid'][1]} = "
        f"{aris['grid'][0] * aris['grid'][1]} cells"
    )
    print(
        f"  aris      : {aris['seconds']:7.2f} s  peak {aris['peak_mb']:7.0f} MB "
        f"(+{aris['peak_mb'] - aris['base_mb']:.0f} over the start)  {n} tiles from {len(a_set)} candidates"
    )
    print(
        f"  reference : {ref['seconds']:7.2f} s  peak {ref['peak_mb']:7.0f} MB "
        f"(+{ref['peak_mb'] - ref['base_mb']:.0f} over the start)  {len(r_set)} tiles kept (mean < {REF_MEAN}), "
        f"{ref['grid'][0] * ref['grid'][1]} read"
    )
    print(f"  ratio     : aris {speed:.1f}x faster, {mem:.1f}x less memory above the start")
    print(
        f"  tissue    : both {both}, aris-only {a_only}, reference-only {r_only} (Jaccard {jaccard:.2f}; "
        "the reference also keeps cells with a few % tissue)"
    )
    print(
        f"  tiles     : {chosen_in_ref}/{n} of Aris's tiles are reference tissue tiles; "
        f"{same_pixels}/{n} byte-identical to the reference's read of the same cell"
    )
    ok = chosen_in_ref == n and same_pixels == n
    return (
        f"{magnification}: aris {speed:.1f}x faster ({aris['seconds']:.2f} s vs {ref['seconds']:.2f} s), "
        f"{mem:.1f}x less memory; {same_pixels}/{n} tiles identical to the reference, tissue Jaccard "
        f"{jaccard:.2f}" + ("" if ok else " [MISMATCH]")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=24576, help="slide side in level-0 pixels")
    ap.add_argument("--magnification", nargs="+", default=["10X", "20X"])
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        method, path, arg = args.child
        # every import before the clock, in both children (skimage is what Aris's mask step loads)
        import skimage.filters
        import skimage.morphology  # noqa: F401
        import tiffslide  # noqa: F401

        import aris.inputs.wsi  # noqa: F401

        result = run_aris(Path(path), arg) if method == "aris" else run_reference(Path(path), int(arg))
        print(json.dumps(result))
        return
    path = build_slide(args.size)
    verdicts = [compare(path, m) for m in args.magnification]
    print("\nVERDICT: " + " | ".join(verdicts))


if __name__ == "__main__":
    main()
