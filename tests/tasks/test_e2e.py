"""Every task end to end on the sample data through real engines on the small local models.

The tiny VLM's weights are random and the 270M GGUF is a base model, so the words are noise: what
is tested is the path (reading, the recipe's prompt, the engine, constrained decoding, parsing,
the repair, the record), and that a reply which cannot validate becomes a Result with errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aris.api import run
from aris.errors import ArisError
from aris.notice import NOTICE
from aris.result import Result

D = "dicom/"
CASES: list[tuple[str, list[str], dict[str, Any], int]] = [
    # task, inputs, options, images in the first prompt
    ("cxr-report", [D + "cxr/highdicom_dx_image.dcm"], {}, 1),
    ("cxr-compare", [D + "cxr/highdicom_dx_image.dcm", D + "cxr/highdicom_dx_image.dcm"], {}, 2),
    (
        "cxr-localize",
        [D + "cxr/highdicom_dx_image.dcm"],
        {"labels": "heart, left lung", "max_new_tokens": 48},
        1,
    ),
    ("ct", [D + "ct_series/head_ct2_4slices"], {"question": "Any hemorrhage?"}, 4),
    ("ct", [D + "ct_series/cardiac_ct5n_5slices"], {"findings": "calcification, effusion"}, 5),
    (
        "mri",
        ["nifti/mricron_ch2_colin27_t1.nii.gz"],
        {"question": "Describe the ventricles.", "yes_no": True},
        85,
    ),
    ("wsi", ["wsi/cmu_small_region.svs"], {"organ": "colon", "procedure": "resection"}, -1),
    (
        "classify",
        [D + "compressed/SC_jpeg_no_color_transform.dcm"],
        {"kind": "image", "max_new_tokens": 32},
        1,
    ),
    (
        "vqa",
        [D + "cxr/highdicom_dx_image.dcm"],
        {"question": "Is there an effusion?", "final_answer": True},
        1,
    ),
    ("lab-extract", ["lab/synthetic_lab_report.pdf"], {}, 1),
    ("ehr-summary", ["fhir/synthetic_patient_bundle_r4.json"], {}, 0),
    (
        "ehr-ask",
        ["fhir/synthetic_patient_bundle_r4.json"],
        {"question": "Latest HbA1c?", "mode": "navigate"},
        0,
    ),
    ("trends", ["fhir/synthetic_patient_bundle_r4.json"], {"codes": "4548-4, 718-7"}, 0),
    ("text-qa", [], {"question": "Which vitamin deficiency causes scurvy?", "choices": "A,B12,C,D"}, 0),
    ("intake", [], {"question": "I have a cough", "answers": ["three days", "constant", "dry"]}, 0),
]


def check_record(r: Result, task: str, engine: str) -> None:
    """What every Result must carry, whatever the model said."""
    assert r.task == task
    assert r.engine == engine
    assert r.notice == NOTICE
    assert re.fullmatch(r"[0-9a-f]{64}", r.prompt_sha256)
    assert r.steps
    assert r.steps[0]["prompt_sha256"] == r.prompt_sha256
    assert r.usage["calls"] == len(r.steps)
    assert r.usage["completion_tokens"] >= 1
    # exactly one of: a validated value, or errors saying why not. Lab keeps its good pages beside a
    # failed page's errors; intake always keeps its record (an escalation must survive a bad reply).
    assert r.parsed is not None or r.errors
    if task not in ("lab-extract", "intake"):
        assert (r.parsed is None) == bool(r.errors)


@pytest.fixture(scope="module")
def vlm(tiny_vlm: Path) -> Iterator[Any]:
    from aris.engines.transformers import TransformersEngine

    engine = TransformersEngine(str(tiny_vlm))
    yield engine
    engine.close()


@pytest.mark.parametrize(("task", "paths", "options", "images"), CASES, ids=[c[0] for c in CASES])
def test_every_task_on_the_tiny_vlm(
    vlm: Any,
    samples: Any,
    tmp_path: Path,
    task: str,
    paths: list[str],
    options: dict[str, Any],
    images: int,
) -> None:
    opts = {"max_new_tokens": 12, **options}
    files_dir = tmp_path if task == "cxr-localize" else None
    r = run(task, [samples(p) for p in paths], engine=vlm, files_dir=files_dir, **opts)
    check_record(r, task, "transformers")
    if images >= 0:
        assert r.usage["images"] == images
    else:
        assert r.usage["images"] >= 1  # slide tiles: as many as the reader found
    if paths:
        assert r.provenance
        assert all(p["sources"] for p in r.provenance)
    else:
        assert r.provenance == []


def test_constrained_classification_always_validates(vlm: Any, samples: Any) -> None:
    """The enum grammar makes even random weights pick exactly one option."""
    from aris.tasks.classify import CHOICE_SETS

    for choices in ("nct-crc-he", "diabetic-retinopathy", "cat, dog, neither"):
        r = run(
            "classify",
            samples(D + "compressed/SC_jpeg_no_color_transform.dcm"),
            engine=vlm,
            kind="image",
            choices=choices,
            max_new_tokens=32,
        )
        assert r.errors == []
        options = CHOICE_SETS[choices].options if choices in CHOICE_SETS else ("cat", "dog", "neither")
        assert r.parsed["answer"] in options
        assert r.text.startswith('{"answer": ') or r.text.startswith('{"answer":')


def test_trends_numbers_do_not_depend_on_the_model(vlm: Any, samples: Any) -> None:
    r = run(
        "trends",
        samples("fhir/synthetic_patient_bundle_r4.json"),
        engine=vlm,
        codes="4548-4",
        max_new_tokens=8,
    )
    assert r.errors == []
    (s,) = r.parsed["series"]
    assert [p["value"] for p in s["values"]] == [6.1, 7.4, 6.9]
    assert s["slope_per_year"] == pytest.approx(0.27339, abs=1e-5)


def test_localize_overlay_when_boxes_validate(vlm: Any, samples: Any, tmp_path: Path) -> None:
    r = run(
        "cxr-localize",
        samples(D + "cxr/highdicom_dx_image.dcm"),
        engine=vlm,
        labels="heart",
        files_dir=tmp_path,
        max_new_tokens=64,
    )
    if r.parsed is not None:  # random weights under the grammar may or may not finish a box
        from PIL import Image

        assert Image.open(tmp_path / "overlay.png").size == tuple(r.parsed["image_size"])
        for b in r.parsed["boxes"]:
            assert 0 <= b["box_px"]["x0"] < b["box_px"]["x1"] <= r.parsed["image_size"][0]
    else:
        assert not (tmp_path / "overlay.png").exists()
        assert r.errors[0].startswith("first reply:")


# -- llama.cpp: the real Gemma 3 270M, text-only -----------------------------------------------------


@pytest.fixture(scope="module")
def gguf_engine(gguf_270m: Path) -> Iterator[Any]:
    from aris.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(str(gguf_270m), n_ctx=4096, n_threads=2)
    yield engine
    engine.close()


def test_text_tasks_on_llamacpp(gguf_engine: Any, samples: Any) -> None:
    # Few tokens: grammar-constrained sampling over Gemma's 262k vocabulary is slow on a CPU.
    bundle = samples("fhir/synthetic_patient_bundle_r4.json")
    r = run("trends", bundle, engine=gguf_engine, codes="4548-4", max_new_tokens=4)
    check_record(r, "trends", "llamacpp")
    assert r.parsed["series"][0]["latest"] == 6.9
    r = run("intake", [], engine=gguf_engine, question="sore throat", model_questions=False, max_new_tokens=4)
    check_record(r, "intake", "llamacpp")
    assert r.steps[0]["name"] == "record"


def test_images_on_a_text_only_gguf_are_refused_before_generating(gguf_engine: Any, samples: Any) -> None:
    with pytest.raises(ArisError, match="cannot take images"):
        run("cxr-report", samples(D + "cxr/highdicom_dx_image.dcm"), engine=gguf_engine, max_new_tokens=8)


# -- an OpenAI-compatible server (llama-cpp-python's) ---------------------------------------------------


@pytest.fixture(scope="module")
def openai_engine(gguf_270m: Path) -> Iterator[Any]:
    from servers import llama_server  # tests/ is on sys.path (rootdir conftest)

    from aris.demo.tiny import chat_template
    from aris.engines.openai_compat import OpenAIEngine

    with llama_server(gguf_270m, n_ctx=2048, chat_template=chat_template()) as url:
        engine = OpenAIEngine(url, vision=False, max_context=2048)
        yield engine
        engine.close()


def test_tasks_through_an_openai_server(openai_engine: Any) -> None:
    # the intake record is JSON-schema constrained: the server's json_object + schema path
    r = run("intake", [], engine=openai_engine, question="a rash", model_questions=False, max_new_tokens=4)
    check_record(r, "intake", "openai")
    assert r.parsed["transcript"][1]["text"] == "a rash"
    r = run(
        "text-qa", [], engine=openai_engine, question="Name one beta blocker.", think=False, max_new_tokens=4
    )
    check_record(r, "text-qa", "openai")
