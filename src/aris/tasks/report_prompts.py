"""The evaluation prompts of the MedGemma 1.5 technical report, verbatim, and how each is filled in.

Source of every template below: *MedGemma 1.5 Technical Report* (arXiv 2604.05081), Appendix B,
"Evaluation prompts", Tables 7-13, as transcribed in the project's MEDGEMMA.md ("Evaluation prompts
of MedGemma 1.5"). The transcription names the appendix's table range, not the table each row sits
in, so each constant names its row (the benchmarks of the table's "task" column).

The templates are copied character for character, the report's own slips included: "responce",
the missing closing quote of the chest X-ray suffix, MRI-US1's leading ``'``, its doubled quotes and
its ``history_text`` placeholder, "where?" without a space in EHRNoteQA. MedGemma was evaluated on
these exact strings; correcting them would no longer be the report's prompt.

How a template becomes a conversation (what the report leaves open is said here, and each task's
record names it):

* ``{{image}} + `` / ``{{images}} + `` means the image(s) first, then the text, in one user turn.
* A placeholder is replaced by its value and nothing else (:func:`fill`); each template's
  placeholders are listed in :data:`PLACEHOLDERS`.
* No system prompt; thinking (``SYSTEM INSTRUCTION: think silently if needed.``) only for the text
  benchmarks the report names; greedy decoding; no constrained decoding (the model writes its own
  format).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

PromptSet = Literal["app", "report"]

SOURCE = "MedGemma 1.5 technical report (arXiv 2604.05081), Appendix B, Tables 7-13"


def prompts_field() -> Any:
    """The ``prompts`` option every task with a report form takes (it becomes ``aris run --prompts``)."""
    return Field(
        default="app",
        description=(
            "app: Aris's prompts (structured, constrained where the engine can); report: the technical "
            "report's evaluation prompt, verbatim, unconstrained (what `aris eval` uses)"
        ),
    )


# -- the templates, verbatim ----------------------------------------------------------------------------

# Row "MedQA, PubMedQA, MedMCQA, MMLU, MedXpertQA (text), AfriMed" (thinking on).
TEXT_MCQ = (
    "{{ question }}\nYou may write out your argument before stating your final, very short, definitive, and "
    "concise answer (no more than a few words or the letter corresponding to your answer choice if the question "
    'is multiple choice) X in the format "Final Answer: X":'
)

# Row "MIMIC-CXR, CheXpert, CXR14 (yes/no)". Sic: "responce", and no closing quote after "no".
CXR_YES_NO = '{{ image }} + {{ question }} You MUST end your responce with either "Final Answer: yes" or "Final Answer: no'

# Row "SLAKE, VQA-RAD". Note "answer X (no more ...)" here where the text row has "...) X in the format".
VQA = (
    "{{image}} + {{ question }} You may write out your argument before stating your final, very short, "
    "definitive, and concise answer X (no more than a few words or the letter corresponding to your answer "
    'choice if the question is multiple choice) in the format "Final Answer: X":'
)

# Row "Pathology WSI".
WSI = (
    "{{images}} + Provide a brief diagnostic text for the set of pathology patches extracted from a pathology "
    "slide. Consider the tissue type and procedure (below) when deciding what to include in the diagnostic "
    "text. {{ type_procedure }} {{ question }}"
)

# Row "DermMCQA".
DERM = (
    "{{image}} + {{ question }} You must choose the most likely diagnosis and respond with "
    '"The most likely diagnosis is:" followed by your choice letter.'
)

# Row "EyePACS".
EYEPACS = (
    "{{image}} + Given this fundus image, determine the most likely diabetic retinopathy (DR) stage present, "
    "even if you are unsure: A: No DR B: mild DR C: moderate DR D: severe DR E: proliferative DR You must "
    'choose the most likely diagnosis and respond with "The most likely diagnosis is:" followed by your choice '
    "letter."
)

# Row "EHRNoteQA" (thinking on). Sic: "where? is", "DISCHARGE?:"; "…" stands for CHOICE_B..CHOICE_D.
EHRNOTEQA = (
    "BEGIN_INSTRUCTIONS Given the following discharge note for a patient, answer the question by only picking "
    'one of the A, B, C, D, E options. Each discharge note starts with "DISCHARGE?:", the question starts with '
    '"QUESTION:" and the choices with "CHOICE_?:" where? is a single character. To answer, describe your '
    'thought process for each choice; finish your answer with "Final Answer: (?)" where? is a single character '
    "indicating the correct choice. END_INSTRUCTIONS {discharge_note} QUESTION: {orig_question} the choices "
    "are: CHOICE_A: {choice_A} … CHOICE_E: {choice_E} Describe your thought process for each choice and end "
    'your answer with "Final Answer: (?)" where? is a single character indicating the correct answer. Use '
    'this exact format at the end "Final Answer: (?)".'
)

# Row "Lab reports (EHR datasets 2–4, Mendeley)". The row has no image marker.
LAB = (
    "You are a Clinical Data Extraction Specialist. Your job is to parse lab reports with high precision. From "
    "the given lab report, extract all lab tests into a JSON list. Each test object in the list must include: "
    "name, result, unit, range, panel, method, specimen, sample_collection_time (formatted as DD-MM-YYYY "
    "HH:MM:SS)"
)

# Row "Chest ImaGenome localization".
LOCALIZE = "{{image}} + Where is the {object}?"

# Row "CT-US1".
CT_US1 = (
    '{{images}} + After looking at the indication and patient history "{HISTORY}"... Is there "{Label}" in the '
    'CT volume? You may write out your argument before stating your final answer "Final Answer: yes" or '
    '"Final Answer: no".'
)

# Row "MRI-US1". Sic: the leading ', the doubled quotes and the bare placeholder history_text.
MRI_US1 = (
    '{{images}} + \'After looking at the patient history "history_text", Is there {{label}} in the MRI volume? '
    'You may write out your argument before stating your final answer ""Final Answer: yes"" or '
    '""Final Answer: no""'
)

# Row "CT-RATE". The row is written for one finding, Emphysema: that word is the label's place.
CT_RATE = (
    "{{images}} + You are an expert radiologist for chest CT. Looking at these CT slices, is there Emphysema? "
    "Answer with 'Final Answer: yes' or 'Final Answer: no'"
)

EHRNOTEQA_CHOICES = "CHOICE_A: {choice_A} … CHOICE_E: {choice_E}"

# Each template's placeholders, in the order they appear.
PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "TEXT_MCQ": ("{{ question }}",),
    "CXR_YES_NO": ("{{ question }}",),
    "VQA": ("{{ question }}",),
    "WSI": ("{{ type_procedure }}", "{{ question }}"),
    "DERM": ("{{ question }}",),
    "EYEPACS": (),
    "EHRNOTEQA": ("{discharge_note}", "{orig_question}", EHRNOTEQA_CHOICES),
    "LAB": (),
    "LOCALIZE": ("{object}",),
    "CT_US1": ("{HISTORY}", "{Label}"),
    "MRI_US1": ("history_text", "{{label}}"),
    "CT_RATE": ("Emphysema",),
}

_IMAGE_MARKERS = ("{{ image }} + ", "{{image}} + ", "{{images}} + ")

# EyePACS's options in the order of its letters (the template lists them inline).
EYEPACS_OPTIONS = ("No DR", "mild DR", "moderate DR", "severe DR", "proliferative DR")


def text_of(template: str) -> str:
    """The template's text: what follows its image marker (the images go before it)."""
    for marker in _IMAGE_MARKERS:
        if template.startswith(marker):
            return template[len(marker) :]
    return template


