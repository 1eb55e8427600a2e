"""Whole-slide pathology: tissue patches -> a brief descriptive text, given organ and procedure.

The prompt is Google's education notebook's, word for word, with the organ and procedure last;
the text comes first and the patches (in spatial order, as the reader keeps them) after it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from aris.inputs.base import Kind, PreparedInput
from aris.tasks import report_prompts as R
from aris.tasks.base import Output, Task, TaskOptions, system_messages
from aris.tasks.parsing import ParseError, answer_only
from aris.types import ImagePart, Message, TextPart

WSI_PROMPT = (
    "You are an instructor teaching medical students. For education purposes, provide a brief descriptive "
    "text for the set of pathology patches extracted from a pathology slide. Consider the tissue type and "
    "procedure (below) when deciding what to include in the descriptive text.\n{organ}, {procedure}:"
)


class WsiOut(Output):
    description: str = Field(min_length=1)
    organ: str
    procedure: str
    patches: int


class WsiOptions(TaskOptions):
    organ: str = Field(default="unknown organ", description="tissue type, e.g. colon")
    procedure: str = Field(default="unknown procedure", description="e.g. biopsy, resection")
    prompts: R.PromptSet = R.prompts_field()
    type_procedure: str | None = Field(
        default=None,
        description='report prompt: the tissue type and procedure as the dataset writes them (default "organ, procedure")',
    )


class WsiDescribe(Task):
    name = "wsi"
    description = "Whole-slide image tiles -> descriptive text, given organ and procedure."
    input_kinds: ClassVar[tuple[Kind, ...]] = ("wsi", "image")
    Options = WsiOptions
    read_kind = "wsi"
    max_new_tokens = 384

    def prompt(self, question: str | None, o: Any) -> str:
        text = WSI_PROMPT.format(organ=o.organ.strip(), procedure=o.procedure.strip())
        return f"{text}\n{question.strip()}" if question else text

    def messages(self, inputs: list[PreparedInput], question: str | None, options: Any) -> list[Message]:
        o = self.opts(options)
        # Patches only: the labels a reader may add between tiles are not part of this recipe.
        patches = [p for p in inputs[0].parts if isinstance(p, ImagePart)]
        if o.prompts == "report":
            # {{images}} + text: the patches first, then the row with {{ type_procedure }} {{ question }}
            tp = (o.type_procedure or f"{o.organ.strip()}, {o.procedure.strip()}").strip()
            text = R.fill(R.WSI, {"{{ type_procedure }}": tp, "{{ question }}": (question or "").strip()})
            return [*system_messages(o), Message("user", [*patches, TextPart(text)])]
        return [*system_messages(o), Message("user", [TextPart(self.prompt(question, o)), *patches])]

    def parse(self, text: str, inputs: list[PreparedInput], options: Any) -> WsiOut:
        o = self.opts(options)
        text = answer_only(text)
        if not text:
            raise ParseError("empty reply")
        return WsiOut(description=text, organ=o.organ, procedure=o.procedure, patches=len(inputs[0].arrays))

    def repair_prompt(self, errors: list[str], inputs: list[PreparedInput], options: Any) -> str:
        return "Your reply was empty. " + self.prompt(None, self.opts(options))
