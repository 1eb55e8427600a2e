"""Per-task evaluation protocols: which Aris task runs an item, with which options, how the prediction
is read from its Result, and which metrics score it (MedGemma's evaluation, ../MEDGEMMA.md).

Every protocol keeps the paper's settings: greedy decoding, no system prompt, thinking only where the
paper used it (text multiple choice), and the exact suffixes, which the tasks themselves append.

Where the paper parses a "Final Answer: X" (text-qa, vqa, ct, mri), the prediction is read from the
model's FIRST reply with the task layer's own parsers (:mod:`aris.tasks.parsing`): the repair a task
may ask for when a reply does not validate is an Aris convenience the paper's protocol did not have,
so it never changes a score there. The structured tasks (classify, cxr-compare, cxr-localize, wsi,
lab-extract) are scored on the task's validated output, which may come from its one repair; the run
record counts repaired items either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from aris.batch.manifest import WorkItem
from aris.errors import ConfigError, InputError, OutputError
from aris.eval import metrics as M
from aris.eval.datasets import EvalItem
from aris.result import Result
from aris.tasks.parsing import final_answer, match_option, norm
from aris.tasks.yesno import read_yes_no

YES_NO = ("yes", "no")
YES_NO_ALIASES = {"yes": ("true", "present", "1"), "no": ("false", "absent", "0")}


@dataclass
class Scored:
    """One item's prediction next to its reference, with what the metrics aggregate."""

    id: str
    prediction: Any
    reference: Any
    score: float | None = None  # the item's own score: correct (1/0), token F1, IoU, ROUGE-L, doc F1
    subgroup: str | None = None
    condition: str | None = None  # the yes/no finding, for macro F1 over conditions
    counts: tuple[int, int, int] = (0, 0, 0)  # lab extraction (tp, fp, fn) of the document


MetricFn = Callable[[Sequence[Scored]], float]


def first_reply(result: Result | Mapping[str, Any]) -> str:
    """The model's first answer (thought removed), before any repair the task asked for."""
    data = _as_dict(result)
    steps = data.get("steps") or []
    if steps and steps[0].get("text") is not None:
        return str(steps[0]["text"])
    return str(data.get("text") or "")


def _as_dict(result: Result | Mapping[str, Any]) -> Mapping[str, Any]:
    return result.model_dump(mode="json") if isinstance(result, Result) else result


def _parsed(result: Result | Mapping[str, Any]) -> Any:
    return _as_dict(result).get("parsed")


def yes_no(text: str | None) -> str | None:
    """``yes``/``no`` for an answer or a reference ("Yes.", "present", "false", "1"), else None.

    Read by the tasks' yes/no reader (:mod:`aris.tasks.yesno`): "not present" is no; a hedge or a
    contradiction is None, which scores as no prediction (wrong), never as yes or no.
    """
    if text is None:
        return None
    key = str(text).strip().strip(".").strip()  # "1." is 1; "yes?" is not "yes" (a hedge)
    for value, aliases in YES_NO_ALIASES.items():
        if key.lower() == value or key.lower() in aliases:
            return value
    return read_yes_no(str(text)).value


def _nan_safe(fn: Callable[[], float]) -> float:
    try:
        value = fn()
    except ValueError:  # e.g. a bootstrap resample with one class only
        return float("nan")
    return value if not math.isnan(value) else float("nan")


def _keys(items: Sequence[Scored]) -> tuple[list[str], list[str]]:
    return [str(s.prediction or "") for s in items], [str(s.reference) for s in items]


def accuracy_of(items: Sequence[Scored]) -> float:
    return M.accuracy(*_keys(items)) if items else float("nan")


def mean_score(items: Sequence[Scored]) -> float:
    scores = [s.score for s in items if s.score is not None]
    return float(sum(scores) / len(scores)) if scores else float("nan")