def fill(template: str, values: dict[str, str]) -> str:
    """The template's text with each placeholder replaced by its value (exactly once each)."""
    text = text_of(template)
    for placeholder in values:
        if text.count(placeholder) != 1:
            raise ValueError(f"placeholder {placeholder!r} is not in the template exactly once")
    if not values:
        return text
    # one pass, so a value that happens to contain another placeholder is left as written
    pattern = re.compile("|".join(re.escape(p) for p in sorted(values, key=len, reverse=True)))
    return pattern.sub(lambda m: values[m.group(0)], text)


def ehrnoteqa_choices(choices: list[str]) -> str:
    """``CHOICE_A: ... CHOICE_B: ...``: what the row's "…" abbreviates, written out for all five."""
    return " ".join(f"CHOICE_{chr(ord('A') + i)}: {c}" for i, c in enumerate(choices))


@dataclass(frozen=True)
class Budget:
    """How many new tokens a report-mode run allows, and why (the report states none)."""

    max_new_tokens: int
    why: str


# The report gives no token budgets. These are named in each run's record; a cut reply is counted
# and listed as truncated, never silently scored.
THINKING_BUDGET = Budget(
    8192,
    "Gemma 3's output length; Google's MedQA notebook allows up to 10000 (max_tokens = max_model_len), so "
    "a thought long enough to be cut here is recorded as truncated",
)
BUDGETS: dict[str, Budget] = {
    "TEXT_MCQ": THINKING_BUDGET,
    "EHRNOTEQA": THINKING_BUDGET,
    "CXR_YES_NO": Budget(1024, "the prompt invites an argument before the answer; report silent"),
    "VQA": Budget(1024, "the prompt invites an argument before the answer; report silent"),
    "CT_US1": Budget(1024, "the prompt invites an argument before the answer; report silent"),
    "MRI_US1": Budget(1024, "the prompt invites an argument before the answer; report silent"),
    "CT_RATE": Budget(1024, "report silent; as the other yes/no forms"),
    "DERM": Budget(512, "the prompt asks for a letter; report silent"),
    "EYEPACS": Budget(512, "the prompt asks for a letter; report silent"),
    "LOCALIZE": Budget(1000, "Google's CXR localization notebook (max_new_tokens 1000)"),
    "WSI": Budget(512, "a brief diagnostic text; report silent"),
    "LAB": Budget(8192, "one call for the whole report (all pages); Gemma 3's output length"),
}

