"""Threads or processes for decoding and encoding slices, and which PNG level (issue 17).

On the 85 slices prep_ct.py would choose from its JPEG 2000 series (built there), measures:

- whether each JPEG 2000 decoder releases the GIL: a pure-Python counter runs in the main thread
  while a second thread decodes; its rate against the rate with no decoding running (1.0: the decoder
  never holds the GIL; about 0.5 or less: it holds it);
- the 85 decodes serially, on a thread pool and on a process pool (fork), for pydicom's OpenJPEG
  plugin and for imagecodecs, wall and CPU seconds;
- PNG encoding of the 85 windowed RGB slices: Pillow at zlib levels 0, 1, 3 and 6 (its adaptive row
  filter); libpng through imagecodecs at levels 1-2 with each single row filter and zlib strategy, on
  those slices and on real pixels from the test data (CT frames, MRI slices, a contact sheet), since
  the synthetic series compresses unlike real images; CPU seconds and bytes, then the chosen setting
  (``aris.inputs.png.write_png``) serially and on threads.

    python bench/decode_pool.py [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.encaps import get_frame
from pydicom.pixels.decoders.base import get_decoder

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import careful  # noqa: E402


def _pydicom(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    arr, _ = get_decoder(ds.file_meta.TransferSyntaxUID).as_array(ds)
    return arr


def _imagecodecs(path: Path) -> np.ndarray:
    import imagecodecs

    ds = pydicom.dcmread(path)
    return imagecodecs.jpeg2k_decode(get_frame(ds.PixelData, 0, number_of_frames=1))


def gil_share(work: Callable[[], Any]) -> float:
    """Main-thread counting rate while ``work`` runs in another thread, over the rate alone."""

    def rate(during: Callable[[], Any] | None) -> float:
        done = threading.Event()
        t = threading.Thread(target=lambda: (during() if during else time.sleep(0.5), done.set()))
        count, t0 = 0, time.perf_counter()
        t.start()
        while not done.is_set():
            count += 1
        t.join()
        return count / (time.perf_counter() - t0)

    return rate(work) / rate(None)


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--series", type=Path, default=None, help="a JPEG 2000 series (default: prep_ct.py's)")
    a = p.parse_args(argv)
    folder = a.series
    if folder is None:
        import prep_ct

        folder, _ = prep_ct.build(
            argparse.Namespace(slices=340, size=512, seed=0, modality="ct", enhanced=False, native=False)
        )
    files = careful.sorted_files(folder)
    chosen = [files[i] for i in careful.chosen(len(files))]
    print(
        f"{len(chosen)} JPEG 2000 slices from {folder.name}; {a.workers} workers; load {os.getloadavg()[0]:.1f}"
    )

    for name, dec in (("pydicom/OpenJPEG", _pydicom), ("imagecodecs", _imagecodecs)):
        share = gil_share(lambda dec=dec: [dec(f) for f in chosen[:20]])
        print(f"  {name:17} main thread keeps {share:.2f} of its speed while it decodes")
    for name, dec in (("pydicom/OpenJPEG", _pydicom), ("imagecodecs", _imagecodecs)):
        same = all(np.array_equal(_pydicom(f), dec(f)) for f in chosen[:10])
        for how, run in (
            ("serial", lambda dec=dec: [dec(f) for f in chosen]),
            ("threads", lambda dec=dec: list(ThreadPoolExecutor(a.workers).map(dec, chosen))),
            (
                "processes",
                lambda dec=dec: list(
                    ProcessPoolExecutor(a.workers, mp_context=mp.get_context("fork")).map(
                        dec, chosen, chunksize=4
                    )
                ),
            ),
        ):
            wall, cpu = timed(run)
            print(
                f"  decode {name:17} {how:9} wall {wall:6.2f} s  cpu (this process) {cpu:5.2f} s  same: {same}"
            )

    rgb = [careful.window(x.astype(np.float64) - 1024) for x in (_imagecodecs(f) for f in chosen)]
    from PIL import Image

    images = [Image.fromarray(x, "RGB") for x in rgb]

    def encode(level: int) -> int:
        total = 0
        for im in images:
            buf = io.BytesIO()
            im.save(buf, format="PNG", compress_level=level)
            total += buf.tell()
        return total

    for level in (0, 1, 3, 6):
        c0 = time.process_time()
        size = encode(level)
        print(f"  PNG level {level}: cpu {time.process_time() - c0:5.2f} s, {size / 2**20:6.1f} MiB")

    import imagecodecs

    from aris.inputs.png import PNG_FILTER, PNG_LEVEL, PNG_STRATEGY, write_png

    sets = {"bench CT (85)": [np.asarray(im) for im in images], **real_images(rgb)}
    for level in (1, 2):
        for filt in ("NONE", "SUB", "UP", "AVG", "PAETH"):
            for strategy in ("DEFAULT", "RLE", "HUFFMAN_ONLY"):
                cells = []
                for arrays in sets.values():
                    c0 = time.process_time()
                    size = sum(
                        len(
                            imagecodecs.png_encode(
                                x,
                                level=level,
                                filter=getattr(imagecodecs.PNG.FILTER, filt),
                                strategy=getattr(imagecodecs.PNG.STRATEGY, strategy),
                            )
                        )
                        for x in arrays
                    )
                    cells.append(f"{(time.process_time() - c0) * 1000:6.0f} ms {size / 2**20:6.2f} MiB")
                print(f"  libpng level {level} {filt:5} {strategy:12}: " + " | ".join(cells))
    print("  (columns: " + " | ".join(sets) + ")")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)

        def save(i: int) -> None:
            write_png(images[i], out / f"{i:04d}.png")

        for how, run in (
            ("serial", lambda: [save(i) for i in range(len(images))]),
            ("threads", lambda: list(ThreadPoolExecutor(a.workers).map(save, range(len(images))))),
        ):
            wall, cpu = timed(run)
            print(
                f"  chosen (libpng level {PNG_LEVEL}, {PNG_FILTER.name}, {PNG_STRATEGY.name}) {how:7} wall {wall:5.2f} s  cpu {cpu:5.2f} s"
            )
    return 0


def real_images(bench_rgb: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Real pixels from the repository's test data, beside the synthetic series: the two 512x512
    frames of an enhanced CT (windowed, ten times each), 20 slices of a T1 brain MRI, and the contact
    sheet of the bench series (large flat margins)."""
    from aris.inputs import read
    from aris.inputs.sheet import compose, thumbnail

    data = REPO / "tests" / "data"
    ct = read(data / "dicom" / "ct" / "eCT_Supplemental.dcm", kind="ct").arrays * 10
    mri = read(data / "nifti" / "mricron_ch2_colin27_t1.nii.gz", kind="mri").arrays[20:40]
    sheet = compose([thumbnail(x) for x in bench_rgb], [f"SLICE {i}" for i in range(1, len(bench_rgb) + 1)])
    return {"real CT (20)": ct, "real MRI (20)": mri, "sheet (1)": [sheet]}


if __name__ == "__main__":
    raise SystemExit(main())
