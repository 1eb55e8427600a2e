"""The same batch on 1 and on 2 local OpenAI-compatible servers (llama-cpp-python, real Gemma 3 270M GGUF).

Prints items/s for each, the 2-server/1-server ratio (goal >= 1.6x), and the share of engine time spent
idle waiting for input preparation (text-qa items have no files to read, so it measures the driver's own
gaps). Each server gets ``--n_threads 1 --n_threads_batch 1``: these machines have 2 cores, so two servers
can at best use both, and anything else running on the machine eats straight into the ratio (the load
average is printed with the result).

    python bench/batch_scaling.py [--items 24] [--max-new-tokens 8] [--per-endpoint 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from aris.batch import BatchOptions, WorkItem, run_batch
from aris.config import ArisSettings
from aris.demo.tiny import gemma3_270m_gguf
from aris.server.local import free_port
from aris.store import Store

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def llama_server(gguf: Path, log: Path) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on one thread for decoding AND for prompt processing.

    (Its ``n_threads_batch`` defaults to the core count: two servers would then run four spinning
    threads on two cores during prefill, and the second server would slow both down.)
    """
    port = free_port()
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "gemma3-270m",
            "--host", "127.0.0.1", "--port", str(port), "--chat_format", "gemma", "--n_ctx", "1024",
            "--n_threads", "1", "--n_threads_batch", "1"]  # fmt: skip
    with log.open("wb") as f:
        proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"llama_cpp.server did not start:\n{log.read_text(errors='replace')[-2000:]}"
                )
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


TOPICS = ["a cough", "chest pain", "anemia", "hyponatremia", "a raised HbA1c", "a pleural effusion"]


def worklist(n: int, tag: str) -> list[WorkItem]:
    # text-qa items (the 270M GGUF is text-only); the tag keeps the two runs' keys apart.
    return [
        WorkItem(paths=(), question=f"[{tag} {i}] Name two common causes of {TOPICS[i % len(TOPICS)]}.")
        for i in range(n)
    ]


def run(urls: list[str], n: int, tag: str, max_new_tokens: int, per_endpoint: int, home: Path):  # type: ignore[no-untyped-def]
    settings = ArisSettings(max_new_tokens=max_new_tokens)
    opts = BatchOptions(endpoints=urls, per_endpoint=per_endpoint)
    with Store.open(f"sqlite:///{home / f'{tag}.db'}") as store:
        return run_batch(worklist(n, tag), "text-qa", settings, store=store, options=opts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=24)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--per-endpoint", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    load0 = " ".join(f"{x:.1f}" for x in os.getloadavg())

    gguf = gemma3_270m_gguf(Path(os.environ.get("ARIS_TEST_CACHE", REPO / ".cache" / "test-models")))
    with tempfile.TemporaryDirectory(prefix="aris-bench-") as tmp, ExitStack() as stack:
        home = Path(tmp)
        os.environ["ARIS_HOME"] = str(home)
        urls = [stack.enter_context(llama_server(gguf, home / f"server{i}.log")) for i in range(2)]
        # Warm both servers (first request pays for buffers), so neither run is charged for it.
        run(urls, 2, "warm", args.max_new_tokens, 1, home)

        # Alternate the two set-ups, so a change in the machine's other load hits both alike.
        ones, twos = [], []
        for r in range(args.rounds):
            ones.append(run(urls[:1], args.items, f"one{r}", args.max_new_tokens, args.per_endpoint, home))
            twos.append(run(urls, args.items, f"two{r}", args.max_new_tokens, args.per_endpoint, home))

    for name, runs in (("1 server ", ones), ("2 servers", twos)):
        for s in runs:
            served = ", ".join(str(w.served) for w in s.workers)
            print(
                f"{name}: {s.counts['done']}/{s.counts['total']} done in {s.wall_s:.1f} s = "
                f"{s.items_per_s:.2f} items/s (served per server: {served}; engine idle waiting for "
                f"preparation {s.idle_share:.1%}, busy {s.busy_share:.1%})"
            )
    # Best of the rounds: other load on a shared machine only ever slows a run down.
    one_rate = max(s.items_per_s for s in ones)
    two_rate = max(s.items_per_s for s in twos)
    ratio = two_rate / one_rate if one_rate else 0.0
    idle = statistics.mean(s.idle_share for s in ones + twos)
    load = os.getloadavg()
    print(
        f"items/s (best of {args.rounds}): 1 server {one_rate:.2f}, 2 servers {two_rate:.2f}; "
        f"scaling {ratio:.2f}x (goal >= 1.6x); engines idle waiting for preparation {idle:.1%}"
    )
    print(
        f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} (before: {load0})"
    )
    ok = ratio >= 1.6 and all(s.counts["done"] == args.items for s in ones + twos)
    why = (
        ""
        if ok
        else " (2 cores, 1 thread per server: two servers need both cores to themselves; other load on the "
        "machine takes from the second server first)"
    )
    print(f"verdict: {'PASS' if ok else 'BELOW GOAL'}: 2 servers ran {ratio:.2f}x the items/s of 1{why}")


if __name__ == "__main__":
    main()