class Protocol:
    """How one task's items are run and scored. Built from the dataset (references are checked first,
    so a bad row fails before any model loads)."""

    task: ClassVar[str]
    mode: str = "default"
    prediction_rule: ClassVar[str]
    normalization: str = "answers lower-cased and trimmed"

    def __init__(self, items: list[EvalItem], dataset: Path, think: bool | None = None) -> None:
        self.dataset = dataset
        self.think = think
        self.refs: dict[str, Any] = {}
        self.setup(items)
        for it in items:
            self.refs[it.id] = self.reference(it)

    # -- per protocol ----------------------------------------------------------------------------------
    def setup(self, items: list[EvalItem]) -> None:
        """Look at the whole dataset once (e.g. whether a VQA set is yes/no classification)."""

    def reference(self, item: EvalItem) -> Any:
        return str(item.answer).strip()

    def task_options(self, item: EvalItem) -> dict[str, Any]:
        return {}

    def question(self, item: EvalItem) -> str | None:
        return item.question

    def prediction(self, result: Result | Mapping[str, Any], item: EvalItem) -> Any:
        raise NotImplementedError

    def item_score(self, prediction: Any, reference: Any, item: EvalItem) -> float:
        return float(prediction is not None and str(prediction) == str(reference))

    def metrics(self) -> dict[str, MetricFn]:
        return {"accuracy": accuracy_of}

    def suffix(self) -> str | None:
        return None

    def metric_n(self, metric: str, items: Sequence[Scored]) -> int:
        """How many items a metric is computed on (closed accuracy counts only yes/no references)."""
        return len(items)

    # -- shared ----------------------------------------------------------------------------------------
    def bad_row(self, item: EvalItem, problem: str) -> InputError:
        return InputError(self.dataset, f"row {item.id}: {problem}")

    def work_item(self, item: EvalItem) -> WorkItem:
        """The batch item for a dataset row (its content key makes a rerun reuse its result)."""
        options = self.task_options(item)
        if self.think is not None:
            options["think"] = self.think
        return WorkItem(
            paths=tuple(item.inputs),
            question=self.question(item),
            kind=str(item.extra.get("kind") or "auto"),
            task_options=options,
        )

    def score(self, item: EvalItem, result: Result | Mapping[str, Any] | None) -> Scored:
        """The scored item; a result whose answer cannot be read scores as wrong (prediction None)."""
        ref = self.refs[item.id] if item.id in self.refs else self.reference(item)
        pred = self.prediction(result, item) if result is not None else None
        s = Scored(
            item.id,
            pred,
            ref,
            subgroup=item.subgroup,
            condition=str(item.extra.get("condition") or item.question or ""),
        )
        self.fill(s, item)
        return s

    def fill(self, s: Scored, item: EvalItem) -> None:
        s.score = self.item_score(s.prediction, s.reference, item)

    def record(self) -> dict[str, Any]:
        """What the run record says about the protocol (it becomes part of the report)."""
        from aris.tasks import get_task

        task = get_task(self.task)
        return {
            "task": self.task,
            "mode": self.mode,
            "decoding": "greedy (temperature 0)",
            "system_prompt": "none",
            "think": self.think if self.think is not None else task.think,
            "suffix": self.suffix(),
            "prediction": self.prediction_rule,
            "normalization": self.normalization,
            "metrics": list(self.metrics()),
        }


# -- text multiple choice ------------------------------------------------------------------------------


def _options(value: Any) -> list[str]:
    """A row's options: a JSON list, a JSON object {"A": ..., "B": ...} (letter order), or a|b|c."""
    if value in (None, ""):
        return []
    if isinstance(value, Mapping):
        return [str(value[k]) for k in sorted(value)]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [s.strip() for s in str(value).split("|") if s.strip()]


