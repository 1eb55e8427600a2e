"""The same batch on 1 and on 2 local OpenAI-compatible servers (llama-cpp-python, real Gemma 3 270M GGUF).

Prints items/s for each, the 2-server/1-server ratio (goal >= 1.6x), and the share of engine time spent
idle waiting for input preparation. Each server gets ``--n_threads 1``: these machines have 2 cores, so two
servers can at best use both, and anything else running on the machine eats straight into the ratio (the
load average is printed with the result).

    python bench/batch_scaling.py [--items 24] [--max-new-tokens 8] [--per-endpoint 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.servers (the llama_cpp.server launcher the tests use)

from aris.batch import BatchOptions, WorkItem, run_batch  # noqa: E402
from aris.config import ArisSettings  # noqa: E402
from aris.demo.tiny import gemma3_270m_gguf  # noqa: E402
from aris.store import Store  # noqa: E402
from tests.servers import llama_server  # noqa: E402

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
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    load0 = " ".join(f"{x:.1f}" for x in os.getloadavg())

    gguf = gemma3_270m_gguf(Path(os.environ.get("ARIS_TEST_CACHE", REPO / ".cache" / "test-models")))
    with tempfile.TemporaryDirectory(prefix="aris-bench-") as tmp, ExitStack() as stack:
        home = Path(tmp)
        os.environ["ARIS_HOME"] = str(home)
        urls = [stack.enter_context(llama_server(gguf, n_threads=1, n_ctx=1024)) for _ in range(2)]
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
    one_rate = statistics.median(s.items_per_s for s in ones)
    two_rate = statistics.median(s.items_per_s for s in twos)
    ratio = two_rate / one_rate if one_rate else 0.0
    idle = statistics.mean(s.idle_share for s in ones + twos)
    load = os.getloadavg()
    print(
        f"items/s (median of {args.rounds}): 1 server {one_rate:.2f}, 2 servers {two_rate:.2f}; "
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
