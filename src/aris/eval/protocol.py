"""Per-task evaluation protocols: which Aris task runs an item, with which prompt and options, how the
prediction is read from its Result, and which metrics score it.

Two prompt sets (``prompts``):

* ``report`` (the default of ``aris eval``): the MedGemma 1.5 technical report's evaluation prompt for
  the benchmark, verbatim (:mod:`aris.tasks.report_prompts`), no system prompt, greedy, thinking only
  where the report used it, no constrained decoding, and the token budget named in the run record.
  The prediction is read from the model's FIRST reply: the repair a task may ask for is an Aris
  convenience the report's protocol did not have, so a repaired result scores as its failed first
  reply.
* ``app``: the prompts ``aris run`` uses (structured, constrained where the engine can), scored on the
  task's validated output; for measuring Aris's own recipes.

Each protocol has explicit modes (``--mode``); nothing is guessed from the answers. Where the report
is silent (how options enter a question, what counts as a closed question...) the choice is named in
:attr:`Protocol.notes` and lands in the run's report. Protocols are registered in :data:`PROTOCOLS`
(entry-point group ``aris.protocols``), keyed by task name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from aris.batch.manifest import WorkItem
from aris.errors import ConfigError, InputError, OutputError
from aris.eval import metrics as M
from aris.eval.datasets import EvalItem
from aris.registry import Registry
from aris.result import Result
from aris.tasks import report_prompts as R
from aris.tasks.parsing import clean_short, final_answer, match_option, norm
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
    condition: str | None = None  # the yes/no finding (macro F1) or the MS-CXR-T finding (macro accuracy)
    counts: tuple[int, int, int] = (0, 0, 0)  # lab extraction (tp, fp, fn) of the document
    closed: bool = False  # VQA: a closed question (counts in closed accuracy)
    closed_correct: bool = False


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


def _parsed(result: Result | Mapping[str, Any], *, first_only: bool) -> Any:
    """The task's validated output; with ``first_only``, None when it came from a repair."""
    data = _as_dict(result)
    if first_only and data.get("repaired"):
        return None
    return data.get("parsed")


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


_MOST_LIKELY = re.compile(r"most\s+likely\s+diagnosis\s+is\s*\**\s*[:：]?\s*\**", re.IGNORECASE)


def most_likely_choice(
    text: str, options: Sequence[str], aliases: Mapping[str, Any] | None = None
) -> str | None:
    """The option named after the LAST "The most likely diagnosis is:" (DermMCQA/EyePACS), by its
    letter ("B", "(B)", "B: mild DR") or its words; None without the phrase or without one option."""
    marks = list(_MOST_LIKELY.finditer(text))
    if not marks:
        return None
    tail = text[marks[-1].end() :].strip()
    line = next((ln for ln in tail.splitlines() if clean_short(ln)), "")
    return match_option(line, options, aliases=aliases) if line else None


def accuracy_of(items: Sequence[Scored]) -> float:
    return float(sum(s.score or 0.0 for s in items) / len(items)) if items else float("nan")


def mean_score(items: Sequence[Scored]) -> float:
    scores = [s.score for s in items if s.score is not None]
    return float(sum(scores) / len(scores)) if scores else float("nan")


def _keys(items: Sequence[Scored]) -> tuple[list[str], list[str]]:
    return [str(s.prediction or "") for s in items], [str(s.reference) for s in items]


