"""Training examples from what users have, prompted exactly as inference prompts them.

Three layouts are read:

* a folder of class folders, ``DATASET/<class>/<item>``: each item (an image, a DICOM file, a series
  folder, a slide, a PDF) is one ``classify`` example whose choices are the class names (sorted) and
  whose answer is its class name, written as the classify prompt asks: ``{"answer": "<class>"}``;
* a ``.csv``, ``.jsonl`` or ``.json`` list (or a saved Hugging Face dataset), in the columns the
  evaluation datasets use: ``input`` (paths, ``|``-separated, relative to the file), ``question``,
  ``answer`` (the exact reply to learn) and task-specific ones (``choices``, ``organ``...), passed
  to the task as options. ``--task ask`` is the plain chat prompt: the inputs, then the question.

Inputs are prepared by :func:`aris.inputs.read` and put into messages by the task's own
``messages()``, both lazily at batch time, so training sees the very pixels and prompt that
serving will (and a 85-slice CT is never held in memory for the whole dataset).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aris.errors import ConfigError, InputError
from aris.inputs.base import PreparedInput
from aris.prompt import Turn, build_turns
from aris.types import Message, TextPart

logger = logging.getLogger(__name__)

# Files in a class folder that are never inputs (notes, manifests a user keeps beside the images).
_NOT_INPUTS = {".txt", ".md", ".json", ".jsonl", ".csv", ".yaml", ".yml", ".toml"}
_HF_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")


@dataclass(frozen=True)
class Example:
    """One training pair: input files, the question, the exact answer text, and task options."""

    inputs: tuple[str, ...]
    question: str | None
    answer: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str | None = None  # the class, for a stratified split

    def to_row(self) -> dict[str, Any]:
        """A ``datasets`` row: plain strings, options as JSON so every row has one schema."""
        return {
            "inputs": list(self.inputs),
            "question": self.question or "",
            "answer": self.answer,
            "options": json.dumps(self.options, sort_keys=True),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Example:
        return cls(tuple(row["inputs"]), row["question"] or None, row["answer"], json.loads(row["options"]))


@dataclass
class TrainingData:
    examples: list[Example]
    root: Path
    classes: list[str] | None = None  # class-folder datasets only


def is_class_folder(path: Path) -> bool:
    return (
        path.is_dir()
        and not any((path / m).exists() for m in _HF_MARKERS)
        and any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())
    )


def load_examples(dataset: Path, task: str, *, question: str | None = None) -> TrainingData:
    """The examples of ``dataset`` (a class folder, a table, or a saved HF dataset)."""
    dataset = Path(dataset).expanduser()
    if not dataset.exists():
        raise InputError(
            dataset, "no such dataset (a folder of class folders, a .csv/.jsonl, or a saved dataset)"
        )
    if is_class_folder(dataset):
        return _class_folder(dataset, task, question)
    return _table(dataset)


def _class_folder(root: Path, task: str, question: str | None) -> TrainingData:
    if task != "classify":
        raise ConfigError(
            f"{root}: a folder of class folders trains the 'classify' task, not {task!r}; "
            "use --task classify, or a .csv/.jsonl with input, question and answer columns"
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise InputError(root, "a classification dataset needs at least two class folders")
    examples = []
    for cls in classes:
        items = sorted(
            p
            for p in (root / cls).iterdir()
            if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() not in _NOT_INPUTS)
        )
        if not items:
            raise InputError(root / cls, "class folder holds no images or studies")
        # The answer is what the classify prompt asks the model to write (and what constrained
        # decoding produces): {"answer": "<class>"} with json.dumps's separators.
        answer = json.dumps({"answer": cls}, ensure_ascii=False)
        examples += [Example((str(p),), question, answer, {"choices": classes}, label=cls) for p in items]
    logger.info("class folder: %d classes, %d examples", len(classes), len(examples))
    return TrainingData(examples, root, classes)


def _table(path: Path) -> TrainingData:
    from aris.eval.datasets import load_dataset

    examples = []
    for item in load_dataset(path):
        answer = item.answer if isinstance(item.answer, str) else json.dumps(item.answer, ensure_ascii=False)
        if not answer.strip():
            raise InputError(path, f"row {item.id} has an empty answer")
        options = {k: v for k, v in item.extra.items() if v not in (None, "")}
        examples.append(Example(tuple(str(p) for p in item.inputs), item.question, answer.strip(), options))
    if not examples:
        raise InputError(path, "the dataset has no rows")
    logger.info("table dataset: %d examples", len(examples))
    return TrainingData(examples, path if path.is_dir() else path.parent)


class Labelled(Protocol):
    @property
    def label(self) -> str | None: ...


L = TypeVar("L", bound=Labelled)


def split(examples: list[L], val_fraction: float, seed: int) -> tuple[list[L], list[L]]:
    """Train/validation split, reproducible from ``seed`` and stratified by class where there are classes.

    Each class gives ``round(n * val_fraction)`` examples (a class of one stays in training); a
    non-empty fraction always holds out at least one example when there are two or more.
    """
    if val_fraction <= 0 or len(examples) < 2:
        return list(examples), []
    rng = random.Random(seed)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        groups[ex.label or ""].append(i)
    val_idx: set[int] = set()
    for label in sorted(groups):
        idx = groups[label]
        rng.shuffle(idx)
        k = min(math.floor(len(idx) * val_fraction + 0.5), len(idx) - 1)
        val_idx.update(idx[:k])
    if not val_idx:
        largest = max(sorted(groups), key=lambda g: len(groups[g]))
        val_idx.add(groups[largest][0])
    train = [ex for i, ex in enumerate(examples) if i not in val_idx]
    val = [ex for i, ex in enumerate(examples) if i in val_idx]
    return train, val


def dataset_digest(data: TrainingData) -> str:
    """sha256 over every example: its input files' bytes (by path relative to the dataset), question,
    answer and options. Moving the dataset keeps the digest; changing one pixel changes it."""
    h = hashlib.sha256()
    cache: dict[str, str] = {}
    for ex in sorted(data.examples, key=lambda e: (e.inputs, e.question or "", e.answer)):
        for p in ex.inputs:
            h.update(os.path.relpath(p, data.root).encode())
            h.update(cache.setdefault(p, _content_hash(Path(p))).encode())
        h.update(json.dumps([ex.question, ex.answer, ex.options], sort_keys=True).encode())
    return h.hexdigest()


def _content_hash(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    if not files:
        raise InputError(path, "input not found or empty")
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        try:
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as e:
            raise InputError(f, f"cannot read: {e.strerror}") from e
    return h.hexdigest()


# -- inputs and prompts -------------------------------------------------------------------------


def read_input(path: str | Path, kind: str = "auto", options: dict[str, Any] | None = None) -> PreparedInput:
    """The model input for one file or folder, from the very reader inference uses."""
    from aris.inputs import read

    prepared: PreparedInput = read(path, kind=kind, **(options or {}))
    return prepared


def _ask(inputs: list[PreparedInput], question: str | None, options: dict[str, Any]) -> list[Message]:
    """The conversation ``aris ask`` and the chat API build: the inputs' parts in order, then the question."""
    if not question:
        raise ConfigError("the 'ask' task needs a question in every row")
    return [Message("user", [*(p for i in inputs for p in i.parts), TextPart(question)])]


class Prompter:
    """Turns an :class:`Example` into the exact Gemma turns the task sends at inference.

    ``ask`` is the plain chat prompt (what ``aris ask`` and an OpenAI-compatible client send);
    every other name is a registered task, whose own ``messages()`` builds the prompt.
    """

    def __init__(self, task: str, *, kind: str = "auto", input_options: dict[str, Any] | None = None) -> None:
        self.task_name = task
        self.kind = kind
        self.input_options = dict(input_options or {})
        self.task: Any = None
        if task != "ask":
            from aris.tasks import get_task

            self.task = get_task(task)
        self.think = bool(getattr(self.task, "think", False))

    def messages(self, example: Example) -> list[Message]:
        inputs = [read_input(p, self.kind, self.input_options) for p in example.inputs]
        if self.task is None:
            return _ask(inputs, example.question, example.options)
        msgs: list[Message] = self.task.messages(inputs, example.question, dict(example.options))
        return msgs

    def turns(self, example: Example) -> list[Turn]:
        # As Task.generation_params decides it: the row's think option, else the task's default.
        think = example.options.get("think")
        return build_turns(self.messages(example), think=self.think if think is None else bool(think))
