"""Aris's llama.cpp engine against llama-cpp-python's own ``create_completion``, real Gemma 3 270M GGUF, same run.

Two workloads on the same prompt string, greedy, the same ``max_new_tokens``:

* plain text: Aris's token loop (special tokens kept, stop filter, UTF-8 holding) against
  ``create_completion``. Goal: Aris within 5% of it.
* JSON schema: Aris checks the grammar on the chosen token first and applies it to the whole
  vocabulary only when that token is refused; ``create_completion(grammar=...)`` applies it to all
  262k tokens every step. Greedy picks the same token either way, so the texts must match.

Each pair alternates, the order flipping every repeat, so drift on a shared machine hits both alike;
the load average is printed with the result.

    python bench/llamacpp_engine.py [--repeats 3] [--max-new-tokens 48] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import llama_cpp
from llama_cpp import LlamaGrammar

from aris.demo.tiny import gemma3_270m_gguf
from aris.engines.llamacpp import LlamaCppEngine
from aris.prompt import build_turns, render
from aris.types import GenerationParams, Message

REPO = Path(__file__).resolve().parents[1]
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "country": {"type": "string", "maxLength": 40},
        "population_millions": {"type": "number"},
        "landmarks": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 3},
    },
    "required": ["city", "country", "population_millions", "landmarks"],
    "additionalProperties": False,
}


def timed(fn: Callable[[], str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def pair(name: str, ours: Callable[[], str], ref: Callable[[], str], repeats: int) -> float:
    ours(), ref()  # warm-up
    t_ours: list[float] = []
    t_ref: list[float] = []
    for i in range(repeats):
        order = [(ours, t_ours), (ref, t_ref)] if i % 2 == 0 else [(ref, t_ref), (ours, t_ours)]
        texts = []
        for fn, acc in order:
            dt, text = timed(fn)
            acc.append(dt)
            texts.append(text)
        if texts[0] != texts[1]:
            raise SystemExit(f"{name}: the two paths disagree:\n{texts[0]!r}\n{texts[1]!r}")
    a, b = statistics.median(t_ours), statistics.median(t_ref)
    print(f"{name:<10} aris {a:6.2f}s   llama-cpp-python {b:6.2f}s   ratio aris/ref {a / b:5.2f}")
    return a / b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cache", type=Path, default=REPO / ".cache" / "test-models")
    args = ap.parse_args()

    path = gemma3_270m_gguf(args.cache)
    t0 = time.perf_counter()
    engine = LlamaCppEngine(str(path), n_ctx=2048, n_threads=args.threads)
    print(f"load      {time.perf_counter() - t0:.2f}s (Gemma 3 270M Q4_K_M, n_ctx 2048)")
    ref = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_threads=args.threads, verbose=False)

    n = args.max_new_tokens
    text_turns = build_turns([Message.user("Tell me about the history of Paris.")])
    json_turns = build_turns([Message.user("Describe Paris in JSON: city, country, population, landmarks.")])

    def aris(turns: list, params: GenerationParams) -> Callable[[], str]:  # type: ignore[type-arg]
        return lambda: "".join(engine.stream(turns, params))

    def reference(turns: list, grammar: LlamaGrammar | None) -> Callable[[], str]:  # type: ignore[type-arg]
        prompt = render(turns, bos=False)

        def run() -> str:
            ref.reset()  # no prefix reuse: Aris evaluates every prompt whole
            out = ref.create_completion(prompt, max_tokens=n, temperature=0.0, grammar=grammar)
            return str(out["choices"][0]["text"])  # type: ignore[index]

        return run

    t, text = timed(aris(text_turns, GenerationParams(max_new_tokens=n)))
    tokens = engine.count_text_tokens(text)
    print(f"decode    ~{tokens / t:.1f} tokens/s (aris, {tokens} tokens incl. prompt eval)")
    pair(
        "text",
        aris(text_turns, GenerationParams(max_new_tokens=n)),
        reference(text_turns, None),
        args.repeats,
    )
    grammar = LlamaGrammar.from_json_schema(json.dumps(SCHEMA), verbose=False)
    pair(
        "json",
        aris(json_turns, GenerationParams(max_new_tokens=n, json_schema=SCHEMA)),
        reference(json_turns, grammar),
        args.repeats,
    )
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    ref.close()
    engine.close()


if __name__ == "__main__":
    main()
