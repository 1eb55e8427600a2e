"""CT/MRI preparation against two references, whole processes, same run (issue 17).

Builds a series with real pixels (scripts/make_volumes.py: shuffled file names, mixed rescale per
file; by default 340 slices of 512x512 in JPEG 2000 lossless) in .cache/bench, then times, as whole
processes (interpreter start and imports included), interleaved, median of --repeat rounds; each
process's CPU seconds are printed too, since wall-clock ratios mean little on a loaded machine:

- careful: bench/careful.py, the single-threaded script a careful user writes (every header read
  without pixels, sorted along the normal, only the 85 chosen slices decoded and windowed);
- naive: every file read with its pixels, HU for every slice, sort by z, window the 85 (the old
  reference of this bench; CT only);
- read: ``aris.inputs.read(series, kind=...)``;
- prepare: ``aris prepare series --kind ... --out DIR`` (read, 85 PNGs, contact sheet, manifest).

Goals: read <= 0.6x careful, prepare <= 0.9x careful, peak memory (each process's max RSS) no higher
than careful's, and outputs bit-identical (the RGB arrays of read and careful, and every PNG prepare
wrote, compared pixel for pixel). ``--modality mri`` and ``--enhanced`` run the same for MRI and for
one enhanced multi-frame object (bench/prep_mri.py and bench/prep_enhanced.py call this).

    python bench/prep_ct.py [--slices 340] [--size 512] [--native] [--modality ct|mri] [--enhanced]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "bench"))

import careful  # noqa: E402
import make_volumes  # noqa: E402

NAIVE = """
import sys
from pathlib import Path
import numpy as np, pydicom
from pydicom.pixels import apply_rescale
sys.path.insert(0, {bench!r})
from careful import window, chosen
slices = []
for f in sorted(Path(sys.argv[1]).iterdir()):
    ds = pydicom.dcmread(f)
    slices.append((float(ds.ImagePositionPatient[2]), apply_rescale(ds.pixel_array, ds)))
slices.sort(key=lambda s: s[0])
out = [window(slices[i][1]) for i in chosen(len(slices))]
"""
READ = "import sys; from aris.inputs import read; read(sys.argv[1], kind=sys.argv[2])"


def build(a: argparse.Namespace) -> tuple[Path, Path]:
    """(folder, what to read): the cached series folder, and the folder or the enhanced file in it."""
    tag = "enh" if a.enhanced else "ser"
    comp = "native" if a.native else "j2k"
    folder = REPO / ".cache" / "bench" / f"{a.modality}-{tag}-{a.slices}x{a.size}-{comp}-seed{a.seed}"
    spec = make_volumes.SeriesSpec(
        n_slices=a.slices,
        size=a.size,
        seed=a.seed,
        modality="MR" if a.modality == "mri" else "CT",
        compression=None if a.native else "j2k",
    )
    ready = folder.parent / (folder.name + ".complete")
    if not ready.is_file():
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        (make_volumes.make_enhanced if a.enhanced else make_volumes.make_series)(folder, spec)
        ready.write_text("ok\n")
        print(f"built {a.slices} slices of {a.size}x{a.size} in {time.perf_counter() - t0:.1f} s -> {folder}")
    target = next(folder.glob("ENHANCED_*")) if a.enhanced else folder
    return folder, target


# Each command runs under a small fresh interpreter that waits for it: a child's peak RSS counts the
# memory of the process it was forked from, and this bench's own process is large after a build.
MEASURE = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "rss": usage.ru_maxrss / 1024, "cpu": usage.ru_utime + usage.ru_stime,
                  "rc": os.waitstatus_to_exitcode(status)}))
"""