class Protocol:
    """How one task's items are run and scored. Built from the dataset (references are checked first,
    so a bad row fails before any model loads)."""

    task: ClassVar[str]
    modes: ClassVar[dict[str, str]]  # mode -> what it is; the first is the default
    prediction_rule: ClassVar[str] = ""
    normalization: str = "answers lower-cased and trimmed"

    def __init__(
        self,
        items: list[EvalItem],
        dataset: Path,
        think: bool | None = None,
        *,
        prompts: str = "report",
        mode: str | None = None,
    ) -> None:
        if prompts not in ("report", "app"):
            raise ConfigError(f"prompts must be 'report' or 'app', not {prompts!r}")
        self.mode = mode or next(iter(self.modes))
        if self.mode not in self.modes:
            raise ConfigError(
                f"eval protocol {self.task} has no mode {self.mode!r}; choose "
                + ", ".join(f"{m} ({d})" for m, d in self.modes.items())
            )
        self.dataset = dataset
        self.think = think
        self.prompts = prompts
        self.notes: list[str] = []
        self.refs: dict[str, Any] = {}
        self.setup(items)
        for it in items:
            self.refs[it.id] = self.reference(it)

    @property
    def report(self) -> bool:
        return self.prompts == "report"

    # -- per protocol ----------------------------------------------------------------------------------
    def setup(self, items: list[EvalItem]) -> None:
        """Look at the whole dataset once (e.g. which column marks closed questions)."""

    def report_prompt(self) -> str | None:
        """The name of the report's template this mode uses (report_prompts), or None if it has none."""
        return None

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

    def metric_n(self, metric: str, items: Sequence[Scored]) -> int:
        """How many items a metric is computed on (closed accuracy counts only closed questions)."""
        return len(items)

    # -- shared ----------------------------------------------------------------------------------------
    def rule(self) -> str:
        """How the prediction is read from a Result (it depends on the prompt set for some tasks)."""
        return self.prediction_rule

    def max_new_tokens(self) -> int | None:
        """The report mode's token budget (None: the task's own)."""
        name = self.report_prompt() if self.report else None
        return R.BUDGETS[name].max_new_tokens if name else None

    def bad_row(self, item: EvalItem, problem: str) -> InputError:
        return InputError(self.dataset, f"row {item.id}: {problem}")

    def work_item(self, item: EvalItem) -> WorkItem:
        """The batch item for a dataset row (its content key makes a rerun reuse its result)."""
        options = self.task_options(item)
        if self.report and self.report_prompt():
            options["prompts"] = "report"
            options["constrain"] = False
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
        s = Scored(item.id, pred, ref, subgroup=item.subgroup, condition=self.condition(item))
        self.fill(s, item)
        return s

    def condition(self, item: EvalItem) -> str:
        return str(item.extra.get("condition") or item.question or "")

    def fill(self, s: Scored, item: EvalItem) -> None:
        s.score = self.item_score(s.prediction, s.reference, item)

    def record(self) -> dict[str, Any]:
        """What the run record says about the protocol (it becomes part of the report)."""
        from aris.tasks import get_task

        task = get_task(self.task)
        name = self.report_prompt() if self.report else None
        out: dict[str, Any] = {
            "task": self.task,
            "mode": self.mode,
            "prompts": self.prompts,
            "decoding": "greedy (temperature 0)" + (", unconstrained" if name else ""),
            "system_prompt": "none",
            "think": self.think if self.think is not None else task.think,
        }
        if name:
            out["report_prompt"] = R.describe(name)
        elif self.report:
            out["report_prompt"] = "the report publishes none for this task: Aris's own prompt is used"
        out.update(
            prediction=self.rule(),
            normalization=self.normalization,
            metrics=list(self.metrics()),
            choices=list(self.notes),
        )
        return out