# Benchmarks each row was used for (the table's "task" column), for the run's record.
ROWS: dict[str, str] = {
    "TEXT_MCQ": "MedQA, PubMedQA, MedMCQA, MMLU, MedXpertQA (text), AfriMed",
    "CXR_YES_NO": "MIMIC-CXR, CheXpert, CXR14 (yes/no)",
    "VQA": "SLAKE, VQA-RAD",
    "WSI": "Pathology WSI",
    "DERM": "DermMCQA",
    "EYEPACS": "EyePACS",
    "EHRNOTEQA": "EHRNoteQA",
    "LAB": "Lab reports (EHR datasets 2–4, Mendeley)",
    "LOCALIZE": "Chest ImaGenome localization",
    "CT_US1": "CT-US1",
    "MRI_US1": "MRI-US1",
    "CT_RATE": "CT-RATE",
}


def template(name: str) -> str:
    """A template by its constant's name (``"CT_US1"``)."""
    value = globals()[name]
    assert isinstance(value, str)
    return value


def describe(name: str) -> dict[str, Any]:
    """What a run record says about the report prompt it used."""
    b = BUDGETS[name]
    return {
        "prompt": name,
        "source": f"{SOURCE}, row “{ROWS[name]}”",
        "template": template(name),
        "max_new_tokens": b.max_new_tokens,
        "max_new_tokens_why": b.why,
    }


__all__ = [
    "BUDGETS",
    "CT_RATE",
    "CT_US1",
    "CXR_YES_NO",
    "DERM",
    "EHRNOTEQA",
    "EYEPACS",
    "EYEPACS_OPTIONS",
    "LAB",
    "LOCALIZE",
    "MRI_US1",
    "PLACEHOLDERS",
    "SOURCE",
    "TEXT_MCQ",
    "VQA",
    "WSI",
    "PromptSet",
    "describe",
    "ehrnoteqa_choices",
    "fill",
    "prompts_field",
    "template",
    "text_of",
]