class TextQaProtocol(Protocol):
    task = "text-qa"
    prediction_rule = (
        'first reply: the text after the last "Final Answer:" mapped to one option (letter, "(B) text" '
        "or the option's words); no Final Answer or no single option scores wrong"
    )
    normalization = (
        "multiple choice: option letters compared; open: lower-cased, punctuation and a/an/the removed"
    )

    def suffix(self) -> str | None:
        from aris.tasks.qa import FINAL_ANSWER_SUFFIX

        return FINAL_ANSWER_SUFFIX

    def setup(self, items: list[EvalItem]) -> None:
        mcq = sum(1 for it in items if self.choices(it))
        self.mode = "multiple choice" if mcq == len(items) else "open" if mcq == 0 else "mixed"

    def choices(self, item: EvalItem) -> list[str]:
        return _options(item.extra.get("options"))

    def reference(self, item: EvalItem) -> Any:
        if not item.question:
            raise self.bad_row(item, "text-qa needs a question")
        options = self.choices(item)
        if not options:
            return " ".join(M.normalize_answer(str(item.answer)))
        opt = match_option(str(item.answer), options)
        if opt is None:
            raise self.bad_row(item, f"answer {item.answer!r} is not one of its options (or their letters)")
        return chr(ord("A") + options.index(opt))

    def task_options(self, item: EvalItem) -> dict[str, Any]:
        options = self.choices(item)
        return {"choices": options} if options else {}

    def prediction(self, result: Result | Mapping[str, Any], item: EvalItem) -> Any:
        fa = final_answer(first_reply(result))
        if fa is None:
            return None
        options = self.choices(item)
        if not options:
            return " ".join(M.normalize_answer(fa))
        opt = match_option(fa, options)
        return None if opt is None else chr(ord("A") + options.index(opt))


# -- yes/no classification and VQA -------------------------------------------------------------------


def macro_f1_conditions(items: Sequence[Scored]) -> float:
    rows = [(s.condition or "", str(s.prediction or ""), str(s.reference)) for s in items]
    return M.macro_f1_over_conditions(rows) if rows else float("nan")


class _BinaryMixin(Protocol):
    normalization = (
        'yes/no read from "Final Answer: yes|no" (present/true count as yes, absent/false as no); '
        "F1 per condition with yes as positive, averaged over conditions"
    )

    def binary_metrics(self) -> dict[str, MetricFn]:
        return {"macro_f1": macro_f1_conditions, "accuracy": accuracy_of}


class VqaProtocol(_BinaryMixin):
    task = "vqa"
    prediction_rule = 'first reply: the text after the last "Final Answer:"; none scores 0'

    def setup(self, items: list[EvalItem]) -> None:
        # A set whose every answer is yes/no is binary classification (MIMIC-CXR style: the binary
        # suffix and macro F1 over conditions); any open answer makes it VQA (SLAKE, VQA-RAD).
        binary = bool(items) and all(yes_no(str(it.answer)) is not None for it in items)
        self.mode = "binary" if binary else "open"
        if not binary:
            self.normalization = (
                "tokenized F1: lower-cased, punctuation removed (split into spaces), articles a/an/the "
                "dropped, whitespace tokens, bag-of-tokens overlap F1 (SQuAD-style); closed accuracy: "
                "exact match of the normalized answer on items whose reference is yes or no"
            )

    def reference(self, item: EvalItem) -> Any:
        if not item.question:
            raise self.bad_row(item, "vqa needs a question")
        return yes_no(str(item.answer)) if self.mode == "binary" else str(item.answer).strip()

    def suffix(self) -> str | None:
        from aris.tasks.qa import FINAL_ANSWER_SUFFIX
        from aris.tasks.volume import BINARY_SUFFIX

        return BINARY_SUFFIX if self.mode == "binary" else FINAL_ANSWER_SUFFIX

    def question(self, item: EvalItem) -> str | None:
        # binary: "{image} {question} You MUST end ..." as evaluated; open: the task adds its suffix
        q = (item.question or "").strip()
        return f"{q} {self.suffix()}" if self.mode == "binary" else q

    def task_options(self, item: EvalItem) -> dict[str, Any]:
        return {} if self.mode == "binary" else {"final_answer": True}

    def prediction(self, result: Result | Mapping[str, Any], item: EvalItem) -> Any:
        fa = final_answer(first_reply(result))
        return yes_no(fa) if self.mode == "binary" else fa

    def item_score(self, prediction: Any, reference: Any, item: EvalItem) -> float:
        if self.mode == "binary":
            return super().item_score(prediction, reference, item)
        return M.token_f1(str(prediction or ""), str(reference))

    def metric_n(self, metric: str, items: Sequence[Scored]) -> int:
        if metric == "closed_accuracy":
            return sum(1 for s in items if " ".join(M.normalize_answer(str(s.reference))) in YES_NO)
        return len(items)

    def metrics(self) -> dict[str, MetricFn]:
        if self.mode == "binary":
            return self.binary_metrics()
        return {
            "token_f1": lambda items: M.mean_token_f1(*_keys(items)) if items else float("nan"),
            "closed_accuracy": lambda items: M.closed_accuracy(*_keys(items)) if items else float("nan"),
        }