# -- text questions ------------------------------------------------------------------------------------


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
    modes: ClassVar[dict[str, str]] = {
        "text": "MedQA, MedMCQA, PubMedQA, MMLU-Med...: a row with options is multiple choice, one without is open",
        "ehrnoteqa": "EHRNoteQA: a discharge note ('note' column) and five options",
    }
    prediction_rule = (
        'first reply: the text after the last "Final Answer:" mapped to one option (letter, "(B) text" '
        "or the option's words); no Final Answer or no single option scores wrong"
    )
    normalization = (
        "multiple choice: option letters compared; open: SQuAD normalization (lower-cased, punctuation "
        "deleted, a/an/the dropped), then exact match"
    )

    def setup(self, items: list[EvalItem]) -> None:
        self.notes.append(
            "options enter the report's {{ question }} as one 'A. text' line each after the question "
            "(the report does not show the layout)"
        )

    def report_prompt(self) -> str | None:
        return "EHRNOTEQA" if self.mode == "ehrnoteqa" else "TEXT_MCQ"

    def choices(self, item: EvalItem) -> list[str]:
        return _options(item.extra.get("options"))

    def reference(self, item: EvalItem) -> Any:
        if not item.question:
            raise self.bad_row(item, "text-qa needs a question")
        options = self.choices(item)
        if self.mode == "ehrnoteqa" and (len(options) != 5 or not item.extra.get("note")):
            raise self.bad_row(item, "EHRNoteQA rows need five options and the discharge note ('note')")
        if not options:
            return " ".join(M.normalize_answer(str(item.answer)))
        opt = match_option(str(item.answer), options)
        if opt is None:
            raise self.bad_row(item, f"answer {item.answer!r} is not one of its options (or their letters)")
        return chr(ord("A") + options.index(opt))

    def task_options(self, item: EvalItem) -> dict[str, Any]:
        options = self.choices(item)
        out: dict[str, Any] = {"choices": options} if options else {}
        if self.mode == "ehrnoteqa":
            out.update(report_form="ehrnoteqa", note=str(item.extra.get("note")))
        return out

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
    rows = [(s.condition or "", s.prediction, str(s.reference)) for s in items]
    return M.macro_f1_over_conditions(rows) if rows else float("nan")


BINARY_NORMALIZATION = (
    'yes/no read from "Final Answer: yes|no" with the project\'s yes/no reader; F1 per condition with '
    "yes as positive, averaged over conditions; an unreadable answer is wrong (a false negative on a "
    "yes reference, a false positive on a no reference); a condition with no positive reference and "
    "every answer a correct no scores F1 = 1 (zero_division=1), not 0"
)


def _closed_accuracy(items: Sequence[Scored]) -> float:
    closed = [s for s in items if s.closed]
    return float(sum(s.closed_correct for s in closed) / len(closed)) if closed else float("nan")


class VqaProtocol(Protocol):
    task = "vqa"
    modes: ClassVar[dict[str, str]] = {
        "open": "SLAKE, VQA-RAD: token F1 over all items and accuracy on the closed questions",
        "yes-no": "MIMIC-CXR/CheXpert/CXR14-style yes/no findings: macro F1 over conditions",
    }
    prediction_rule = 'first reply: the text after the last "Final Answer:"; none scores 0 (wrong)'

    def setup(self, items: list[EvalItem]) -> None:
        if self.mode == "yes-no":
            self.normalization = BINARY_NORMALIZATION
            return
        # SLAKE marks each question OPEN or CLOSED; a dataset that does not (VQA-RAD) counts its
        # yes/no references as the closed questions.
        self.by_type = bool(items) and all(it.extra.get("answer_type") for it in items)
        closed_rule = (
            "the dataset's answer_type CLOSED" if self.by_type else "questions whose reference is yes or no"
        )
        self.normalization = (
            "token F1: SQuAD normalization (lower-cased, punctuation deleted, a/an/the dropped), "
            "bag-of-tokens overlap F1 over every item; closed accuracy over " + closed_rule + ": a yes/no "
            "reference is compared with the yes/no reading of the answer (unreadable = wrong), any other "
            "with the exact SQuAD-normalized answer"
        )
        self.notes.append(f"closed questions: {closed_rule}")

    def report_prompt(self) -> str | None:
        return "CXR_YES_NO" if self.mode == "yes-no" else "VQA"

    def is_closed(self, item: EvalItem) -> bool:
        if self.by_type:
            return str(item.extra.get("answer_type")).strip().upper() == "CLOSED"
        return yes_no(str(item.answer)) is not None

    def reference(self, item: EvalItem) -> Any:
        if not item.question:
            raise self.bad_row(item, "vqa needs a question")
        if self.mode == "yes-no":
            ref = yes_no(str(item.answer))
            if ref is None:
                raise self.bad_row(item, f"--mode yes-no takes yes/no answers, not {item.answer!r}")
            return ref
        return str(item.answer).strip()

    def task_options(self, item: EvalItem) -> dict[str, Any]:
        if self.report:
            return {"report_form": "cxr-yes-no" if self.mode == "yes-no" else "vqa"}
        return {"final_answer": True}

    def prediction(self, result: Result | Mapping[str, Any], item: EvalItem) -> Any:
        fa = final_answer(first_reply(result))
        return yes_no(fa) if self.mode == "yes-no" else fa

    def fill(self, s: Scored, item: EvalItem) -> None:
        if self.mode == "yes-no":
            s.score = float(s.prediction is not None and s.prediction == s.reference)
            return
        pred, ref = str(s.prediction or ""), str(s.reference)
        s.score = M.token_f1(pred, ref) if s.prediction is not None else 0.0
        s.closed = self.is_closed(item)
        if s.closed:
            ref_yn = yes_no(ref)
            if ref_yn is not None:
                s.closed_correct = s.prediction is not None and yes_no(pred) == ref_yn
            else:
                s.closed_correct = s.prediction is not None and M.exact_normalized(pred, ref)

    def metric_n(self, metric: str, items: Sequence[Scored]) -> int:
        return sum(1 for s in items if s.closed) if metric == "closed_accuracy" else len(items)

    def metrics(self) -> dict[str, MetricFn]:
        if self.mode == "yes-no":
            return {"macro_f1": macro_f1_conditions, "accuracy": accuracy_of}
        return {"token_f1": mean_score, "closed_accuracy": _closed_accuracy}


