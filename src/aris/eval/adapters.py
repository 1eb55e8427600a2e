"""Standard benchmark layouts read as they are downloaded: one documented adapter per benchmark.

``aris eval DATA --benchmark medqa`` reads DATA (a ``save_to_disk`` folder, the hub's parquet/JSON
files, or one such file) in that benchmark's Hugging Face layout and maps each row to an eval item;
no conversion step. The benchmark also fixes the task and mode, and names the published figures.
All adapters are registered here, in :data:`ADAPTERS`.

| adapter | layout read (Hugging Face dataset) | item |
|---|---|---|
| medqa | ``GBaker/MedQA-USMLE-4-options``: ``question``, ``options`` {A..D}, ``answer_idx`` (or ``answer``); or its ``-hf`` twin: ``sent1``, ``ending0..3``, ``label`` | text-qa, 4 options; subgroup ``meta_info`` |
| medmcqa | ``openlifescienceai/medmcqa``: ``question``, ``opa..opd``, ``cop`` (0-3); split ``validation`` (the test split's answers are not public) | text-qa, 4 options; subgroup ``subject_name`` |
| pubmedqa | ``qiaojin/PubMedQA`` ``pqa_labeled``: ``pubid``, ``question``, ``context.contexts``, ``final_decision`` | text-qa, options yes/no/maybe; question ``Abstract: ...\\nQuestion: ...`` (lm-evaluation-harness's layout) |
| mmlu-med | ``cais/mmlu``: ``question``, ``choices``, ``answer`` (0-3), ``subject``; rows of the six medical subjects only | text-qa; subgroup ``subject`` |
| slake | ``BoKelvin/SLAKE``: ``test.json`` beside ``imgs/`` (``img_name``, ``question``, ``answer``, ``answer_type``, ``q_lang``); English rows only | vqa open; closed = ``answer_type`` CLOSED |
| vqa-rad | ``flaviagiammarino/vqa-rad``: ``image`` (embedded), ``question``, ``answer`` | vqa open; closed = yes/no reference |

Embedded images (VQA-RAD's parquet) are written once to a content-addressed folder
(``<ARIS_HOME>/eval/images/<sha256>.<ext>``), so a rerun names the same files and resumes.

Caveat: PubMedQA's published test set is 500 of ``pqa_labeled``'s 1000 rows (the PubMedQA repository's
``test_ground_truth.json``); the hub dataset does not mark them, so filter the rows first (or accept
that the score is over all 1000, which the run's item count shows).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aris.errors import ConfigError, InputError
from aris.eval.datasets import EvalItem, items_from_rows, read_rows

Row = dict[str, Any]

MMLU_MED = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)
LETTERS = "ABCDEFGHIJ"


class Images:
    """Image cells as files: a path relative to the dataset, or embedded bytes written once by hash."""

    def __init__(self, base: Path, folder: Path) -> None:
        self.base = base
        self.folder = folder

    def path(self, value: Any, where: Path) -> Path:
        if isinstance(value, Mapping) and value.get("bytes"):
            data = bytes(value["bytes"])
            ext = Path(str(value.get("path") or "")).suffix.lower() or ".png"
            target = self.folder / f"{hashlib.sha256(data).hexdigest()}{ext}"
            if not target.exists():
                self.folder.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(target.suffix + ".part")
                tmp.write_bytes(data)
                tmp.replace(target)
            return target
        name = str(value.get("path") if isinstance(value, Mapping) else value or "")
        if not name:
            raise InputError(where, "a row has no image")
        for candidate in (self.base / "imgs" / name, self.base / name, Path(name)):
            if candidate.exists():
                return candidate
        return self.base / "imgs" / name  # missing: the item fails naming this file


@dataclass(frozen=True)
class Adapter:
    name: str
    benchmark: str | None  # the published figures' name, when there are any
    task: str
    mode: str
    columns: tuple[tuple[str, ...], ...]  # accepted layouts: each a set of required columns
    convert: Callable[[Row, int, Images], Row | None]  # a row in Aris's layout, or None to leave it out
    split: str = "test"
    doc: str = ""


def _letter_answer(options: list[str], answer: Any, idx: Any = None) -> str:
    if idx not in (None, ""):
        return str(idx).strip()
    return str(answer)


def _medqa(row: Row, i: int, images: Images) -> Row | None:
    if "sent1" in row:  # the -hf layout
        options = [str(row[f"ending{k}"]) for k in range(4)]
        return {
            "id": row.get("id") or i,
            "question": row["sent1"],
            "options": options,
            "answer": LETTERS[int(row["label"])],
        }
    opts = row["options"]
    options = [str(opts[k]) for k in sorted(opts)] if isinstance(opts, Mapping) else [str(o) for o in opts]
    return {
        "id": row.get("id") or i,
        "question": row["question"],
        "options": options,
        "answer": _letter_answer(options, row.get("answer"), row.get("answer_idx")),
        "subgroup": row.get("meta_info") or None,
    }


def _medmcqa(row: Row, i: int, images: Images) -> Row | None:
    cop = row.get("cop")
    if cop is None or int(cop) not in range(4):
        raise ValueError(
            f"cop {cop!r} is not 0-3 (MedMCQA's test answers are not public: use --split validation)"
        )
    return {
        "id": row.get("id") or i,
        "question": row["question"],
        "options": [str(row[k]) for k in ("opa", "opb", "opc", "opd")],
        "answer": LETTERS[int(cop)],
        "subgroup": row.get("subject_name") or None,
    }


def _pubmedqa(row: Row, i: int, images: Images) -> Row | None:
    ctx = row.get("context") or {}
    contexts = ctx.get("contexts", []) if isinstance(ctx, Mapping) else list(ctx)
    return {
        "id": row.get("pubid") or i,
        "question": "Abstract: {}\nQuestion: {}".format("\n".join(contexts), row["question"]),
        "options": ["yes", "no", "maybe"],
        "answer": row["final_decision"],
    }


def _mmlu(row: Row, i: int, images: Images) -> Row | None:
    subject = row.get("subject")
    if subject and subject not in MMLU_MED:
        return None
    return {
        "id": i,
        "question": row["question"],
        "options": [str(c) for c in row["choices"]],
        "answer": LETTERS[int(row["answer"])],
        "subgroup": subject or None,
    }


def _slake(row: Row, i: int, images: Images) -> Row | None:
    if row.get("q_lang", "en") != "en":
        return None
    return {
        "id": row.get("qid", i),
        "input": [str(images.path(row["img_name"], images.base))],
        "question": row["question"],
        "answer": str(row["answer"]),
        "answer_type": row.get("answer_type"),
        "subgroup": row.get("answer_type") or None,
    }


def _vqa_rad(row: Row, i: int, images: Images) -> Row | None:
    return {
        "id": i,
        "input": [str(images.path(row["image"], images.base))],
        "question": row["question"],
        "answer": str(row["answer"]),
    }


ADAPTERS: dict[str, Adapter] = {
    a.name: a
    for a in (
        Adapter("medqa", "MedQA", "text-qa", "text", (("question", "options"), ("sent1", "label")), _medqa),
        Adapter(
            "medmcqa",
            "MedMCQA",
            "text-qa",
            "text",
            (("question", "opa", "opb", "opc", "opd", "cop"),),
            _medmcqa,
            split="validation",
        ),
        Adapter(
            "pubmedqa",
            "PubMedQA",
            "text-qa",
            "text",
            (("question", "context", "final_decision"),),
            _pubmedqa,
            split="train",  # pqa_labeled ships one split
        ),
        Adapter("mmlu-med", None, "text-qa", "text", (("question", "choices", "answer"),), _mmlu),
        Adapter("slake", "SLAKE", "vqa", "open", (("img_name", "question", "answer"),), _slake),
        Adapter("vqa-rad", "VQA-RAD", "vqa", "open", (("image", "question", "answer"),), _vqa_rad),
    )
}


def get_adapter(name: str) -> Adapter:
    key = name.strip().lower()
    if key not in ADAPTERS:
        raise ConfigError(f"no adapter for {name!r}; known: {', '.join(ADAPTERS)}")
    return ADAPTERS[key]


def adapter_for_benchmark(benchmark: str | None) -> Adapter | None:
    """The adapter whose name or published benchmark is ``benchmark`` (case-insensitive)."""
    if not benchmark:
        return None
    key = benchmark.strip().lower()
    return next((a for a in ADAPTERS.values() if key in (a.name, (a.benchmark or "").lower())), None)


def load_adapted(
    path: Path, adapter: Adapter, *, split: str | None = None, image_dir: Path
) -> tuple[list[EvalItem], dict[str, int]]:
    """The benchmark's rows as items, and counts of what was read and left out."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such dataset")
    rows = read_rows(path, split, adapter.split)
    if rows:
        have = set(rows[0])
        if not any(set(layout) <= have for layout in adapter.columns):
            want = " or ".join("{" + ", ".join(layout) + "}" for layout in adapter.columns)
            raise InputError(
                path,
                f"not the {adapter.name} layout: needs columns {want}, has {', '.join(sorted(have))} "
                "(a dataset in Aris's own layout takes --layout aris)",
            )
    base = path if path.is_dir() else path.parent
    images = Images(base, image_dir)
    out: list[Row] = []
    skipped = 0
    for i, row in enumerate(rows, 1):
        try:
            converted = adapter.convert(row, i, images)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise InputError(
                path,
                f"row {i}: not a {adapter.name} row ({type(e).__name__}: {e}); "
                "a dataset in Aris's own layout takes --layout aris",
            ) from None
        if converted is None:
            skipped += 1
        else:
            out.append(converted)
    return items_from_rows(out, path, base), {"rows": len(rows), "left_out": skipped}


__all__ = ["ADAPTERS", "MMLU_MED", "Adapter", "adapter_for_benchmark", "get_adapter", "load_adapted"]
