"""The task interface: a recipe = input kinds + exact prompt + output schema + parser.

``Task.run(engine, inputs, ...)`` executes a task; only :func:`aris.runner.run_task` calls it, for
the CLI (``aris run``), the library (``aris.run``), the server, MCP, batch and eval alike. Every
generation goes through :func:`aris.generate.generate`; this module adds what structured output needs
on top of it:

1. constrain decoding to the reply's JSON schema where the engine can (and thinking is off:
   a grammar would forbid the thought markers),
2. parse robustly (thought stripped, fences and prose tolerated: :mod:`aris.tasks.parsing`),
3. validate with pydantic, and on failure ask ONCE for a repair (the previous reply plus the
   validation errors, corrected output only),
4. record every call as a step; a reply that still fails becomes a Result with ``errors``,
   never an exception, so a batch of a thousand studies does not stop at one bad reply.
"""

from __future__ import annotations

import abc
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from aris.context import RunContext
from aris.engines.base import Engine
from aris.errors import BudgetError, ConfigError, InputError, OutputError, PromptError
from aris.generate import generate, was_cut
from aris.inputs.base import Kind, PreparedInput
from aris.prompt import build_turns, count_images, render
from aris.result import Result, Timings
from aris.tasks.parsing import ParseError, validation_messages
from aris.types import GenerationParams, Message

logger = logging.getLogger(__name__)

# Called with each piece of the answer as it streams: (kind, text), kind "thought" or "answer".
OnToken = Callable[[str, str], None]


class Output(BaseModel):
    """Base of task outputs: carries the parser's caveats (kept apart from the validated fields)."""

    _warnings: list[str] = PrivateAttr(default_factory=list)

    def warn(self, *notes: str) -> Output:
        self._warnings.extend(notes)
        return self

    @property
    def warnings(self) -> list[str]:
        return list(self._warnings)