class _VolumeProtocol(Protocol):
    normalization = BINARY_NORMALIZATION
    prediction_rule = 'first reply: "Final Answer: yes|no" (the volume task\'s yes/no parser); none is wrong'

    def setup(self, items: list[EvalItem]) -> None:
        missing = 0
        for it in items:
            if not self.label(it):
                raise self.bad_row(it, f"{self.task} needs the finding: a 'label' column or a question")
            missing += not str(it.extra.get("history") or "").strip()
        if self.report and self.mode != "ct-rate":
            self.notes.append(
                f"{missing} of {len(items)} rows have no 'history': their prompt quotes an empty history"
            )
        if self.report:
            self.notes.append("the slices keep their 'SLICE n' labels (the CT/MRI input recipe)")

    def label(self, item: EvalItem) -> str:
        return str(item.extra.get("label") or item.question or "").strip()

    def condition(self, item: EvalItem) -> str:
        return str(item.extra.get("condition") or self.label(item))

    def reference(self, item: EvalItem) -> Any:
        ref = yes_no(str(item.answer))
        if ref is None:
            raise self.bad_row(item, f"{self.task} answers are yes or no, not {item.answer!r}")
        return ref

    def report_prompt(self) -> str | None:
        return {"ct-us1": "CT_US1", "ct-rate": "CT_RATE", "mri-us1": "MRI_US1"}[self.mode]

    def question(self, item: EvalItem) -> str | None:
        return self.label(item) if self.report else item.question

    def task_options(self, item: EvalItem) -> dict[str, Any]:
        out: dict[str, Any] = {"yes_no": True}
        if self.report:
            out["report_form"] = self.mode
            history = str(item.extra.get("history") or "").strip()
            if history:
                out["history"] = history
        return out

    def prediction(self, result: Result | Mapping[str, Any], item: EvalItem) -> Any:
        from aris.tasks.volume import parse_yes_no

        # The same reading as the task's: with the finding named, only what the reply says about it counts.
        finding = str(item.extra.get("label") or item.extra.get("condition") or "").strip() or None
        try:
            return parse_yes_no(first_reply(result), finding)
        except OutputError:
            return None

    def metrics(self) -> dict[str, MetricFn]:
        return {"macro_f1": macro_f1_conditions, "accuracy": accuracy_of}


class CtProtocol(_VolumeProtocol):
    task = "ct"
    modes: ClassVar[dict[str, str]] = {
        "ct-us1": "CT-US1's prompt: indication and history ('history' column), then the finding",
        "ct-rate": "CT-RATE's prompt: an expert chest CT radiologist, is there <finding>?",
    }


