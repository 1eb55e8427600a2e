"""32 concurrent streamed chat requests against a real Aris server (uvicorn, localhost) backed by the real
Gemma 3 270M GGUF through llama.cpp, and the same requests sent straight to the engine in the same run.

Prints requests/s, p50/p95 time to first token, errors (goal: 0), and the server/engine ratio.

    python bench/server_load.py [--requests 32] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx

from aris.demo.tiny import gemma3_270m_gguf
from aris.engines.llamacpp import LlamaCppEngine
from aris.prompt import build_turns
from aris.server import create_app
from aris.server.local import live_server
from aris.server.settings import ServerSettings
from aris.types import GenerationParams, Message

REPO = Path(__file__).resolve().parents[1]

QUESTIONS = [f"Patient {i}: list two common causes of a cough." for i in range(64)]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def one(client: httpx.AsyncClient, url: str, question: str, max_tokens: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    ttft = None
    body = {"messages": [{"role": "user", "content": question}], "max_tokens": max_tokens, "stream": True}
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                delta = json.loads(line[6:])["choices"][0]["delta"]
                if ttft is None and delta.get("content"):
                    ttft = time.perf_counter() - t0
    return ttft if ttft is not None else time.perf_counter() - t0, time.perf_counter() - t0


async def through_server(url: str, n: int, max_tokens: int) -> tuple[list[float], int, float]:
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(one(client, url, QUESTIONS[i], max_tokens) for i in range(n)), return_exceptions=True
        )
        wall = time.perf_counter() - t0
    ttfts = [r[0] for r in results if not isinstance(r, BaseException)]
    return ttfts, sum(isinstance(r, BaseException) for r in results), wall


def straight_to_engine(engine: LlamaCppEngine, n: int, max_tokens: int) -> tuple[list[float], float]:
    params = GenerationParams(max_new_tokens=max_tokens)
    ttfts = []
    t0 = time.perf_counter()
    for i in range(n):
        s = time.perf_counter()
        first = None
        for _chunk in engine.stream(build_turns([Message.user(QUESTIONS[i])]), params):
            if first is None:
                first = time.perf_counter() - s
        ttfts.append(first or 0.0)
    return ttfts, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--cache", type=Path, default=REPO / ".cache" / "test-models")
    args = ap.parse_args()
    model = gemma3_270m_gguf(args.cache)
    engine = LlamaCppEngine(str(model), n_ctx=2048)
    direct_ttft, direct_wall = straight_to_engine(engine, args.requests, args.max_tokens)
    with live_server(create_app(ServerSettings(), engine=engine)) as url:
        ttfts, errors, wall = asyncio.run(through_server(url, args.requests, args.max_tokens))
    engine.close()
    n = args.requests
    print(
        f"server : {n} concurrent streamed requests, {wall:.2f}s, {n / wall:.2f} req/s, "
        f"TTFT p50 {statistics.median(ttfts):.3f}s p95 {pct(ttfts, 0.95):.3f}s, errors {errors}"
    )
    print(
        f"engine : {n} sequential requests, {direct_wall:.2f}s, {n / direct_wall:.2f} req/s, "
        f"TTFT p50 {statistics.median(direct_ttft):.3f}s"
    )
    print(
        f"ratio  : server throughput / engine throughput = {(n / wall) / (n / direct_wall):.2f} "
        "(the llama.cpp engine runs one generation at a time; queueing shows in the server's TTFT)"
    )
    print("verdict:", "OK, 0 errors" if errors == 0 else f"FAIL, {errors} errors")


if __name__ == "__main__":
    main()
