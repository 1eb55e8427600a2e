"""Questions: about images (VQA) and medical text questions (multiple choice or open).

Both can end with the evaluation suffix that asks for "Final Answer: X"; text-qa always does and
thinks first, as MedGemma was evaluated on MedQA, MedMCQA and PubMedQA.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from aris.inputs.base import Kind, PreparedInput
from aris.tasks import report_prompts as R
from aris.tasks.base import Output, Task, TaskOptions, system_messages
from aris.tasks.parsing import LETTERS, ParseError, answer_only, final_answer, lettered, match_option
from aris.types import Message, TextPart

FINAL_ANSWER_SUFFIX = (
    "You may write out your argument before stating your final, very short, definitive, and concise answer "
    "(no more than a few words or the letter corresponding to your answer choice if the question is multiple "
    'choice) X in the format "Final Answer: X":'
)


def _split(v: Any) -> Any:
    return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v


# -- VQA -----------------------------------------------------------------------------------------------


class VqaOut(Output):
    answer: str = Field(min_length=1, description="the final answer when asked for one, else the reply")
    final_answer: str | None = None


class VqaOptions(TaskOptions):
    final_answer: bool = Field(default=False, description='append the evaluation\'s "Final Answer: X" suffix')
    prompts: R.PromptSet = R.prompts_field()
    report_form: Literal["vqa", "cxr-yes-no"] = Field(
        default="vqa",
        description="with --prompts report: the SLAKE/VQA-RAD prompt (vqa) or the chest X-ray yes/no one",
    )


class Vqa(Task):
    name = "vqa"
    description = "Any image(s) + a free question -> answer (optionally in the 'Final Answer: X' format)."
    input_kinds: ClassVar[tuple[Kind, ...]] = ("image", "cxr", "ct", "mri", "wsi", "pdf")
    n_inputs = (1, 8)
    Options = VqaOptions
    needs_question = True
    max_new_tokens = 512

    def messages(self, inputs: list[PreparedInput], question: str | None, options: Any) -> list[Message]:
        o = self.opts(options)
        q = (question or "").strip()
        parts = [p for i in inputs for p in i.parts]
        if o.prompts == "report":
            # {{image}} + {{ question }} <suffix>: the images, then the filled row (report, Tables 7-13)
            tpl = R.CXR_YES_NO if o.report_form == "cxr-yes-no" else R.VQA
            return [
                *system_messages(o),
                Message("user", [*parts, TextPart(R.fill(tpl, {"{{ question }}": q}))]),
            ]
        if o.final_answer:
            q = f"{q} {FINAL_ANSWER_SUFFIX}"
        return [*system_messages(o), Message("user", [*parts, TextPart(q)])]

    def parse(self, text: str, inputs: list[PreparedInput], options: Any) -> VqaOut:
        o = self.opts(options)
        text = answer_only(text)
        if not text:
            raise ParseError("empty reply")
        fa = final_answer(text)
        if o.final_answer and not fa:
            raise ParseError('no "Final Answer: X" at the end of the reply')
        return VqaOut(answer=fa or text, final_answer=fa)

    def repair_prompt(self, errors: list[str], inputs: list[PreparedInput], options: Any) -> str:
        return "; ".join(errors) + '. End your reply with "Final Answer: X", X being your short answer.'


# -- text questions ---------------------------------------------------------------------------------------


class TextQaOut(Output):
    answer: str = Field(min_length=1)
    choice: str | None = None
    letter: str | None = None


class TextQaOptions(TaskOptions):
    choices: list[str] = Field(
        default_factory=list, description="multiple-choice options, lettered A, B, ..."
    )
    prompts: R.PromptSet = R.prompts_field()
    report_form: Literal["text", "ehrnoteqa"] = Field(
        default="text",
        description="with --prompts report: the text benchmarks' prompt, or EHRNoteQA's (a note and five choices)",
    )
    note: str | None = Field(default=None, description="EHRNoteQA: the discharge note the question is about")

    @field_validator("choices", mode="before")
    @classmethod
    def _split_choices(cls, v: Any) -> Any:
        return _split(v)

    @model_validator(mode="after")
    def _ehrnoteqa(self) -> TextQaOptions:
        if self.prompts == "report" and self.report_form == "ehrnoteqa":
            if len(self.choices) != 5:
                raise ValueError("the EHRNoteQA prompt takes exactly five choices (A-E)")
            if not (self.note and self.note.strip()):
                raise ValueError("the EHRNoteQA prompt needs the discharge note (note)")
        return self


class TextQa(Task):
    name = "text-qa"
    description = "Medical question (multiple choice or open) -> answer, thinking on, 'Final Answer' parsed."
    input_kinds: ClassVar[tuple[Kind, ...]] = ()
    n_inputs = (0, 0)
    Options = TextQaOptions
    think = True
    needs_question = True
    max_new_tokens = 1024

    def messages(self, inputs: list[PreparedInput], question: str | None, options: Any) -> list[Message]:
        o = self.opts(options)
        body = (question or "").strip()
        if o.prompts == "report" and o.report_form == "ehrnoteqa":
            text = R.fill(
                R.EHRNOTEQA,
                {
                    "{discharge_note}": (o.note or "").strip(),
                    "{orig_question}": body,
                    R.EHRNOTEQA_CHOICES: R.ehrnoteqa_choices(o.choices),
                },
            )
            return [*system_messages(o), Message.user(text)]
        if o.choices:
            # The report's {{ question }} holds the options; how is not shown: one "A. text" per line.
            body += "\n" + lettered(o.choices)
        if o.prompts == "report":
            return [*system_messages(o), Message.user(R.fill(R.TEXT_MCQ, {"{{ question }}": body}))]
        return [*system_messages(o), Message.user(f"{body}\n{FINAL_ANSWER_SUFFIX}")]

    def parse(self, text: str, inputs: list[PreparedInput], options: Any) -> TextQaOut:
        o = self.opts(options)
        fa = final_answer(text)
        if not fa:
            raise ParseError('no "Final Answer: X" in the reply')
        if not o.choices:
            return TextQaOut(answer=fa)
        choice = match_option(fa, o.choices)
        if choice is None:
            raise ParseError(
                f"Final Answer {fa!r} is not one of the options ({', '.join(LETTERS[: len(o.choices)])})"
            )
        i = o.choices.index(choice)
        return TextQaOut(answer=f"{LETTERS[i]}. {choice}", choice=choice, letter=LETTERS[i])

    def repair_prompt(self, errors: list[str], inputs: list[PreparedInput], options: Any) -> str:
        o = self.opts(options)
        what = "the letter of one option" if o.choices else "your short answer"
        return "; ".join(errors) + f'. Reply with only "Final Answer: X", X being {what}.'
