"""A patient intake interview that ends in a structured record, with red flags escalated by code.

The interview walks a fixed checklist (onset, duration, character and severity, associated symptoms,
history, medications and allergies). The model phrases each question from the conversation so far;
a phrasing that is not one short question falls back to the checklist's own wording, so the
interview never stalls on a bad reply. After every answer the deterministic rules of
:mod:`aris.tasks.redflags` run over everything the patient has said: a match stops the interview
at once and the record carries the escalation, whatever the model writes. The model only fills
the record from the transcript (constrained JSON, repaired once).

    session = IntakeSession(engine)
    print(session.start())
    while isinstance(step := session.reply(input()), str):
        print(step)
    record = step  # an IntakeRecord
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from aris.context import RunContext
from aris.engines.base import Engine
from aris.inputs.base import Kind, PreparedInput
from aris.result import Result
from aris.tasks.base import OnToken, Outcome, Output, Task, TaskOptions, Trace
from aris.tasks.parsing import ParseError, answer_only, extract_json, validation_messages
from aris.tasks.redflags import RedFlag, check
from aris.types import GenerationParams, Message

logger = logging.getLogger(__name__)

OPENING = "What brings you in today?"
TOPICS: tuple[tuple[str, str, str], ...] = (
    # (id, what to ask about, the checklist's own wording)
    (
        "onset",
        "when the problem started and how (suddenly or gradually)",
        "When did this start, and did it come on suddenly or gradually?",
    ),
    (
        "duration",
        "how long it lasts and whether it is constant or comes and goes",
        "How long does it last, and is it constant or does it come and go?",
    ),
    (
        "character",
        "what it feels like and how severe it is on a 0-10 scale",
        "How would you describe it, and how bad is it on a scale from 0 to 10?",
    ),
    (
        "associated",
        "any other symptoms that come with it",
        "Have you noticed any other symptoms along with it?",
    ),
    (
        "history",
        "past medical conditions, surgeries and relevant family history",
        "Do you have any ongoing medical conditions or past surgeries?",
    ),
    (
        "medications",
        "current medications (including over-the-counter and supplements) and allergies",
        "What medications do you take, including over-the-counter ones, and do you have any allergies?",
    ),
)
INTERVIEWER = (
    "You are a clinic intake assistant talking with a patient before their visit. You gather information; "
    "you never diagnose or give medical advice."
)


class Turn(BaseModel):
    role: Literal["assistant", "patient"]
    text: str


class RecordFields(Output):
    """What the model fills in from the transcript."""

    chief_complaint: str = ""
    onset: str = ""
    duration: str = ""
    character: str = ""
    severity: str = ""
    associated_symptoms: list[str] = Field(default_factory=list)
    past_history: list[str] = Field(default_factory=list)
    medications: list[str] = Field(default_factory=list)
    allergies: list[str] = Field(default_factory=list)
    summary: str = ""

    @field_validator(
        "chief_complaint", "onset", "duration", "character", "severity", "summary", mode="before"
    )
    @classmethod
    def _text(cls, v: Any) -> Any:
        if v is None:
            return ""
        return (
            ", ".join(str(x) for x in v)
            if isinstance(v, list)
            else str(v)
            if isinstance(v, int | float)
            else v
        )

    @field_validator("associated_symptoms", "past_history", "medications", "allergies", mode="before")
    @classmethod
    def _list(cls, v: Any) -> Any:
        if v is None or v == "":
            return []
        return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v


class RedFlagOut(BaseModel):
    id: str
    label: str
    urgency: str
    evidence: list[str]


class IntakeRecord(RecordFields):
    """The intake record: the model's fields, and the code's red flags and escalation (never the model's)."""

    red_flags: list[RedFlagOut] = Field(default_factory=list)
    urgency: Literal["emergency", "urgent", "routine"] = "routine"
    escalation: str | None = Field(default=None, description="what the patient was told to do, verbatim")
    transcript: list[Turn] = Field(default_factory=list)
    complete: bool = Field(default=False, description="every checklist topic was asked")


def parse_record(text: str) -> RecordFields:
    try:
        return RecordFields.model_validate(extract_json(text, dict).value)
    except ValidationError as e:
        raise ParseError(validation_messages(e)) from None


def question_ok(text: str) -> bool:
    """One short question, nothing else: what a phrased checklist question must look like."""
    t = text.strip()
    return 5 <= len(t) <= 250 and t.endswith("?") and t.count("?") <= 2 and "\n" not in t


class IntakeSession:
    """One interview. ``reply`` returns the next question (``str``) or, at the end, the ``IntakeRecord``."""

    def __init__(
        self,
        engine: Engine,
        *,
        params: GenerationParams | None = None,
        task: Task | None = None,
        model_questions: bool = True,
        on_escalation: Callable[[list[RedFlag]], None] | None = None,
        constrain: bool = True,
        ctx: RunContext | None = None,
    ) -> None:
        self.engine = engine
        self.params = params or GenerationParams(max_new_tokens=512)
        self.model_questions = model_questions
        self.on_escalation = on_escalation
        self.constrain = constrain
        self.transcript: list[Turn] = []
        self.flags: list[RedFlag] = []
        self.record: IntakeRecord | None = None
        self.errors: list[str] = []
        self.repaired = False
        self._topic = 0
        self._trace = Trace(task or Intake(), engine, [], None, ctx)
        self._t0 = time.perf_counter()

    @property
    def done(self) -> bool:
        return self.record is not None

    def start(self) -> str:
        if not self.transcript:
            self.transcript.append(Turn(role="assistant", text=OPENING))
        return OPENING

    def reply(self, patient_text: str) -> str | IntakeRecord:
        if self.record is not None:
            return self.record
        if not self.transcript:
            self.start()
        self.transcript.append(Turn(role="patient", text=patient_text.strip()))
        flags = check([t.text for t in self.transcript if t.role == "patient"])
        if any(f.urgency == "emergency" for f in flags):
            self.flags = flags
            logger.info("intake: %d red flag(s), escalating", len(flags))
            if self.on_escalation is not None:
                self.on_escalation(flags)
            return self.finish()
        self.flags = flags
        if self._topic >= len(TOPICS):
            return self.finish()
        question = self._ask(TOPICS[self._topic])
        self._topic += 1
        self.transcript.append(Turn(role="assistant", text=question))
        return question

    def _conversation(self) -> str:
        return "\n".join(
            f"{'Patient' if t.role == 'patient' else 'Assistant'}: {t.text}" for t in self.transcript
        )

    def _ask(self, topic: tuple[str, str, str]) -> str:
        _, about, fallback = topic
        if not self.model_questions:
            return fallback
        msgs = [
            Message.user(
                f"{INTERVIEWER}\n\nConversation so far:\n{self._conversation()}\n\n"
                f"Ask the patient ONE short question about {about}. Reply with the question only."
            )
        ]
        p = replace(
            self.params, max_new_tokens=min(self.params.max_new_tokens, 64), json_schema=None, think=False
        )
        r = self._trace.generate(f"question:{topic[0]}", msgs, p, stream=False)
        text = answer_only(r.text).strip().strip('"').strip()
        return text if question_ok(text) else fallback

    def finish(self) -> IntakeRecord:
        """Fill the record from the transcript (the model), then set the red flags (the code)."""
        if self.record is not None:
            return self.record
        schema = RecordFields.model_json_schema()
        fields_list = ", ".join(RecordFields.model_fields)
        msgs = [
            Message.user(
                f"{INTERVIEWER}\n\nThe intake conversation:\n{self._conversation()}\n\n"
                "Fill in the intake record from what the patient said. Reply with a JSON object with the keys: "
                f"{fields_list}. associated_symptoms, past_history, medications and allergies are lists of "
                'strings; the others are strings ("" when the patient did not say). summary is two sentences '
                "for the clinician."
            )
        ]
        ok = self.constrain and self.engine.capabilities.json_schema
        p = replace(self.params, json_schema=schema if ok else None, think=False)
        first = self._trace.generate("record", msgs, p, stream=False)
        task = self._trace.task

        oc = task.parse_with_repair(
            self._trace, msgs, p, first.text, [], task.opts({}), parse=parse_record, name="record"
        )
        self.repaired = oc.repaired
        self.errors = oc.errors
        fields = oc.value.model_dump() if oc.value is not None else {}
        if not fields.get("chief_complaint"):
            first_answer = next((t.text for t in self.transcript if t.role == "patient"), "")
            fields["chief_complaint"] = first_answer  # the patient's own words, when the model gave none
        emergency = [f for f in self.flags if f.urgency == "emergency"]
        self.record = IntakeRecord(
            **fields,
            red_flags=[
                RedFlagOut(id=f.id, label=f.label, urgency=f.urgency, evidence=list(f.evidence))
                for f in self.flags
            ],
            urgency="emergency" if emergency else ("urgent" if self.flags else "routine"),
            escalation=emergency[0].action if emergency else None,
            transcript=list(self.transcript),
            complete=self._topic >= len(TOPICS) and not emergency,
        )
        return self.record

    def result(self) -> Result:
        """The interview as a Result: the record, every model call as a step, errors if the record failed."""
        record = self.finish()
        outcome = Outcome(record, self._conversation(), errors=self.errors, repaired=self.repaired)
        self._trace.prepare_s = 0.0
        return self._trace.result(outcome, record.model_dump(mode="json"), raw=self._conversation())


class IntakeOptions(TaskOptions):
    answers: list[str] = Field(
        default_factory=list, description="the patient's answers, in order (scripted run)"
    )
    model_questions: bool = True


class Intake(Task):
    name = "intake"
    description = "Patient intake interview -> structured intake record; red flags escalate by fixed rules."
    input_kinds: ClassVar[tuple[Kind, ...]] = ()
    n_inputs = (0, 0)
    Options = IntakeOptions
    schema = RecordFields

    def messages(self, inputs: list[PreparedInput], question: str | None, options: Any) -> list[Message]:
        """The opening turn (the rest of the interview depends on the patient's answers)."""
        return [Message.user(f"{INTERVIEWER}\n\n{OPENING}")]

    def parse(self, text: str, inputs: list[PreparedInput], options: Any) -> RecordFields:
        return parse_record(text)

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
        """The interview: scripted (``options["answers"]``, ``question`` first if given) or, when the
        front end can talk to a person (``ctx.ask``), live; a red flag ends it with an escalation event."""
        o = self.opts(options)
        self.check(inputs, None, o)
        answers = ([question] if question else []) + list(o.answers)
        ctx = ctx or RunContext()

        def escalate(flags: list[RedFlag]) -> None:
            if ctx.on_event is not None:
                ctx.on_event(
                    {"type": "escalation", "action": flags[0].action, "why": [f.label for f in flags]}
                )

        session = IntakeSession(
            engine,
            params=params,
            task=self,
            model_questions=o.model_questions,
            constrain=o.constrain,
            on_escalation=escalate,
            ctx=ctx,
        )
        step: str | IntakeRecord = session.start()
        live = not o.answers and ctx.ask is not None
        while isinstance(step, str):
            if ctx.on_event is not None:
                ctx.on_event({"type": "question", "text": step})
            if answers:
                answer: str | None = answers.pop(0)
            elif live and ctx.ask is not None:
                answer = ctx.ask(step)
            else:
                answer = None
            if answer is None:
                break
            step = session.reply(answer)
        return session.result()
