"""CT and MRI volumes: the instruction first, the labelled slices, the question LAST.

The layout is Google's CT notebook's: ``[instruction] + [img, "SLICE 1", img, "SLICE 2", ...] +
[query]``. With the question first the model writes an X-ray-style report instead of answering
(Google-Health/medgemma issue 76), so the question always goes last.

With ``findings`` the task asks one yes/no question per finding, each ending in the evaluation's
binary suffix, and parses "Final Answer: yes|no": one call per finding, as the model was evaluated,
rather than one call asking for all (cost: one prefill of the volume per finding; servers with
prefix caching reuse it).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from aris.context import RunContext
from aris.engines.base import Engine
from aris.errors import ConfigError
from aris.inputs.base import Kind, PreparedInput
from aris.result import Result
from aris.tasks import report_prompts as R
from aris.tasks.base import OnToken, Outcome, Output, Task, TaskOptions, Trace, system_messages
from aris.tasks.parsing import ParseError, answer_only, final_answer
from aris.tasks.yesno import read_reply
from aris.types import GenerationParams, Message, TextPart

INSTRUCTION = (
    "You are an instructor teaching medical students. You are analyzing a contiguous block of {modality} "
    "slices{region}. Please review the slices provided below carefully."
)
QUERY_PREFIX = "Based on the visual evidence in the slices provided above, "
BINARY_SUFFIX = (
    'You MUST end your responce with either "Final Answer: yes" or "Final Answer: no"'  # sic, as evaluated
)


class VolumeAnswer(Output):
    answer: str = Field(min_length=1)
    final_answer: str | None = None


class VolumeFindings(Output):
    findings: dict[str, Literal["yes", "no"] | None] = Field(
        description="yes or no per finding; null where the reply stayed unreadable after one repair"
    )
    answers: dict[str, str] = Field(default_factory=dict, description="each finding's full reply")


class VolumeOptions(TaskOptions):
    findings: list[str] = Field(default_factory=list, description="yes/no per finding, one call each")
    region: str | None = Field(default=None, description='e.g. "the center of the abdomen"')
    yes_no: bool = Field(default=False, description='end the question with the "Final Answer: yes|no" suffix')
    prompts: R.PromptSet = R.prompts_field()
    report_form: Literal["ct-us1", "ct-rate", "mri-us1"] | None = Field(
        default=None,
        description="with --prompts report: CT-US1 or CT-RATE (ct, default ct-us1), MRI-US1 (mri); the "
        "question is then the finding's name",
    )
    history: str = Field(default="", description="CT-US1/MRI-US1: the indication and patient history")

    @field_validator("findings", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v


def parse_yes_no(text: str, finding: str | None = None) -> Literal["yes", "no"]:
    """The reply's "Final Answer" read as yes or no by the one yes/no reader (:mod:`aris.tasks.yesno`).

    A negation ("not present", "hemorrhage is not seen") is no; a hedge, a contradiction or no
    Final Answer raises :class:`ParseError` saying which, so the task repairs once and then records
    the finding as unreadable, never as a guess.
    """
    reading = read_reply(text, finding=finding)
    if reading.value is None:
        raise ParseError(reading.describe())
    return reading.value


class _Volume(Task):
    modality: ClassVar[str]
    report_forms: ClassVar[tuple[str, ...]]  # the first is the default
    Options = VolumeOptions
    n_inputs = (1, 1)
    max_new_tokens = 512

    def query(self, question: str | None, o: Any) -> str:
        q = (
            question.strip()
            if question
            else f"write a brief report of the findings in this {self.modality} volume."
        )
        text = QUERY_PREFIX + (f"answer this question: {q}" if question else q)
        return f"{text} {BINARY_SUFFIX}" if o.yes_no else text

    def report_text(self, label: str, o: Any) -> str:
        """The report's CT-US1 / CT-RATE / MRI-US1 row filled with the finding and the history."""
        form = o.report_form or self.report_forms[0]
        if form not in self.report_forms:
            raise ConfigError(
                f"task {self.name}: report_form {form!r}; choose {', '.join(self.report_forms)}"
            )
        history = o.history.strip()
        if form == "ct-us1":
            return R.fill(R.CT_US1, {"{HISTORY}": history, "{Label}": label})
        if form == "mri-us1":
            return R.fill(R.MRI_US1, {"history_text": history, "{{label}}": label})
        return R.fill(R.CT_RATE, {"Emphysema": label})

    def messages(self, inputs: list[PreparedInput], question: str | None, options: Any) -> list[Message]:
        o = self.opts(options)
        if o.prompts == "report":
            # {{images}} + text: the slices (each with its "SLICE n" label, as the CT recipe reads
            # them), then the filled row; no instruction before the slices.
            label = (question or "").strip()
            if not label:
                raise ConfigError(f"task {self.name}: the report's prompt needs the finding (--question)")
            parts = [*inputs[0].parts, TextPart(self.report_text(label, o))]
            return [*system_messages(o), Message("user", parts)]
        region = f" from {o.region}" if o.region else ""
        instruction = INSTRUCTION.format(modality=self.modality, region=region)
        parts = [TextPart(instruction), *inputs[0].parts, TextPart(self.query(question, o))]
        return [*system_messages(o), Message("user", parts)]

    def parse(self, text: str, inputs: list[PreparedInput], options: Any) -> VolumeAnswer:
        o = self.opts(options)
        text = answer_only(text)
        if not text:
            raise ParseError("empty reply")
        if o.yes_no:
            return VolumeAnswer(answer=text, final_answer=parse_yes_no(text))
        return VolumeAnswer(answer=text, final_answer=final_answer(text))

    def repair_prompt(self, errors: list[str], inputs: list[PreparedInput], options: Any) -> str:
        return "; ".join(errors) + ". " + BINARY_SUFFIX

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
        o = self.opts(options)
        if not o.findings:
            return super().run(engine, inputs, question, options=o, params=params, on_token=on_token, ctx=ctx)
        self.check(inputs, question, o)
        gp = self.generation_params(engine, params, o, inputs)
        trace = Trace(self, engine, inputs, on_token, ctx)
        per = o.model_copy(update={"yes_no": True})
        found: dict[str, str | None] = {}
        texts: dict[str, str] = {}
        errors: list[str] = []
        repaired = False
        for finding in o.findings:
            msgs = self.messages(inputs, finding if o.prompts == "report" else f"Is there {finding}?", per)
            first = trace.generate(f"finding:{finding}", msgs, gp)
            oc = self.parse_with_repair(
                trace,
                msgs,
                gp,
                first.text,
                inputs,
                per,
                parse=lambda t, f=finding: parse_yes_no(t, f),  # type: ignore[misc]
                name=f"finding:{finding}",
            )
            texts[finding] = oc.text
            repaired |= oc.repaired
            found[finding] = oc.value  # None: unreadable after the repair, recorded as such
            errors.extend(f"{finding}: {e}" for e in oc.errors)
        # nothing read at all: no value, only the errors (as for any task whose reply stayed unreadable)
        read = any(v is not None for v in found.values())
        value = VolumeFindings(findings=found, answers=texts) if read else None  # type: ignore[arg-type]
        text = "\n".join(f"{f}: {t}" for f, t in texts.items())
        outcome = Outcome(value, text, errors=errors, repaired=repaired)
        return trace.result(outcome, value.model_dump(mode="json") if value else None, raw=text)


class CtTask(_Volume):
    name = "ct"
    modality = "CT"
    description = "CT volume (85 windowed slices) -> answer to a question, or yes/no per finding."
    report_forms = ("ct-us1", "ct-rate")
    input_kinds: ClassVar[tuple[Kind, ...]] = ("ct",)
    read_kind = "ct"


class MriTask(_Volume):
    name = "mri"
    modality = "MRI"
    description = "MRI volume (85 slices) -> answer to a question, or yes/no per finding."
    report_forms = ("mri-us1",)
    input_kinds: ClassVar[tuple[Kind, ...]] = ("mri",)
    read_kind = "mri"
