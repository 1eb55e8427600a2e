"""Decode and encode on every core, in threads.

The decoders Aris uses for volumes release the GIL while they work (OpenJPEG, libjpeg, CharLS and
RLE through pylibjpeg/pyjpegls; numpy's file reads and table lookups; libpng through imagecodecs),
so threads scale with cores without copying pixels between processes. Measured on the 340-slice
512x512 JPEG 2000 series (bench/prep_ct.py): threads beat a process pool, which pays for pickling
every decoded slice back and for starting its workers.

``ARIS_THREADS`` caps the number of threads (default: the CPUs this process may use); 1 turns the
pool off.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def workers(n_items: int) -> int:
    """Threads to use for ``n_items`` independent pieces of work."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        cap = int(os.environ.get("ARIS_THREADS", "0"))
    except ValueError:
        cap = 0
    if cap > 0:
        cpus = min(cpus, cap)
    return max(1, min(cpus, n_items))


def pmap(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]`` in order, on a thread per core; the first exception is raised."""
    seq = list(items)
    n = workers(len(seq))
    if n == 1:
        return [fn(x) for x in seq]
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="aris-decode") as pool:
        return list(pool.map(fn, seq))