class MriProtocol(_VolumeProtocol):
    task = "mri"
    modes: ClassVar[dict[str, str]] = {
        "mri-us1": "MRI-US1's prompt: history ('history' column), then the finding"
    }


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
    modes: ClassVar[dict[str, str]] = {
        "derm": "DermMCQA's prompt: the question, its lettered options, 'The most likely diagnosis is:'",
        "eyepacs": "EyePACS's fixed prompt: five DR stages A-E, 'The most likely diagnosis is:'",
    }
    normalization = "references mapped to exactly one option (its text, letter or a built-in alias)"

    def rule(self) -> str:
        if self.report:
            return (
                'first reply: the option after the last "The most likely diagnosis is:" (its letter or '
                "its words); no phrase or no single option is wrong"
            )
        return "the task's validated option (constrained decoding, letters/aliases mapped; one repair)"

    def setup(self, items: list[EvalItem]) -> None:
        from aris.tasks import get_task

        self._task = get_task("classify")
        if self.report and self.mode == "derm":
            self.notes.append(
                "DermMCQA's {{ question }} lists its options inline as 'A: text B: text' (as EyePACS's row "
                "does; the report does not show DermMCQA's layout)"
            )

    def report_prompt(self) -> str | None:
        return "EYEPACS" if self.mode == "eyepacs" else "DERM"

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
        if self.report and self.mode == "eyepacs" and len(options) != len(R.EYEPACS_OPTIONS):
            raise self.bad_row(item, "the EyePACS prompt has five stages: give five choices in A-E order")
        opt = match_option(str(item.answer), options, aliases=aliases)
        if opt is None:
            raise self.bad_row(item, f"answer {item.answer!r} is not one of: {', '.join(options)}")
        return opt

    def task_options(self, item: EvalItem) -> dict[str, Any]:
        given = _classify_choices(item.extra.get("choices"))
        out: dict[str, Any] = {"choices": given} if given else {}
        if self.report:
            out["report_form"] = self.mode
        return out

    def prediction(self, result: Result | Mapping[str, Any], item: EvalItem) -> Any:
        if self.report:
            options, aliases = self._options(item)
            return most_likely_choice(first_reply(result), options, aliases)
        parsed = _parsed(result, first_only=False)
        return parsed.get("answer") if isinstance(parsed, Mapping) else None

    def metrics(self) -> dict[str, MetricFn]:
        return {"accuracy": accuracy_of, "macro_f1": classes_macro_f1}


def _macro_accuracy(items: Sequence[Scored]) -> float:
    rows = [(s.condition or "", s.prediction, str(s.reference)) for s in items]
    return M.macro_accuracy_by_finding(rows) if rows else float("nan")


class CxrCompareProtocol(Protocol):
    task = "cxr-compare"
    modes: ClassVar[dict[str, str]] = {"ms-cxr-t": "MS-CXR-T: improved/stable/worsened per finding"}
    prediction_rule = "the task's validated change for the row's finding (one repair)"
    normalization = (
        "improved/stable/worsened; references may be the word, a synonym or A/B/C; macro accuracy: per "
        "finding the mean of the three classes' accuracies (balanced accuracy), then the mean over findings"
    )

    def setup(self, items: list[EvalItem]) -> None:
        if self.report:
            self.notes.append("the report publishes no MS-CXR-T prompt: Aris's comparison prompt is used")

    def finding(self, item: EvalItem) -> str:
        f = str(item.extra.get("finding") or item.question or "").strip()
        if not f:
            raise self.bad_row(item, "cxr-compare needs a 'finding' column")
        return f

    def condition(self, item: EvalItem) -> str:
        return norm(self.finding(item))

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
        parsed = _parsed(result, first_only=False)
        if not isinstance(parsed, Mapping):
            return None
        changes = parsed.get("changes") or {}
        want = norm(self.finding(item))
        return next((v for k, v in changes.items() if norm(k) == want), None)

    def metrics(self) -> dict[str, MetricFn]:
        return {"macro_accuracy": _macro_accuracy, "accuracy": accuracy_of}