class _VolumeProtocol(_BinaryMixin):
    mode = "binary"
    prediction_rule = (
        'first reply: "Final Answer: yes|no" (the volume task\'s yes/no parser); none scores wrong'
    )

    def setup(self, items: list[EvalItem]) -> None:
        for it in items:
            if not it.question:
                raise self.bad_row(it, f"{self.task} needs a question naming the finding")

    def reference(self, item: EvalItem) -> Any:
        ref = yes_no(str(item.answer))
        if ref is None:
            raise self.bad_row(item, f"{self.task} answers are yes or no, not {item.answer!r}")
        return ref

    def suffix(self) -> str | None:
        from aris.tasks.volume import BINARY_SUFFIX

        return BINARY_SUFFIX

    def task_options(self, item: EvalItem) -> dict[str, Any]:
        return {"yes_no": True}

    def prediction(self, result: Result | Mapping[str, Any], item: EvalItem) -> Any:
        from aris.tasks.volume import parse_yes_no

        try:
            return parse_yes_no(first_reply(result))
        except OutputError:
            return None

    def metrics(self) -> dict[str, MetricFn]:
        return self.binary_metrics()


class CtProtocol(_VolumeProtocol):
    task = "ct"


class MriProtocol(_VolumeProtocol):
    task = "mri"


# -- structured tasks ----------------------------------------------------------------------------------


def classes_macro_f1(items: Sequence[Scored]) -> float:
    """Macro F1 over the classes that occur (in references or answers); a missing answer is a miss
    for its true class, not a class of its own."""
    if not items:
        return float("nan")
    preds, refs = _keys(items)
    labels = sorted(set(refs) | {p for p in preds if p})
    return M.macro_f1(preds, refs, labels=labels)


def _classify_choices(raw: Any) -> list[str] | str | None:
    """A list (JSON or a|b|c) as options; any other text as the task reads it (a built-in set name,
    or options separated by commas)."""
    if raw in (None, ""):
        return None
    if isinstance(raw, str) and "|" not in raw:
        return raw.strip()
    return _options(raw)


