"""What Aris adds in front of a batching engine server: the same concurrent streamed requests sent straight
to a llama-cpp-python OpenAI server and through ``aris serve --engine openai`` in front of it, interleaved
round by round in one run, both servers in their own processes.

Prints each round's pair, then per path the median over rounds of the median time to first token and of
the total time for the whole burst, and the median over rounds of each pair's ratio (goal: Aris adds
<= 5% to median TTFT and <= 3% to total time, judged on these paired ratios) and the errors (goal: 0).
The machine's load average is printed with the figures: two cores shared with anything else make the
ratio meaningless, so run it on a quiet machine.

    python bench/server_load.py [--requests 32] [--rounds 15] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from aris.demo.tiny import gemma3_270m_gguf
from aris.server.local import free_port

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = [f"Patient {i}: list two common causes of a cough." for i in range(256)]


@contextmanager
def process(cmd: list[str], ready_url: str, env: dict[str, str] | None = None) -> Iterator[None]:
    # A temporary file, not a pipe: a pipe nobody reads would fill up and stall the server.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
        deadline = time.monotonic() + 180
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"{' '.join(cmd[:4])} exited: {log.read().decode()[-2000:]}")
                try:
                    if httpx.get(ready_url, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                raise RuntimeError(f"{ready_url} not ready in 180 s")
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            if os.environ.get("BENCH_LOGS"):
                log.seek(0)
                print(f"--- {' '.join(cmd[:4])}\n{log.read().decode()[-3000:]}")


async def one(client: httpx.AsyncClient, url: str, model: str, question: str, max_tokens: int) -> float:
    t0 = time.perf_counter()
    ttft = None
    body = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:]).get("choices") or [{}]
                if ttft is None and choices[0].get("delta", {}).get("content"):
                    ttft = time.perf_counter() - t0
    return ttft if ttft is not None else time.perf_counter() - t0


async def burst(
    url: str, model: str, questions: list[str], max_tokens: int
) -> tuple[list[float], int, float]:
    async with httpx.AsyncClient(timeout=900, limits=httpx.Limits(max_connections=len(questions))) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(one(client, url, model, q, max_tokens) for q in questions), return_exceptions=True
        )
        wall = time.perf_counter() - t0
    ttfts = [r for r in results if isinstance(r, float)]
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        print(f"  {url}: {len(failures)} failed, e.g. {type(failures[0]).__name__}: {failures[0]}")
    return ttfts, len(failures), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--cache", type=Path, default=REPO / ".cache" / "test-models")
    args = ap.parse_args()
    model = gemma3_270m_gguf(args.cache)
    llama_port, aris_port = free_port(), free_port()
    llama_url, aris_url = f"http://127.0.0.1:{llama_port}", f"http://127.0.0.1:{aris_port}"
    llama_cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "gemma-270m",
        "--host", "127.0.0.1", "--port", str(llama_port), "--chat_format", "gemma", "--n_ctx", "2048",
        "--n_threads", "2",
        # Its default interrupts a streaming request when the next one arrives: a burst would then
        # measure broken streams, not queueing.
        "--interrupt_requests", "False",
    ]  # fmt: skip
    env = {**os.environ, "ARIS_HOME": str(REPO / ".cache" / "bench-home")}
    aris_cmd = [
        sys.executable, "-m", "aris", "serve", "--engine", "openai", "--base-url", f"{llama_url}/v1",
        "--model", "gemma-270m", "--port", str(aris_port),
    ]  # fmt: skip
    direct: list[tuple[float, float]] = []
    via: list[tuple[float, float]] = []
    errors = 0
    with process(llama_cmd, f"{llama_url}/v1/models"), process(aris_cmd, f"{aris_url}/readyz", env):
        asyncio.run(burst(llama_url, "gemma-270m", QUESTIONS[:2], args.max_tokens))  # warm both paths
        asyncio.run(burst(aris_url, "gemma-270m", QUESTIONS[:2], args.max_tokens))
        for r in range(args.rounds):
            qs = QUESTIONS[(r * args.requests) % 200 :][: args.requests]
            order = [("direct", llama_url), ("aris", aris_url)]
            for name, url in order if r % 2 == 0 else reversed(order):  # alternate who goes first
                ttfts, errs, wall = asyncio.run(burst(url, "gemma-270m", qs, args.max_tokens))
                errors += errs
                (direct if name == "direct" else via).append((statistics.median(ttfts), wall))
    d_ttft = statistics.median(t for t, _ in direct)
    v_ttft = statistics.median(t for t, _ in via)
    d_wall = statistics.median(w for _, w in direct)
    v_wall = statistics.median(w for _, w in via)
    load = os.getloadavg()[0]
    for r, ((dt, dw), (vt, vw)) in enumerate(zip(direct, via, strict=True), 1):
        print(
            f"  round {r}: TTFT direct {dt:5.2f}s aris {vt:5.2f}s ({100 * (vt / dt - 1):+5.1f}%), "
            f"burst direct {dw:5.2f}s aris {vw:5.2f}s ({100 * (vw / dw - 1):+5.1f}%)"
        )
    print(
        f"{args.requests} concurrent streamed requests x {args.rounds} interleaved rounds, {args.max_tokens} tokens each"
    )
    print(f"llama-cpp-python server direct : median TTFT {d_ttft:6.2f}s, burst {d_wall:6.2f}s")
    print(f"through aris serve (openai)    : median TTFT {v_ttft:6.2f}s, burst {v_wall:6.2f}s")
    # Paired by round (each pair ran back to back), so slow drift of the machine cancels out.
    pair_ttft = statistics.median(v[0] / d[0] for d, v in zip(direct, via, strict=True))
    pair_wall = statistics.median(v[1] / d[1] for d, v in zip(direct, via, strict=True))
    print(
        f"median of the rounds' paired ratios: TTFT {100 * (pair_ttft - 1):+.1f}%, total {100 * (pair_wall - 1):+.1f}%"
    )
    # Judged on the paired ratios: each round's two bursts ran back to back, so pairing removes the
    # machine's drift between rounds; the ratio of the two medians is printed beside them.
    ok = pair_ttft <= 1.05 and pair_wall <= 1.03 and errors == 0
    print(
        f"Aris adds {100 * (pair_ttft - 1):+.1f}% to median TTFT (goal <= 5%), "
        f"{100 * (pair_wall - 1):+.1f}% to total time (goal <= 3%) [ratio of medians: "
        f"{100 * (v_ttft / d_ttft - 1):+.1f}%, {100 * (v_wall / d_wall - 1):+.1f}%], errors {errors} (goal 0), "
        f"load average {load:.1f} | {'PASS' if ok else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
