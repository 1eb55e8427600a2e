"""Small evaluation datasets built from the sample files in tests/data, one per task.

The references are made up for the files (they are not diagnoses): what the tests check is the path
from dataset to report, and that the reported numbers follow from the per-item outputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aris.engines.fake import FakeEngine
from aris.prompt import Turn, render
from aris.types import GenerationParams

Samples = Callable[[str], Path]

CXR = "dicom/cxr/highdicom_dx_image.dcm"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def he_tiles(shared: Samples, out: Path, n: int = 4, size: int = 224) -> list[Path]:
    """PNG tiles of real H&E tissue: crops of the Aperio slide, and the TCGA tile wrapped in DICOM."""
    import numpy as np
    import pydicom
    import tiffslide
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with tiffslide.TiffSlide(str(shared("wsi/cmu_small_region.svs"))) as slide:
        w, h = slide.dimensions
        for i in range(n - 1):
            x, y = (w // 4) + i * size * 2, (h // 3) + i * size
            region = slide.read_region((x, y), 0, (size, size)).convert("RGB")
            p = out / f"svs_tile_{i}.png"
            region.save(p)
            paths.append(p)
    ds = pydicom.dcmread(shared("dicom/compressed/SC_jpeg_no_color_transform.dcm"))
    arr = np.asarray(ds.pixel_array)
    p = out / "tcga_tile.png"
    Image.fromarray(arr.astype("uint8")).convert("RGB").save(p)
    paths.append(p)
    return paths


def classify_set(shared: Samples, root: Path) -> Path:
    tiles = he_tiles(shared, root / "tiles")
    answers = ["TUM", "stroma", "colorectal adenocarcinoma epithelium", "LYM"]  # codes, aliases, options
    rows = [
        {
            "id": f"c{i}",
            "input": f"tiles/{t.name}",
            "question": f"Tile {i}: what tissue is this H&E patch?",
            "answer": a,
            "choices": "nct-crc-he",
            "subgroup": "svs" if t.name.startswith("svs") else "tcga",
        }
        for i, (t, a) in enumerate(zip(tiles, answers, strict=True))
    ]
    return write_jsonl(root / "classify.jsonl", rows)


def vqa_binary_set(shared: Samples, root: Path) -> Path:
    cxr = str(shared(CXR))
    rows = [
        {"id": "b1", "input": cxr, "question": "Is there pleural effusion?", "answer": "yes", "condition": "effusion"},
        {"id": "b2", "input": cxr, "question": "Is the effusion on the left?", "answer": "no", "condition": "effusion"},
        {"id": "b3", "input": cxr, "question": "Is the heart enlarged?", "answer": "No", "condition": "cardiomegaly"},
        {"id": "b4", "input": cxr, "question": "Is there cardiomegaly?", "answer": "yes", "condition": "cardiomegaly"},
    ]  # fmt: skip
    return write_jsonl(root / "vqa_binary.jsonl", rows)


def vqa_open_set(shared: Samples, root: Path) -> Path:
    cxr = str(shared(CXR))
    rows = [
        {"id": "v1", "input": cxr, "question": "Which organ is shown?", "answer": "the lungs", "subgroup": "open"},
        {"id": "v2", "input": cxr, "question": "Is this a chest X-ray?", "answer": "yes", "subgroup": "closed"},
        {"id": "v3", "input": cxr, "question": "What view is this?", "answer": "PA view", "subgroup": "open"},
    ]  # fmt: skip
    return write_jsonl(root / "vqa_open.jsonl", rows)


def ct_set(shared: Samples, root: Path) -> Path:
    head = str(shared("dicom/ct_series/head_ct2_4slices"))
    cardiac = str(shared("dicom/ct_series/cardiac_ct5n_5slices"))
    rows = [
        {"id": "ct1", "input": head, "question": "Is there intracranial hemorrhage?", "answer": "no"},
        {"id": "ct2", "input": cardiac, "question": "Is there coronary calcification?", "answer": "yes"},
    ]
    return write_jsonl(root / "ct.jsonl", rows)


def compare_set(shared: Samples, root: Path) -> Path:
    pair = f"{shared(CXR)}|{shared(CXR)}"
    rows = [
        {"id": "m1", "input": pair, "finding": "pleural effusion", "answer": "stable"},
        {"id": "m2", "input": pair, "finding": "edema", "answer": "(A) Improved"},
        {"id": "m3", "input": pair, "finding": "pneumothorax", "answer": "worse"},
    ]
    return write_jsonl(root / "compare.jsonl", rows)


def localize_set(shared: Samples, root: Path) -> Path:
    cxr = str(shared(CXR))
    rows = [  # boxes [y0, x0, y1, x1] in pixels of the 169 x 211 film
        {"id": "l1", "input": cxr, "label": "right lung", "answer": [40, 10, 170, 80]},
        {"id": "l2", "input": cxr, "label": "heart", "answer": "[100, 60, 170, 130]"},
    ]
    return write_jsonl(root / "localize.jsonl", rows)


def wsi_set(shared: Samples, root: Path) -> Path:
    rows = [
        {
            "id": "w1",
            "input": str(shared("wsi/cmu_small_region.svs")),
            "organ": "colon",
            "procedure": "resection",
            "answer": "Sections of colonic tissue with glands and stroma; no malignancy identified in these patches.",
        }
    ]
    return write_jsonl(root / "wsi.jsonl", rows)


def lab_set(shared: Samples, root: Path) -> Path:
    rows = [
        {
            "id": "lab1",
            "input": str(shared("lab/synthetic_lab_report.pdf")),
            "answer": str(shared("lab/synthetic_lab_report.truth.json")),
        }
    ]
    return write_jsonl(root / "lab.jsonl", rows)


def text_qa_set(root: Path) -> Path:
    rows = [
        {"id": "t1", "question": "Which vitamin deficiency causes scurvy?", "options": ["A", "B12", "C", "D"], "answer": "C", "subgroup": "nutrition"},
        {"id": "t2", "question": "First-line drug for type 2 diabetes?", "options": {"A": "Insulin", "B": "Metformin", "C": "Warfarin"}, "answer": "Metformin", "subgroup": "endocrine"},
        {"id": "t3", "question": "Which organ makes insulin?", "answer": "the pancreas", "subgroup": "endocrine"},
    ]  # fmt: skip
    return write_jsonl(root / "text_qa.jsonl", rows)


# -- a scripted engine for the code above engines ----------------------------------------------------


class Oracle(FakeEngine):
    """Answers by the prompt's content (batch items run in any order): the first rule whose needle is
    in the rendered prompt gives the reply; a repair prompt (it quotes the first reply) matches first
    on ``repair``."""

    def __init__(self, model_id: str, rules: list[tuple[str, str]], repair: str = "still no idea") -> None:
        super().__init__(model_id)
        self.rules = rules
        self.repair = repair

    def stream(self, turns: list[Turn], params: GenerationParams) -> Iterator[str]:
        prompt = render(turns)
        self.prompts.append(prompt)
        self.params.append(params)
        if "could not be used" in prompt or "Your reply was empty" in prompt:
            reply = self.repair
        else:
            reply = next((r for needle, r in self.rules if needle in prompt), "no idea")
        yield reply


def use_oracle(monkeypatch: pytest.MonkeyPatch, rules: list[tuple[str, str]], repair: str = "still no idea") -> list[Oracle]:  # fmt: skip
    """Make the batch executors load an Oracle instead of the engine the settings name."""
    made: list[Oracle] = []

    def load(settings: Any) -> Oracle:
        made.append(Oracle(settings.model or "oracle", rules, repair))
        return made[-1]

    # The batch loads its generator through the model-role registry: point the role at the oracle.
    from aris.context import MODEL_ROLES

    monkeypatch.setitem(MODEL_ROLES._targets, "generator", load)
    monkeypatch.setitem(MODEL_ROLES._loaded, "generator", load)
    return made