class TaskOptions(BaseModel):
    """Options every task takes. Unknown keys are refused, so a typo is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")

    think: bool | None = Field(
        default=None, description="Thinking mode (default: the task's own; text-qa thinks, most do not)."
    )
    constrain: bool = Field(
        default=True, description="Constrain decoding to the reply's JSON schema where the engine can."
    )
    system: str | None = Field(default=None, description="System text (MedGemma was evaluated with none).")


@dataclass
class Outcome:
    """What parsing (and the one repair) produced for one reply."""

    value: Any
    text: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    repaired: bool = False


class Trace:
    """Every ``generate`` call of one task run, and the Result they add up to."""

    def __init__(
        self,
        task: Task,
        engine: Engine,
        inputs: list[PreparedInput],
        on_token: OnToken | None,
        ctx: RunContext | None = None,
    ) -> None:
        self.task = task
        self.engine = engine
        self.inputs = inputs
        self.on_token = on_token
        self.ctx = ctx or RunContext()
        self.results: list[tuple[str, Result]] = []
        self.prepare_s = 0.0

    def _pieces(self, stream: bool) -> Callable[[str, str], None]:
        """Each streamed piece: checked against the cancel signal first, then handed on."""
        ctx, on_token = self.ctx, self.on_token if stream else None

        def on_piece(kind: str, text: str) -> None:
            ctx.check_cancelled()
            if on_token is not None:
                on_token(kind, text)

        return on_piece

    def generate(
        self, name: str, messages: list[Message], params: GenerationParams, *, stream: bool = True
    ) -> Result:
        self.ctx.check_cancelled()
        result = generate(
            self.engine,
            messages,
            params,
            on_piece=self._pieces(stream),
            task=self.task.name,
            provenance=[i.provenance for i in self.inputs],
        )
        turns = build_turns(messages, think=params.think)
        images = count_images(turns)
        if "prompt_tokens" not in result.usage:  # the engine did not report it
            result.usage["prompt_tokens"] = (
                self.engine.count_text_tokens(render(turns)) + images * self.engine.capabilities.image_tokens
            )
        self.results.append((name, result))
        logger.info(
            "task %s step %s: %d images, %d completion tokens, %.2fs",
            self.task.name,
            name,
            images,
            result.usage.get("completion_tokens", 0),
            result.timings.generate_s,
        )
        return result

    def cut_warnings(self) -> list[str]:
        """A warning for each reply that stopped for want of room and was not replaced by a repair.

        Such a reply may stop mid-sentence ("IMPRESSION: No evidence of"): the reader must be told.
        """
        names = [name for name, _ in self.results]
        out = []
        for i, (name, r) in enumerate(self.results):
            budget = int(r.params.get("max_new_tokens") or 0)
            if not was_cut(r.usage, budget) or f"{name}-repair" in names[i + 1 :]:
                continue
            step = "" if name == "answer" else f" ({name})"
            used = r.usage.get("completion_tokens", 0)
            if used >= budget:
                why = f"used all {budget} new tokens it was allowed and may be cut off; raise max_new_tokens"
            else:
                why = (
                    f"stopped after {used} of {budget} new tokens because the engine's context was full, "
                    "and may be cut off; raise the context (--n-ctx, a server's context length) or send "
                    "fewer images"
                )
            out.append(f"the reply{step} {why}")
        return out

    def steps(self) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "prompt_sha256": r.prompt_sha256,
                "text": r.text,
                "thought": r.thought,
                "prompt_tokens": r.usage.get("prompt_tokens", 0),
                "completion_tokens": r.usage.get("completion_tokens", 0),
                **({"cut": r.usage["cut"]} if "cut" in r.usage else {}),
                "images": r.usage.get("images", 0),
                "first_token_s": r.timings.first_token_s,
                "generate_s": r.timings.generate_s,
            }
            for name, r in self.results
        ]

    def result(self, outcome: Outcome, parsed: Any, *, raw: str | None = None, prose: bool = False) -> Result:
        """One Result for the run: the first call's identity (prompt hash, model), all calls' costs.

        ``prose``: the reply is free text, which parses whether or not it was finished, so a reply that
        used its whole token budget is flagged (a JSON reply proves it finished by parsing).
        """
        if not self.results:  # a task that needed no model call (e.g. nothing to ask)
            return Result(
                task=self.task.name,
                model=self.engine.model_id,
                engine=self.engine.kind,
                text=outcome.text,
                parsed=parsed,
                errors=outcome.errors,
                warnings=outcome.warnings,
                provenance=[_prov(i) for i in self.inputs],
                timings=Timings(prepare_s=self.prepare_s, total_s=self.prepare_s),
            )
        first = self.results[0][1]
        final = next((r for _, r in reversed(self.results) if r.text == outcome.text), first)
        usage: dict[str, int] = {}
        for _, r in self.results:
            for k, v in r.usage.items():
                usage[k] = usage.get(k, 0) + v
        usage["images"] = first.usage.get("images", 0)  # per prompt; tokens above are summed over calls
        usage["calls"] = len(self.results)
        gen_s = sum(r.timings.generate_s for _, r in self.results)
        return first.model_copy(
            update={
                "text": outcome.text,
                "thought": final.thought,
                "raw": final.raw if raw is None else raw,
                "parsed": parsed,
                "errors": outcome.errors,
                "warnings": [*outcome.warnings, *(self.cut_warnings() if prose else [])],
                "repaired": outcome.repaired,
                "steps": self.steps(),
                "usage": usage,
                "timings": Timings(
                    prepare_s=self.prepare_s,
                    first_token_s=first.timings.first_token_s,
                    generate_s=gen_s,
                    total_s=self.prepare_s + gen_s,
                ),
            }
        )


def _prov(p: PreparedInput) -> dict[str, Any]:
    return {
        "kind": p.provenance.kind,
        "sources": p.provenance.sources,
        "details": p.provenance.details,
        "warnings": p.provenance.warnings,
    }


class Task(abc.ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    input_kinds: ClassVar[tuple[Kind, ...]]
    n_inputs: ClassVar[tuple[int, int]] = (1, 1)  # (min, max) prepared inputs
    schema: ClassVar[type[BaseModel] | None] = None  # what the model is asked to write (JSON tasks)
    think: ClassVar[bool] = False
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    read_kind: ClassVar[str] = "auto"  # how aris.run / aris run read a path for this task
    read_options: ClassVar[dict[str, Any]] = {}
    needs_question: ClassVar[bool] = False
    max_new_tokens: ClassVar[int] = 512  # when the caller passes no GenerationParams
    # Model roles the task uses (aris.context.MODEL_ROLES): "generator" is MedGemma behind an Engine.
    needs: ClassVar[tuple[str, ...]] = ("generator",)

    # -- the recipe (pure) ------------------------------------------------------------------------

    @abc.abstractmethod
    def messages(
        self, inputs: list[PreparedInput], question: str | None, options: dict[str, Any] | TaskOptions
    ) -> list[Message]:
        """The exact conversation the recipe prescribes. Pure: tests call it alone."""

    @abc.abstractmethod
    def parse(self, text: str, inputs: list[PreparedInput], options: dict[str, Any] | TaskOptions) -> Any:
        """Turn the answer text (thought already removed) into the validated output; raise OutputError."""

    def opts(self, options: dict[str, Any] | TaskOptions | None) -> Any:
        """Options validated against the task's ``Options`` model (defaults filled in)."""
        if isinstance(options, self.Options):
            return options
        data = options.model_dump() if isinstance(options, TaskOptions) else dict(options or {})
        try:
            return self.Options.model_validate(data)
        except ValidationError as e:
            raise ConfigError(f"task {self.name}: " + "; ".join(validation_messages(e))) from None

    def reply_schema(self, inputs: list[PreparedInput], options: Any) -> dict[str, Any] | None:
        """The JSON schema decoding is constrained to, or None for free text."""
        return self.schema.model_json_schema() if self.schema is not None else None

    def repair_prompt(self, errors: list[str], inputs: list[PreparedInput], options: Any) -> str:
        schema = self.reply_schema(inputs, options)
        lines = [
            "Your reply above could not be used:",
            *(f"- {e}" for e in errors[:12]),
            "Reply again with ONLY the corrected JSON, no other text.",
        ]
        if schema is not None:
            lines.append("It must match this JSON schema: " + json.dumps(schema, separators=(",", ":")))
        return "\n".join(lines)

    def finalize(
        self, value: Any, inputs: list[PreparedInput], options: Any, files_dir: Path | None = None
    ) -> Any:
        """The JSON-able ``Result.parsed`` for a validated value; tasks that write files do it here.

        Files go into ``files_dir`` (chosen by the front end, never by a client) and are named in the
        result relative to it.
        """
        return value.model_dump(mode="json") if isinstance(value, BaseModel) else value

    # -- checks and parameters --------------------------------------------------------------------

    def check(self, inputs: list[PreparedInput], question: str | None, options: Any) -> str | None:
        """Refuse inputs the recipe cannot take, naming the file; return the question to ask."""
        lo, hi = self.n_inputs
        if not lo <= len(inputs) <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            raise InputError(None, f"task {self.name} takes {want} input(s); got {len(inputs)}")
        for p in inputs:
            if p.kind not in self.input_kinds:
                src = p.provenance.sources[0] if p.provenance.sources else None
                raise InputError(
                    src,
                    f"read as {p.kind!r}, but task {self.name} takes {'/'.join(self.input_kinds)} "
                    "(choose the kind with --kind)",
                )
        if self.needs_question and not (question and question.strip()):
            raise ConfigError(f"task {self.name} needs a question (--question)")
        return question

    def generation_params(
        self, engine: Engine, params: GenerationParams | None, options: Any, inputs: list[PreparedInput]
    ) -> GenerationParams:
        p = replace(params) if params is not None else GenerationParams(max_new_tokens=self.max_new_tokens)
        p.think = options.think if options.think is not None else (p.think or self.think)
        if p.json_schema is None and not p.think and options.constrain and engine.capabilities.json_schema:
            p.json_schema = self.reply_schema(inputs, options)
        return p

    def _repair_params(
        self, engine: Engine, params: GenerationParams, options: Any, inputs: list[PreparedInput]
    ) -> GenerationParams:
        """The repair asks for the output alone: no thinking, and constrained where possible."""
        schema = params.json_schema
        if schema is None and options.constrain and engine.capabilities.json_schema:
            schema = self.reply_schema(inputs, options)
        return replace(params, think=False, json_schema=schema)

    # -- running ------------------------------------------------------------------------------------

    def parse_with_repair(
        self,
        trace: Trace,
        messages: list[Message],
        params: GenerationParams,
        text: str,
        inputs: list[PreparedInput],
        options: Any,
        *,
        parse: Callable[[str], Any] | None = None,
        repair_prompt: Callable[[list[str]], str] | None = None,
        name: str = "answer",
    ) -> Outcome:
        """Parse ``text``; on failure ask once for a corrected reply; never raise for a bad reply."""
        parse = parse or (lambda t: self.parse(t, inputs, options))
        try:
            value = parse(text)
            return Outcome(value, text, warnings=_warnings(value))
        except OutputError as e:
            first_errors = e.errors if isinstance(e, ParseError) else [str(e)]
        prompt = (repair_prompt or (lambda errs: self.repair_prompt(errs, inputs, options)))(first_errors)
        repair_messages = [*messages, Message.assistant(text or "(no answer)"), Message.user(prompt)]
        try:
            fixed = trace.generate(
                f"{name}-repair",
                repair_messages,
                self._repair_params(trace.engine, params, options, inputs),
                stream=False,
            )
        except (BudgetError, PromptError) as e:
            # The item's own limit (the longer conversation does not fit). An engine that failed
            # (an endpoint gone mid-repair) raises on: that is no answer to record, and the batch
            # hands the item to another endpoint instead.
            return Outcome(None, text, errors=[*first_errors, f"the repair could not run: {e}"])
        try:
            value = parse(fixed.text)
        except OutputError as e:
            second = e.errors if isinstance(e, ParseError) else [str(e)]
            return Outcome(
                None,
                text,
                errors=[f"first reply: {x}" for x in first_errors] + [f"after repair: {x}" for x in second],
            )
        return Outcome(value, fixed.text, warnings=_warnings(value), repaired=True)

    def run(
        self,
        engine: Engine,
        inputs: list[PreparedInput],
        question: str | None = None,
        *,
        options: dict[str, Any] | TaskOptions | None = None,
        params: GenerationParams | None = None,
        on_token: OnToken | None = None,
        ctx: RunContext | None = None,
    ) -> Result:
        """Prompt, generate (constrained where the engine can), parse, validate, repair once."""
        t0 = time.perf_counter()
        opts = self.opts(options)
        question = self.check(inputs, question, opts)
        messages = self.messages(inputs, question, opts)
        gp = self.generation_params(engine, params, opts, inputs)
        trace = Trace(self, engine, inputs, on_token, ctx)
        trace.prepare_s = time.perf_counter() - t0
        first = trace.generate("answer", messages, gp)
        outcome = self.parse_with_repair(trace, messages, gp, first.text, inputs, opts)
        return self.build(trace, outcome, inputs, opts)

    def build(self, trace: Trace, outcome: Outcome, inputs: list[PreparedInput], options: Any) -> Result:
        prose = self.reply_schema(inputs, options) is None
        if outcome.value is None:
            return trace.result(outcome, None, prose=prose)
        parsed = self.finalize(outcome.value, inputs, options, trace.ctx.files_dir)
        return trace.result(outcome, parsed, prose=prose)


def _warnings(value: Any) -> list[str]:
    return value.warnings if isinstance(value, Output) else []


def system_messages(options: Any) -> list[Message]:
    """A leading system message when the caller asked for one (MedGemma was evaluated without)."""
    return [Message.system(options.system)] if getattr(options, "system", None) else []