class ClassifyProtocol(Protocol):
    task = "classify"
    prediction_rule = "the task's validated option (constrained decoding, letters/aliases mapped; one repair)"
    normalization = "references mapped to exactly one option (its text, letter or a built-in alias)"

    def setup(self, items: list[EvalItem]) -> None:
        from aris.tasks import get_task

        self._task = get_task("classify")

    def _options(self, item: EvalItem) -> tuple[list[str], dict[str, tuple[str, ...]]]:
        """The row's options as the task resolves them, and the aliases of a built-in set."""
        from aris.tasks.classify import CHOICE_SETS, choice_set

        given = _classify_choices(item.extra.get("choices"))
        try:
            o = self._task.opts({"choices": given} if given else {})
        except ConfigError as e:
            raise self.bad_row(item, str(e)) from None
        cs = choice_set(o.choice_set) if o.choice_set else None
        cs = cs or next((c for c in CHOICE_SETS.values() if list(c.options) == list(o.choices)), None)
        return list(o.choices), (dict(cs.aliases) if cs else {})

    def reference(self, item: EvalItem) -> Any:
        options, aliases = self._options(item)
        opt = match_option(str(item.answer), options, aliases=aliases)
        if opt is None:
            raise self.bad_row(item, f"answer {item.answer!r} is not one of: {', '.join(options)}")
        return opt

    def task_options(self, item: EvalItem) -> dict[str, Any]:
        given = _classify_choices(item.extra.get("choices"))
        return {"choices": given} if given else {}

    def prediction(self, result: Result | Mapping[str, Any], item: EvalItem) -> Any:
        parsed = _parsed(result)
        return parsed.get("answer") if isinstance(parsed, Mapping) else None

    def metrics(self) -> dict[str, MetricFn]:
        return {"accuracy": accuracy_of, "macro_f1": classes_macro_f1}


class CxrCompareProtocol(Protocol):
    task = "cxr-compare"
    prediction_rule = "the task's validated change for the row's finding (one repair)"
    normalization = "improved/stable/worsened; references may be the word, a synonym or A/B/C"

    def finding(self, item: EvalItem) -> str:
        f = str(item.extra.get("finding") or item.question or "").strip()
        if not f:
            raise self.bad_row(item, "cxr-compare needs a 'finding' column")
        return f

    def reference(self, item: EvalItem) -> Any:
        from aris.tasks.cxr import CHANGE_ALIASES, CHANGES

        self.finding(item)
        if len(item.inputs) != 2:
            raise self.bad_row(item, "cxr-compare takes input 'prior|current' (two images)")
        ref = match_option(str(item.answer), CHANGES, aliases=CHANGE_ALIASES)
        if ref is None:
            raise self.bad_row(item, f"answer {item.answer!r} is not improved, stable or worsened")
        return ref

    def question(self, item: EvalItem) -> str | None:
        return None  # the finding goes in the task's options; the prompt is the recipe's

    def task_options(self, item: EvalItem) -> dict[str, Any]:
        return {"findings": [self.finding(item)]}

    def prediction(self, result: Result | Mapping[str, Any], item: EvalItem) -> Any:
        parsed = _parsed(result)
        if not isinstance(parsed, Mapping):
            return None
        changes = parsed.get("changes") or {}
        want = norm(self.finding(item))
        return next((v for k, v in changes.items() if norm(k) == want), None)

    def metrics(self) -> dict[str, MetricFn]:
        def macro_accuracy(items: Sequence[Scored]) -> float:
            return M.macro_accuracy(*_keys(items)) if items else float("nan")

        return {"macro_accuracy": macro_accuracy, "accuracy": accuracy_of}


class LocalizeProtocol(Protocol):
    task = "cxr-localize"
    prediction_rule = (
        "the task's validated box for the row's label (else the reply's first box), mapped back to "
        "original pixels [y0, x0, y1, x1]; no box scores IoU 0"
    )
    normalization = "IoU in ORIGINAL image pixels (padding removed), boxes [y0, x0, y1, x1]"

    def label(self, item: EvalItem) -> str:
        lbl = str(item.extra.get("label") or "").strip()
        if not lbl:
            raise self.bad_row(item, "cxr-localize needs a 'label' column (the anatomy or finding)")
        return lbl

    def reference(self, item: EvalItem) -> Any:
        self.label(item)
        box = item.answer
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box)):
            raise self.bad_row(item, f"answer must be a JSON box [y0, x0, y1, x1] in pixels, not {box!r}")
        return [float(v) for v in box]

    def question(self, item: EvalItem) -> str | None:
        return None

    def task_options(self, item: EvalItem) -> dict[str, Any]:
        return {"labels": [self.label(item)]}

    def prediction(self, result: Result | Mapping[str, Any], item: EvalItem) -> Any:
        parsed = _parsed(result)
        boxes = parsed.get("boxes") if isinstance(parsed, Mapping) else None
        if not boxes:
            return None
        want = norm(self.label(item))
        box = next((b for b in boxes if norm(str(b.get("label", ""))) == want), boxes[0])
        px = box["box_px"]
        return [px["y0"], px["x0"], px["y1"], px["x1"]]

    def item_score(self, prediction: Any, reference: Any, item: EvalItem) -> float:
        return M.iou(prediction, reference) if prediction is not None else 0.0

    def metrics(self) -> dict[str, MetricFn]:
        return {"mean_iou": mean_score}