class LocalizeProtocol(Protocol):
    task = "cxr-localize"
    modes: ClassVar[dict[str, str]] = {"imagenome": "Chest ImaGenome: one anatomy/finding box per row"}
    normalization = "IoU in ORIGINAL image pixels (padding removed), boxes [y0, x0, y1, x1]"

    def rule(self) -> str:
        first = "the first reply's" if self.report else "the task's validated"
        return (
            f"{first} box for the row's label (else the reply's first box), mapped back to original "
            "pixels [y0, x0, y1, x1]; no box scores IoU 0"
        )

    def report_prompt(self) -> str | None:
        return "LOCALIZE"

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
        parsed = _parsed(result, first_only=self.report)
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
    modes: ClassVar[dict[str, str]] = {"wsi": "a diagnostic text per slide, scored by ROUGE-L"}
    normalization = "ROUGE-L F-measure (rouge-score, Porter stemming, its default tokenizer)"

    def rule(self) -> str:
        return "the first reply (thought removed)" if self.report else "the task's description"

    def report_prompt(self) -> str | None:
        return "WSI"

    def task_options(self, item: EvalItem) -> dict[str, Any]:
        return {k: str(item.extra[k]) for k in ("organ", "procedure", "type_procedure") if item.extra.get(k)}

    def prediction(self, result: Result | Mapping[str, Any], item: EvalItem) -> Any:
        if self.report:
            return first_reply(result).strip() or None
        parsed = _parsed(result, first_only=False)
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
    modes: ClassVar[dict[str, str]] = {"lab": "every test of a report, field-level precision/recall/F1"}
    normalization = (
        "tests matched by name (lower-cased, whitespace collapsed), one-to-one; each non-empty field "
        "compared the same way with numbers in canonical form ('13.50' = '13.5'); macro = mean over "
        "documents, micro = pooled over fields"
    )

    def rule(self) -> str:
        if self.report:
            return (
                "the first reply's tests (one call for the whole report); a reply needing repair = no tests"
            )
        return "the task's validated tests, all pages merged (one repair per page); none = no tests"

    def setup(self, items: list[EvalItem]) -> None:
        if self.report:
            self.notes.append(
                "the report's lab prompt has no image marker: its text goes first, then every page, in one call"
            )

    def report_prompt(self) -> str | None:
        return "LAB"

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
        parsed = _parsed(result, first_only=self.report)
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


PROTOCOLS: Registry[type[Protocol]] = Registry("eval protocol")
PROTOCOLS.register("text-qa", "aris.eval.protocol:TextQaProtocol")
PROTOCOLS.register("vqa", "aris.eval.protocol:VqaProtocol")
PROTOCOLS.register("ct", "aris.eval.protocol:CtProtocol")
PROTOCOLS.register("mri", "aris.eval.protocol:MriProtocol")
PROTOCOLS.register("classify", "aris.eval.protocol:ClassifyProtocol")
PROTOCOLS.register("cxr-compare", "aris.eval.protocol:CxrCompareProtocol")
PROTOCOLS.register("cxr-localize", "aris.eval.protocol:LocalizeProtocol")
PROTOCOLS.register("wsi", "aris.eval.protocol:WsiProtocol")
PROTOCOLS.register("lab-extract", "aris.eval.protocol:LabProtocol")


def make_protocol(
    task: str,
    items: list[EvalItem],
    dataset: Path,
    think: bool | None = None,
    *,
    prompts: str = "report",
    mode: str | None = None,
) -> Protocol:
    """The protocol for an Aris task name; ``ConfigError`` naming the ones eval knows."""
    if task not in PROTOCOLS:
        raise ConfigError(f"eval has no protocol for task {task!r}; choose one of {', '.join(PROTOCOLS)}")
    cls = PROTOCOLS.get(task)
    return cls(items, dataset, think, prompts=prompts, mode=mode)


__all__ = [
    "PROTOCOLS",
    "Protocol",
    "Scored",
    "first_reply",
    "make_protocol",
    "most_likely_choice",
    "yes_no",
]
