"""Image-search backends at archive scale: search latency p50/p99 and recall@10 against exact search.

Each backend is the class Aris's index uses (:mod:`aris.embed.index`), filled through its ``add`` in
batches of 10,000, with 1152-d unit vectors (MedSigLIP's size). The vectors are clustered like real
embeddings (2,000 centres, each vector a centre plus noise, normalised), generated chunk by chunk
from fixed seeds so the exact answer is computed in NumPy without a second copy in memory. Queries are
fresh draws from the same distribution, timed round-robin across the backends (so the load of a shared
machine falls on all alike), and the p50 ratio to faiss is printed. Recall@10 = the share of the exact top 10 (NumPy brute force,
float32) that the backend returns.

* ``faiss``: exact inner product in memory (``IndexIDMap2(IndexFlatIP)``), vectors durable in SQLite;
* ``sqlite-vec``: ``vec0`` table, exact cosine KNN inside SQLite;
* ``qdrant``: the official client in local mode (files, brute force in NumPy; a Qdrant server's HNSW
  index is not measured here: no server runs on these machines). Skipped above ``--qdrant-max``.

    python bench/embed_index.py [--sizes 100000,1000000] [--queries 100] [--backends faiss,sqlite-vec,qdrant]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from aris.embed.index.base import open_backend

DIM = 1152
CHUNK = 10_000
N_CENTRES = 2_000


def _centres(seed: int = 0) -> np.ndarray:
    c = np.random.default_rng(seed).standard_normal((N_CENTRES, DIM)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def _draw(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    x = (
        centres[rng.integers(0, N_CENTRES, n)]
        + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM) * 8
    )
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def chunks(n: int, centres: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        yield (
            np.arange(start + 1, start + m + 1, dtype=np.int64),
            _draw(np.random.default_rng(1000 + start // CHUNK), centres, m),
        )


def exact_top10(n: int, centres: np.ndarray, queries: np.ndarray) -> np.ndarray:
    best_s = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 10), dtype=np.int64)
    for ids, x in chunks(n, centres):
        s = queries @ x.T
        all_s = np.concatenate([best_s, s], axis=1)
        all_i = np.concatenate([best_i, np.broadcast_to(ids, s.shape)], axis=1)
        top = np.argpartition(-all_s, 10, axis=1)[:, :10]
        best_s = np.take_along_axis(all_s, top, axis=1)
        best_i = np.take_along_axis(all_i, top, axis=1)
    return best_i


def run(
    backends: list[str], n: int, centres: np.ndarray, queries: np.ndarray, truth: np.ndarray, root: Path
) -> None:
    """Fill every backend, then time the queries round-robin (query 1 on each, query 2 on each, ...), so
    a change in the machine's load falls on all backends alike."""
    opened = {}
    build = {}
    for backend in backends:
        folder = root / f"{backend}-{n}"
        folder.mkdir()
        be = open_backend(backend, folder, DIM, index_name="bench")
        t0 = time.perf_counter()
        for ids, x in chunks(n, centres):
            be.add(ids, x)
        build[backend] = time.perf_counter() - t0
        be.search(queries[0], 10)  # warm-up
        opened[backend] = (be, folder)
        print(
            f"{backend:>10}  {n:>9,}  filled in {build[backend]:.1f}s (load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    lat: dict[str, list[float]] = {b: [] for b in backends}
    recall: dict[str, list[float]] = {b: [] for b in backends}
    for q, t in zip(queries, truth, strict=True):
        for backend in backends:
            be = opened[backend][0]
            t1 = time.perf_counter()
            hits = be.search(q, 10)
            lat[backend].append(time.perf_counter() - t1)
            recall[backend].append(len({h for h, _ in hits} & set(t.tolist())) / 10)
    p50s = {}
    for backend in backends:
        be, folder = opened[backend]
        extra = ""
        if backend == "faiss":
            be.close()
            t2 = time.perf_counter()
            be = open_backend(backend, folder, DIM, index_name="bench")
            extra = f"  reopen {time.perf_counter() - t2:.1f}s"
        be.close()
        disk = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**30
        p50, p99 = np.percentile(np.array(lat[backend]) * 1000, [50, 99])
        p50s[backend] = p50
        print(
            f"{backend:>10}  {n:>9,}  p50 {p50:9.1f} ms  p99 {p99:9.1f} ms  recall@10 {np.mean(recall[backend]):.3f}"
            f"  build {build[backend]:7.1f}s  disk {disk:5.2f} GiB{extra}",
            flush=True,
        )
        shutil.rmtree(folder, ignore_errors=True)
    if "faiss" in p50s:
        ratios = ", ".join(f"{b} {p50s[b] / p50s['faiss']:.2f}x" for b in backends if b != "faiss")
        print(f"{'':>10}  p50 relative to faiss: {ratios}  (load {os.getloadavg()[0]:.1f})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--backends", default="faiss,sqlite-vec,qdrant")
    ap.add_argument(
        "--qdrant-max", type=int, default=100_000, help="largest size to try Qdrant's local mode at"
    )
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    centres = _centres()
    queries = _draw(np.random.default_rng(7), centres, args.queries)
    root = Path(tempfile.mkdtemp(prefix="aris-bench-index-", dir=args.dir))
    print(f"{DIM}-d clustered unit vectors, {args.queries} queries, k=10; {os.cpu_count()} cores")
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            t = time.perf_counter()
            truth = exact_top10(n, centres, queries)
            print(f"exact top-10 for {n:,} vectors in NumPy: {time.perf_counter() - t:.1f}s", flush=True)
            backends = []
            for backend in args.backends.split(","):
                if backend == "qdrant" and n > args.qdrant_max:
                    print(
                        f"{backend:>10}  {n:>9,}  skipped (local mode above --qdrant-max; use a Qdrant server)"
                    )
                else:
                    backends.append(backend)
            run(backends, n, centres, queries, truth, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