class WsiProtocol(Protocol):
    task = "wsi"
    prediction_rule = "the task's description (the reply, thought removed)"
    normalization = "ROUGE-L F-measure (rouge-score, Porter stemming, its default tokenizer)"

    def task_options(self, item: EvalItem) -> dict[str, Any]:
        return {k: str(item.extra[k]) for k in ("organ", "procedure") if item.extra.get(k)}

    def prediction(self, result: Result | Mapping[str, Any], item: EvalItem) -> Any:
        parsed = _parsed(result)
        return parsed.get("description") if isinstance(parsed, Mapping) else None

    def item_score(self, prediction: Any, reference: Any, item: EvalItem) -> float:
        return M.rouge_l([str(prediction or "")], [str(reference)])

    def metrics(self) -> dict[str, MetricFn]:
        return {"rouge_l": mean_score}


def _lab_metric(kind: str, what: str) -> MetricFn:
    def fn(items: Sequence[Scored]) -> float:
        score = M.lab_scores_from_counts([s.counts for s in items])[kind]
        return float(getattr(score, what))

    return fn


class LabProtocol(Protocol):
    task = "lab-extract"
    prediction_rule = "the task's validated tests, all pages merged (one repair per page); none = no tests"
    normalization = (
        "tests matched by name (lower-cased, whitespace collapsed), one-to-one; each non-empty field "
        "compared the same way; macro = mean over documents, micro = pooled over fields"
    )

    def reference(self, item: EvalItem) -> Any:
        ref = item.answer
        if not (isinstance(ref, list) and all(isinstance(t, Mapping) for t in ref)):
            raise self.bad_row(
                item, "answer must be a JSON list of tests, or the path of a .json file holding one"
            )
        return ref

    def question(self, item: EvalItem) -> str | None:
        return None

    def prediction(self, result: Result | Mapping[str, Any], item: EvalItem) -> Any:
        parsed = _parsed(result)
        return list(parsed.get("tests") or []) if isinstance(parsed, Mapping) else None

    def fill(self, s: Scored, item: EvalItem) -> None:
        s.counts = M.lab_field_counts(s.prediction or [], s.reference)
        s.score = M.lab_scores_from_counts([s.counts])["macro"].f1

    def metrics(self) -> dict[str, MetricFn]:
        return {
            f"{kind}_{what}": _lab_metric(kind, what)
            for kind in ("macro", "micro")
            for what in ("f1", "precision", "recall")
        }


PROTOCOLS: dict[str, type[Protocol]] = {
    p.task: p
    for p in (
        TextQaProtocol,
        VqaProtocol,
        CtProtocol,
        MriProtocol,
        ClassifyProtocol,
        CxrCompareProtocol,
        LocalizeProtocol,
        WsiProtocol,
        LabProtocol,
    )
}


def make_protocol(task: str, items: list[EvalItem], dataset: Path, think: bool | None = None) -> Protocol:
    """The protocol for an Aris task name; ``ConfigError`` naming the ones eval knows."""
    cls = PROTOCOLS.get(task)
    if cls is None:
        raise ConfigError(f"eval has no protocol for task {task!r}; choose one of {', '.join(PROTOCOLS)}")
    return cls(items, dataset, think)


__all__ = ["PROTOCOLS", "Protocol", "Scored", "first_reply", "make_protocol", "yes_no"]
