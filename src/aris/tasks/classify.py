"""Image classification into a fixed set of choices, constrained and then mapped back to one option.

Decoding is constrained to ``{"answer": <one of the options>}`` where the engine can; the parser still
accepts what unconstrained models write ("B", "(B) mild", "Final Answer: moderate NPDR", a near-miss
spelling, a dataset's class code) and maps it to exactly one option, or fails validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from aris.errors import ConfigError
from aris.inputs.base import Kind, PreparedInput
from aris.tasks import report_prompts as R
from aris.tasks.base import Output, Task, TaskOptions, system_messages
from aris.tasks.parsing import (
    LETTERS,
    ParseError,
    answer_only,
    extract_json,
    final_answer,
    lettered,
    match_option,
)
from aris.types import Message, TextPart


@dataclass(frozen=True)
class ChoiceSet:
    options: tuple[str, ...]
    question: str
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)


CHOICE_SETS: dict[str, ChoiceSet] = {
    # NCT-CRC-HE-100K: nine tissue classes of colorectal H&E patches (aliases: the dataset's class codes).
    "nct-crc-he": ChoiceSet(
        (
            "adipose",
            "background",
            "debris",
            "lymphocytes",
            "mucus",
            "smooth muscle",
            "normal colon mucosa",
            "cancer-associated stroma",
            "colorectal adenocarcinoma epithelium",
        ),
        "What type of tissue is shown in this H&E-stained histopathology patch?",
        {
            "adipose": ("ADI", "fat", "adipose tissue"),
            "background": ("BACK",),
            "debris": ("DEB", "necrosis", "necrotic debris"),
            "lymphocytes": ("LYM", "lymphocyte"),
            "mucus": ("MUC", "mucin"),
            # not a bare "muscle": it would read "skeletal muscle" as smooth muscle
            "smooth muscle": ("MUS", "smooth muscle tissue"),
            "normal colon mucosa": ("NORM", "normal mucosa", "normal colonic mucosa"),
            "cancer-associated stroma": ("STR", "stroma", "tumor stroma"),
            "colorectal adenocarcinoma epithelium": ("TUM", "adenocarcinoma", "tumor epithelium", "tumor"),
        },
    ),
    # International clinical diabetic retinopathy scale, five levels.
    "diabetic-retinopathy": ChoiceSet(
        ("no DR", "mild", "moderate", "severe NPDR", "proliferative DR"),
        "What is the grade of diabetic retinopathy in this fundus image?",
        {
            "no DR": ("no diabetic retinopathy", "no apparent retinopathy", "none", "normal"),
            "mild": ("mild NPDR", "mild nonproliferative diabetic retinopathy", "mild DR"),
            "moderate": ("moderate NPDR", "moderate nonproliferative diabetic retinopathy", "moderate DR"),
            "severe NPDR": ("severe", "severe nonproliferative diabetic retinopathy", "severe DR"),
            "proliferative DR": ("PDR", "proliferative", "proliferative diabetic retinopathy"),
        },
    ),
}
SET_NAMES = {
    "colorectal": "nct-crc-he",
    "nct-crc": "nct-crc-he",
    "dr": "diabetic-retinopathy",
    "retinopathy": "diabetic-retinopathy",
}
CUSTOM_QUESTION = "Which of the following best describes this image?"


def choice_set(name: str) -> ChoiceSet | None:
    key = name.strip().lower()
    return CHOICE_SETS.get(SET_NAMES.get(key, key))


class ClassifyOut(Output):
    answer: str
    letter: str
    options: list[str]
    reply: str = Field(description="what the model wrote, before mapping")


class ClassifyOptions(TaskOptions):
    choices: list[str] = Field(
        default_factory=lambda: list(CHOICE_SETS["nct-crc-he"].options),
        description="a built-in set name (nct-crc-he, diabetic-retinopathy) or the options themselves",
    )
    choice_set: str | None = None  # filled in when ``choices`` named a built-in set
    prompts: R.PromptSet = R.prompts_field()
    report_form: Literal["derm", "eyepacs"] = Field(
        default="derm",
        description="with --prompts report: DermMCQA's or EyePACS's prompt (\"The most likely diagnosis is:\" "
        "and a letter)",
    )

    @field_validator("choices", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @field_validator("choices")
    @classmethod
    def _enough(cls, v: list[str]) -> list[str]:
        if len(v) == 1 and choice_set(v[0]) is None:
            raise ValueError(
                f"{v[0]!r} is not a built-in set ({', '.join(CHOICE_SETS)}); give at least two choices"
            )
        if len(v) > len(LETTERS):
            raise ValueError(f"at most {len(LETTERS)} choices")
        return v


class Classify(Task):
    name = "classify"
    description = (
        "Image + choices -> exactly one of the choices (built-in: nct-crc-he, diabetic-retinopathy)."
    )
    input_kinds: ClassVar[tuple[Kind, ...]] = ("image", "cxr", "wsi", "pdf", "ct", "mri")
    Options = ClassifyOptions
    max_new_tokens = 64

    def opts(self, options: Any) -> Any:
        o = super().opts(options)
        if len(o.choices) == 1 and (cs := choice_set(o.choices[0])) is not None:
            o = o.model_copy(update={"choices": list(cs.options), "choice_set": o.choices[0]})
        return o

    def _set(self, o: Any) -> ChoiceSet:
        if o.choice_set and (cs := choice_set(o.choice_set)) is not None:
            return cs
        for cs in CHOICE_SETS.values():
            if list(cs.options) == list(o.choices):
                return cs
        return ChoiceSet(tuple(o.choices), CUSTOM_QUESTION)

    def report_prompt(self, question: str | None, o: Any) -> str:
        """DermMCQA's row with the question and lettered options, or EyePACS's fixed row."""
        if o.report_form == "eyepacs":
            if len(o.choices) != len(R.EYEPACS_OPTIONS):
                raise ConfigError(
                    "task classify: the EyePACS prompt lists five stages (A-E); give five choices in that order"
                )
            return R.fill(R.EYEPACS, {})
        # The report does not show how DermMCQA's {{ question }} lists its options; EyePACS's row, the
        # only one that shows options, writes them inline as "A: text B: text".
        listing = " ".join(f"{LETTERS[i]}: {c}" for i, c in enumerate(o.choices))
        body = f"{(question or self._set(o).question).strip()} {listing}"
        return R.fill(R.DERM, {"{{ question }}": body})

    def messages(self, inputs: list[PreparedInput], question: str | None, options: Any) -> list[Message]:
        o = self.opts(options)
        parts = [p for i in inputs for p in i.parts]
        if o.prompts == "report":
            return [*system_messages(o), Message("user", [*parts, TextPart(self.report_prompt(question, o))])]
        cs = self._set(o)
        prompt = (
            f"{(question or cs.question).strip()}\n{lettered(o.choices)}\n"
            'Answer with exactly one of the options, as a JSON object {"answer": "<the option, exactly as written>"}.'
        )
        return [*system_messages(o), Message("user", [*parts, TextPart(prompt)])]

    def reply_schema(self, inputs: list[PreparedInput], options: Any) -> dict[str, Any] | None:
        o = self.opts(options)
        if o.prompts == "report":
            return None  # the report's prompt: the model's own words, unconstrained
        return {
            "type": "object",
            "properties": {"answer": {"type": "string", "enum": list(o.choices)}},
            "required": ["answer"],
            "additionalProperties": False,
        }

    def parse(self, text: str, inputs: list[PreparedInput], options: Any) -> ClassifyOut:
        o = self.opts(options)
        cs = self._set(o)
        text = answer_only(text)
        reply: str | None = None
        try:
            value = extract_json(text, dict).value
        except ParseError:
            value = None
        if isinstance(value, dict) and "answer" in value:
            if not isinstance(value["answer"], str):
                # {"answer": null} is no answer, not the option "none" stands for
                raise ParseError(f'"answer" must be one of the options as a string, not {value["answer"]!r}')
            reply = value["answer"]
        if not reply:
            reply = final_answer(text) or text
        if not reply.strip():
            raise ParseError("empty reply")
        choice = match_option(reply, o.choices, aliases=cs.aliases)
        if choice is None:
            raise ParseError(f"{reply[:200]!r} is not exactly one of: {', '.join(o.choices)}")
        return ClassifyOut(
            answer=choice, letter=LETTERS[o.choices.index(choice)], options=list(o.choices), reply=reply[:500]
        )
