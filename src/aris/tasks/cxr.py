"""Chest X-ray recipes: a draft report, and the comparison of a prior and a current film."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator

from aris.inputs.base import Kind, PreparedInput
from aris.tasks.base import Output, Task, TaskOptions, system_messages
from aris.tasks.parsing import (
    ParseError,
    answer_only,
    extract_json,
    match_option,
    norm,
    validation_messages,
)
from aris.types import Message, TextPart

# -- report ----------------------------------------------------------------------------------------


class CxrReportOut(Output):
    findings: str = Field(min_length=1)
    impression: str = Field(min_length=1)


class CxrReportOptions(TaskOptions):
    # "sections": the free-text report MedGemma writes, parsed by its headings (not constrained: a JSON
    # grammar would pull the model out of the register it was trained on); "json": asked for and
    # constrained to {"findings", "impression"}.
    format: Literal["sections", "json"] = "sections"


REPORT_PROMPT = (
    'Write a radiology report for this chest X-ray. Use exactly two sections, "FINDINGS:" and "IMPRESSION:".'
)
REPORT_JSON_PROMPT = (
    "Write a radiology report for this chest X-ray. Reply with a JSON object with two string fields: "
    '{"findings": "...", "impression": "..."}.'
)
_HEADING = re.compile(
    r"^[ \t#>*_-]*(findings|impression|recommendations?|comparison|indication|technique)[ \t*_]*[:：][ \t*_]*",
    re.IGNORECASE | re.MULTILINE,
)


def report_sections(text: str) -> dict[str, str]:
    """The text under each heading (lower-cased name -> text), for headings at a line start.

    A FINDINGS or IMPRESSION heading written twice (a draft then a revision, two reports) is a
    ParseError: which one is the report is not for the parser to guess.
    """
    marks = list(_HEADING.finditer(text))
    out: dict[str, str] = {}
    repeated: list[str] = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[m.end() : end].strip()
        name = m.group(1).lower()
        if name in out and name in ("findings", "impression") and name.upper() not in repeated:
            repeated.append(name.upper())
        out.setdefault(name, body)
    if repeated:
        raise ParseError(
            f"the reply has more than one {' and more than one '.join(h + ':' for h in repeated)} section; "
            "write a single report"
        )
    return out


class CxrReport(Task):
    name = "cxr-report"
    description = "Chest X-ray -> draft radiology report {findings, impression}."
    input_kinds: ClassVar[tuple[Kind, ...]] = ("cxr", "image")
    schema = CxrReportOut
    Options = CxrReportOptions
    max_new_tokens = 512

    def messages(self, inputs: list[PreparedInput], question: str | None, options: Any) -> list[Message]:
        o = self.opts(options)
        prompt = REPORT_JSON_PROMPT if o.format == "json" else REPORT_PROMPT
        if question:
            prompt += f"\nClinical indication: {question.strip()}"
        return [*system_messages(o), Message("user", [*inputs[0].parts, TextPart(prompt)])]

    def reply_schema(self, inputs: list[PreparedInput], options: Any) -> dict[str, Any] | None:
        return CxrReportOut.model_json_schema() if self.opts(options).format == "json" else None

    def parse(self, text: str, inputs: list[PreparedInput], options: Any) -> CxrReportOut:
        text = answer_only(text)  # a draft report in the thought is not the report
        data: dict[str, Any] | None = None
        if "{" in text:
            try:
                found = extract_json(text, dict).value
                if {"findings", "impression"} & {k.lower() for k in found}:
                    data = {k.lower(): v for k, v in found.items()}
            except ParseError:
                data = None
        if data is None:
            sections = report_sections(text)
            missing = [s.upper() for s in ("findings", "impression") if not sections.get(s)]
            if missing:
                raise ParseError(f"the report has no {' or '.join(m + ':' for m in missing)} section")
            data = sections
        try:
            return CxrReportOut(
                findings=str(data.get("findings") or ""), impression=str(data.get("impression") or "")
            )
        except ValidationError as e:
            raise ParseError(validation_messages(e)) from None

    def repair_prompt(self, errors: list[str], inputs: list[PreparedInput], options: Any) -> str:
        if self.opts(options).format == "json":
            return super().repair_prompt(errors, inputs, options)
        return (
            "Your report above could not be used: " + "; ".join(errors) + ". Rewrite it with exactly two "
            'sections, each on its own line: "FINDINGS:" then "IMPRESSION:".'
        )


# -- comparison --------------------------------------------------------------------------------------

CHANGES = ("improved", "stable", "worsened")
CHANGE_ALIASES = {
    "improved": (
        "improving",
        "improvement",
        "better",
        "resolved",
        "resolving",
        "decreased",
        "regressed",  # a finding that regresses gets better
        "regressing",
        "regression",
        "regress",
    ),
    "stable": ("unchanged", "no change", "same", "no interval change", "stable appearance"),
    "worsened": ("worse", "worsening", "increased", "progressed", "progression", "new"),
}
MS_CXR_T_FINDINGS = ("consolidation", "edema", "pleural effusion", "pneumonia", "pneumothorax")
Change = Literal["improved", "stable", "worsened"]


class CxrCompareOut(Output):
    narrative: str = ""
    changes: dict[str, Change]


class CxrCompareOptions(TaskOptions):
    findings: list[str] = Field(default_factory=lambda: list(MS_CXR_T_FINDINGS), min_length=1)

    @field_validator("findings", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v


COMPARE_PROMPT = (
    "Provide a comparison of these two images and include details from the image which students should "
    "take note of when reading longitudinal CXR. The first image is the prior study, the second image is "
    "the current study."
)


class CxrCompare(Task):
    name = "cxr-compare"
    description = (
        "Prior + current chest X-ray -> per finding improved/stable/worsened (MS-CXR-T), plus a narrative."
    )
    input_kinds: ClassVar[tuple[Kind, ...]] = ("cxr", "image")
    n_inputs = (2, 2)
    Options = CxrCompareOptions
    max_new_tokens = 512

    def messages(self, inputs: list[PreparedInput], question: str | None, options: Any) -> list[Message]:
        """``[prior image, current image, text]``, the longitudinal layout MedGemma was evaluated on."""
        o = self.opts(options)
        listing = "\n".join(f"- {f}: (A) Improved (B) Stable (C) Worsened" for f in o.findings)
        shape = ", ".join(f'"{f}": "improved|stable|worsened"' for f in o.findings)
        prompt = (
            f"{COMPARE_PROMPT}\n"
            + (f"{question.strip()}\n" if question else "")
            + "Then, for each finding below, answer how it changed from the prior to the current image:\n"
            + f"{listing}\n"
            + 'Reply with a JSON object: {"narrative": "<the comparison>", "changes": {'
            + shape
            + "}}"
        )
        prior, current = inputs
        return [*system_messages(o), Message("user", [*prior.parts, *current.parts, TextPart(prompt)])]

    def reply_schema(self, inputs: list[PreparedInput], options: Any) -> dict[str, Any] | None:
        o = self.opts(options)
        return {
            "type": "object",
            "properties": {
                "narrative": {"type": "string"},
                "changes": {
                    "type": "object",
                    "properties": {f: {"type": "string", "enum": list(CHANGES)} for f in o.findings},
                    "required": list(o.findings),
                    "additionalProperties": False,
                },
            },
            "required": ["narrative", "changes"],
            "additionalProperties": False,
        }

    def parse(self, text: str, inputs: list[PreparedInput], options: Any) -> CxrCompareOut:
        o = self.opts(options)
        text = answer_only(text)
        narrative = ""
        raw: dict[str, str] = {}
        try:
            data = extract_json(text, dict).value
            narrative = str(data.get("narrative") or "")
            changes = data.get("changes", data)
            if isinstance(changes, dict):
                raw = {str(k): str(v) for k, v in changes.items() if isinstance(v, str | int | float)}
        except ParseError:
            narrative, raw = text.strip(), _change_lines(text, o.findings)
        errors: list[str] = []
        out: dict[str, str] = {}
        for finding in o.findings:
            key = next((k for k in raw if norm(k) == norm(finding)), None)
            if key is None:
                errors.append(f"changes.{finding}: missing")
                continue
            # no near misses: the change words are short and near their opposites ("regressed" is one
            # letter from "progressed", "changed" from "unchanged", "unstable" from "stable")
            value = match_option(raw[key], CHANGES, aliases=CHANGE_ALIASES, fuzzy=False)
            if value is None:
                errors.append(
                    f"changes.{finding}: {raw[key]!r} is not one of improved/stable/worsened (A/B/C)"
                )
            else:
                out[finding] = value
        if errors:
            raise ParseError(errors)
        return CxrCompareOut(narrative=narrative, changes=out)  # type: ignore[arg-type]


def _change_lines(text: str, findings: list[str]) -> dict[str, str]:
    """'Pleural effusion: (B) Stable' lines from a reply that wrote no JSON."""
    out: dict[str, str] = {}
    for finding in findings:
        pattern = r"[\s_-]+".join(re.escape(w) for w in finding.split())
        matches = list(re.finditer(rf"(?im)^[\s*#-]*{pattern}[\s*]*[:=-]+\s*(.+)$", text))
        if matches:
            out[finding] = matches[-1].group(1)
    return out