def run_process(argv: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds (user + system) of one child process."""
    done = subprocess.run([sys.executable, "-c", MEASURE, *argv], env=env, capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"{argv[:3]} could not be measured:\n{done.stderr[-2000:]}")
    m = json.loads(done.stdout.strip().splitlines()[-1])
    if m["rc"] != 0:
        raise SystemExit(f"{argv[:3]} failed ({m['rc']}):\n{done.stderr[-2000:]}")
    return m["wall"], m["rss"], m["cpu"]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b, strict=True)
    )


def main(argv: list[str] | None = None, **defaults: object) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slices", type=int, default=340)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--native", action="store_true", help="uncompressed pixel data instead of JPEG 2000")
    p.add_argument("--modality", choices=("ct", "mri"), default="ct")
    p.add_argument("--enhanced", action="store_true", help="one enhanced multi-frame object")
    p.set_defaults(**defaults)
    a = p.parse_args(argv)
    if a.slices < careful.MAX_SLICE + 1:
        p.error("use more than 85 slices, or there is nothing to sample")

    from aris.inputs import read  # in-process only for the equality check, after the timings' imports

    _, target = build(a)
    mode = ("enhanced-" if a.enhanced else "") + a.modality
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    py = sys.executable
    out = Path(tempfile.mkdtemp(prefix="aris-prep-bench-"))
    contenders = {
        "careful": [py, str(REPO / "bench" / "careful.py"), mode, str(target)],
        "read": [py, "-c", READ, str(target), a.modality],
        "prepare": [
            py,
            "-m",
            "aris.cli",
            "prepare",
            str(target),
            "--kind",
            a.modality,
            "--out",
            str(out),
            "--force",
        ],
    }
    if mode == "ct":
        contenders["naive"] = [py, "-c", NAIVE.format(bench=str(REPO / "bench")), str(target)]
    run_process(contenders["careful"], env)  # warm the page cache
    times: dict[str, list[float]] = {k: [] for k in contenders}
    cpu: dict[str, list[float]] = {k: [] for k in contenders}
    peaks: dict[str, float] = dict.fromkeys(contenders, 0.0)
    load = os.getloadavg()[0]
    for _ in range(a.repeat):
        for name, cmd in contenders.items():
            wall, rss, used = run_process(cmd, env)
            times[name].append(wall)
            cpu[name].append(used)
            peaks[name] = max(peaks[name], rss)

    ref = careful.run(mode, target)
    prepared = read(target, kind=a.modality)
    got = [np.asarray(im) for im in prepared.images]
    pngs = sorted(out.glob("[0-9][0-9][0-9][0-9].png"))
    from PIL import Image

    written = [np.asarray(Image.open(f).convert("RGB")) for f in pngs]
    shutil.rmtree(out, ignore_errors=True)
    identical = same(ref, got) and same(ref, written)

    med = {k: statistics.median(v) for k, v in times.items()}
    what = f"{'enhanced multi-frame ' if a.enhanced else ''}{a.modality.upper()}"
    comp = "native" if a.native else "JPEG 2000 lossless"
    print(
        f"{what}: {a.slices} slices of {a.size}x{a.size}, {comp}; {os.cpu_count()} CPUs, "
        f"load average {load:.1f} at the start; median of {a.repeat}"
    )
    for name in contenders:
        print(
            f"  {name:8} wall {med[name]:7.3f} s ({', '.join(f'{t:.2f}' for t in times[name])})  "
            f"cpu {statistics.median(cpu[name]):6.2f} s  peak RSS {peaks[name]:5.0f} MiB  "
            f"{med[name] / med['careful']:.2f}x careful"
        )
    r_read, r_prep = med["read"] / med["careful"], med["prepare"] / med["careful"]
    mem_ok = peaks["read"] <= peaks["careful"] and peaks["prepare"] <= peaks["careful"]
    line = f"read {r_read:.2f}x careful (goal <= 0.6), prepare {r_prep:.2f}x careful (goal <= 0.9)"
    if "naive" in med:
        line += f"; careful is {med['naive'] / med['careful']:.2f}x faster than naive, read {med['naive'] / med['read']:.2f}x"
    print(line)
    print(
        f"outputs identical: {identical} ({len(got)} read, {len(written)} PNGs vs {len(ref)} careful); memory ok: {mem_ok}"
        f" (peak vs careful: read {peaks['read'] / peaks['careful'] - 1:+.1%},"
        f" prepare {peaks['prepare'] / peaks['careful'] - 1:+.1%})"
    )
    ok = identical and r_read <= 0.6 and r_prep <= 0.9 and mem_ok
    print(f"VERDICT: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
