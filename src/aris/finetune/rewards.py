"""GRPO rewards from what Aris already knows about a task: how to read a reply and how to score it.

A sampled completion is read exactly as a served reply is (:func:`read_reply`): end-of-turn
markers removed, the thought split off (:mod:`aris.thinking`), the answer given to the task's own
``parse`` (and ``finalize``), then to the task's evaluation protocol (:mod:`aris.eval.protocol`),
the one ``aris eval`` scores with. Two built-in rewards come out of that:

``correct``
    the protocol's per-item score against the reference: 1/0 for multiple choice and
    classification (accuracy), yes/no correctness with the project's yes/no reading (an
    unreadable or hedged reply is wrong), IoU in original pixels for localization boxes, the
    document's field F1 for lab extraction, token F1 for open VQA, ROUGE-L for descriptions.
``format``
    1.0 when the task's parser accepts the reply (it parses and validates against the task's
    schema), else 0.0.

Custom rewards are ``module:function`` names, called once per batch as
``fn(completions, *, references, parsed, thoughts, items, completion_ids, task, **kwargs)``
with the answers (thought removed) as ``completions``; they return one float per completion, or
None where they do not apply (TRL then leaves that completion out of that reward).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aris.errors import ConfigError, OutputError
from aris.eval.datasets import EvalItem
from aris.eval.protocol import Protocol
from aris.inputs.base import PreparedInput
from aris.tasks.base import Task
from aris.tasks.parsing import ParseError
from aris.thinking import split_text

logger = logging.getLogger(__name__)

RewardFn = Callable[..., list[float | None]]


@dataclass
class Reply:
    """One sampled completion, read as Aris reads a served reply, and its scores."""

    raw: str  # decoded, end-of-turn markers removed, thought markers kept
    thought: str
    answer: str  # the reply with the thought removed: what parsers and protocols read
    parsed: Any = None  # the task's finalized output, None when the reply does not parse
    errors: list[str] = field(default_factory=list)
    prediction: Any = None  # what the eval protocol read from the reply (None: unreadable)
    correct: float | None = None  # the protocol's score; None when the task has no protocol

    @property
    def format_ok(self) -> bool:
        return self.parsed is not None


def decode_completion(tokenizer: Any, ids: Sequence[int]) -> str:
    """The completion's text as the transformers engine gives it: special tokens kept (the thought
    markers are special tokens in Gemma's vocabulary), end-of-turn, eos and pad removed."""
    from aris.engines.transformers import clean_reply

    return clean_reply(tokenizer.decode(list(ids), skip_special_tokens=False))


def read_reply(
    text: str,
    task: Task,
    inputs: list[PreparedInput],
    options: Mapping[str, Any],
    *,
    protocol: Protocol | None = None,
    item: EvalItem | None = None,
) -> Reply:
    """Read and score one reply: thought split off, the task's parser, then the protocol's score.

    A reply whose thought is never closed (cut at the token budget) has no answer: it fails the
    parser and scores 0, as ``aris eval`` counts a truncated thought.
    """
    thought, answer = split_text(text)
    reply = Reply(raw=text, thought=thought, answer=answer.strip())
    opts = task.opts(dict(options))
    try:
        value = task.parse(reply.answer, inputs, opts)
        reply.parsed = task.finalize(value, inputs, opts, None)
    except OutputError as e:
        reply.errors = e.errors if isinstance(e, ParseError) else [str(e)]
    if protocol is not None and item is not None:
        # The shape of a Result that protocols read: first reply (steps[0]) and the validated output.
        result = {
            "text": reply.answer,
            "thought": reply.thought or None,
            "parsed": reply.parsed,
            "repaired": False,
            "steps": [{"text": reply.answer, "thought": reply.thought or None}],
        }
        scored = protocol.score(item, result)
        reply.prediction = scored.prediction
        reply.correct = float(scored.score or 0.0)
    return reply


def load_custom(spec: str) -> RewardFn:
    """The function named ``module:function``; a ConfigError naming what is wrong."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"reward {spec!r}: expected module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"reward {spec!r}: cannot import {module_name}: {e}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"reward {spec!r}: {module_name} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]


@dataclass
class Sample:
    """What a reward needs about the item a completion answers: its reference and prepared inputs."""

    item: EvalItem
    inputs: list[PreparedInput]
    options: dict[str, Any]
    reference: Any


class RewardSet:
    """The weighted rewards of one run, as TRL reward functions sharing one reading per batch.

    ``sample(row)`` gives the :class:`Sample` a dataset row stands for (the trainer prepares the
    batch's inputs once); ``decode(ids)`` turns completion ids into text.
    """

    def __init__(
        self,
        task: Task,
        protocol: Protocol | None,
        weights: Mapping[str, float],
        *,
        sample: Callable[[int], Sample],
        decode: Callable[[Sequence[int]], str],
    ) -> None:
        if weights.get("correct") and protocol is None:
            raise ConfigError(
                f"task {task.name} has no eval protocol to score answers against a reference; "
                "set the 'correct' reward to 0 and train on 'format' and your own module:function rewards"
            )
        self.task = task
        self.protocol = protocol
        # Without a protocol there is no correctness to log, even at weight 0.
        self.weights = {k: w for k, w in weights.items() if protocol is not None or k != "correct"}
        self.sample = sample
        self.decode = decode
        self.custom = {name: load_custom(name) for name in weights if ":" in name}
        self._last: tuple[Any, list[Reply]] | None = None

    @property
    def names(self) -> list[str]:
        return list(self.weights)

    def replies(self, completion_ids: Sequence[Sequence[int]], rows: Sequence[int]) -> list[Reply]:
        """Every completion read and scored once; the next reward function of the batch reuses it."""
        if self._last is not None and self._last[0] is completion_ids:
            return self._last[1]
        out = []
        for ids, row in zip(completion_ids, rows, strict=True):
            s = self.sample(int(row))
            out.append(
                read_reply(
                    self.decode(ids), self.task, s.inputs, s.options, protocol=self.protocol, item=s.item
                )
            )
        self._last = (completion_ids, out)  # the list object itself: no id reuse across batches
        return out

    def functions(self) -> list[RewardFn]:
        """TRL reward functions, in the order of :attr:`names` (TRL logs each as rewards/<name>)."""
        return [self._function(name) for name in self.weights]

    def _function(self, name: str) -> RewardFn:
        def reward(
            prompts: Any = None,
            completions: Any = None,
            completion_ids: Any = None,
            row: Sequence[int] = (),
            **kwargs: Any,
        ) -> list[float | None]:
            replies = self.replies(completion_ids, row)
            if name == "correct":
                return [r.correct if r.correct is not None else 0.0 for r in replies]
            if name == "format":
                return [float(r.format_ok) for r in replies]
            samples = [self.sample(int(i)) for i in row]
            values = self.custom[name](
                [r.answer for r in replies],
                references=[s.reference for s in samples],
                parsed=[r.parsed for r in replies],
                thoughts=[r.thought for r in replies],
                items=[s.item for s in samples],
                completion_ids=[list(c) for c in completion_ids],
                task=self.task.name,
            )
            if inspect.isawaitable(values) or len(values) != len(replies):
                raise ConfigError(f"reward {name}: must return one number (or None) per completion")
            return [None if v is None else float(v) for v in values]

        reward.__name__ = name
        return reward
