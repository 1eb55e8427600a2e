"""FHIR records: a summary, or the answer to a question, where every claim cites its resources.

Output schema: ``claims: [{text, sources: ["Observation/<id>", ...]}]`` (plus ``answer`` for
ehr-ask). A cited id must exist in the bundle: an unknown id fails validation and is repaired once
(a unique id prefix of 8+ characters, or a bare id, is accepted and completed to ``Type/id``).

Small records go to the model whole (the reader's rendering, every fact line tagged with its id).
Large ones, or ``mode="navigate"``, go through the EHR-navigator steps after Google's agent:

1. manifest -> the model picks the relevant resource types (constrained to the types present;
   an unusable pick falls back to every clinical type, with a warning),
2. per chosen type (in chunks that fit the context): the facts relevant to the question, each with
   its ids (facts citing unknown ids are dropped, with a warning),
3. the answer from those facts, validated and repaired once.

Every call is a step in ``Result.steps``.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import replace
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError

from aris.context import RunContext
from aris.engines.base import Engine
from aris.errors import InputError
from aris.inputs.base import Kind, PreparedInput
from aris.result import Result
from aris.tasks.base import OnToken, Output, Task, TaskOptions, Trace, system_messages
from aris.tasks.parsing import ParseError, extract_json, validation_messages
from aris.types import GenerationParams, Message

logger = logging.getLogger(__name__)

ADMIN_TYPES = {"Organization", "Practitioner", "PractitionerRole", "Location", "Device", "Endpoint"}
_TAG = re.compile(r"\[([A-Za-z]+/[^\]\s]+)\]\s*$")


class Claim(BaseModel):
    text: str = Field(min_length=1)
    sources: list[str] = Field(min_length=1)


class EhrSummaryOut(Output):
    claims: list[Claim] = Field(min_length=1)


class EhrAnswerOut(Output):
    answer: str = Field(min_length=1)
    claims: list[Claim] = Field(default_factory=list)


class Facts(BaseModel):
    facts: list[Claim] = Field(default_factory=list)


class EhrOptions(TaskOptions):
    mode: Literal["auto", "direct", "navigate"] = Field(
        default="auto", description="auto: the whole record if it fits the context, else the navigator"
    )
    max_facts_per_step: int = Field(default=20, ge=1)


# -- the record -----------------------------------------------------------------------------------


def resources_of(prepared: PreparedInput) -> dict[str, dict[str, Any]]:
    """``"Type/id"`` -> resource JSON, as the FHIR reader keeps it."""
    res = prepared.extra.get("resources")
    if not isinstance(res, dict) or not res:
        src = prepared.provenance.sources[0] if prepared.provenance.sources else None
        raise InputError(src, "holds no FHIR resources (read it with kind 'fhir')")
    return res


def resolve_source(cite: str, resources: dict[str, Any]) -> str | None:
    """The ``Type/id`` a citation means, or None. Brackets, 'urn:uuid:' and unique 8+ char prefixes are tolerated."""
    c = cite.strip().strip("[]()<>\"'` ").removeprefix("urn:uuid:")
    if c in resources:
        return c
    if "/" in c:
        rtype, _, rid = c.partition("/")
        if len(rid) >= 8:
            hits = [k for k in resources if k.startswith(f"{rtype}/{rid}")]
            return hits[0] if len(hits) == 1 else None
        return None
    if len(c) >= 8:
        hits = [k for k in resources if k.split("/", 1)[1].startswith(c)]
        return hits[0] if len(hits) == 1 else None
    return None


def check_claims(claims: list[Claim], resources: dict[str, Any]) -> tuple[list[Claim], list[str]]:
    """Claims with every source resolved to an existing ``Type/id``, and an error per unknown id."""
    errors: list[str] = []
    out: list[Claim] = []
    for i, claim in enumerate(claims):
        fixed: list[str] = []
        for s in claim.sources:
            key = resolve_source(s, resources)
            if key is None:
                errors.append(f"claims.{i}.sources: {s!r} is not a resource id in this record")
            elif key not in fixed:
                fixed.append(key)
        out.append(Claim(text=claim.text, sources=fixed or claim.sources))
    return out, errors


def manifest_text(resources: dict[str, dict[str, Any]]) -> str:
    """One line per resource type: count, and for observations the test names (what a navigator sees first)."""
    counts = Counter(k.split("/", 1)[0] for k in resources)
    lines = []
    for rtype, n in counts.most_common():
        line = f"- {rtype}: {n}"
        if rtype in ("Observation", "Condition", "MedicationRequest", "Procedure", "DiagnosticReport"):
            names = sorted(
                {
                    _display(r.get("code") or r.get("medicationCodeableConcept"))
                    for k, r in resources.items()
                    if k.startswith(rtype + "/")
                }
                - {""}
            )
            if names:
                line += " (" + "; ".join(names[:40]) + (" ..." if len(names) > 40 else "") + ")"
        lines.append(line)
    return "\n".join(lines)


def _display(cc: dict[str, Any] | None) -> str:
    if not cc:
        return ""
    return str(
        cc.get("text") or next((c.get("display") for c in cc.get("coding") or [] if c.get("display")), "")
    )


def type_lines(resources: dict[str, dict[str, Any]], rtype: str) -> list[str]:
    """The reader's rendering of one resource type: headings and fact lines ending in ``[Type/id]``."""
    sub = {k: r for k, r in resources.items() if k.startswith(rtype + "/")}
    by_url = {f"urn:uuid:{k.split('/', 1)[1]}": k for k in resources} | {k: k for k in resources}
    try:
        from aris.inputs.fhir import _Renderer  # the reader's own renderer: one format for both paths

        return [ln.text for ln in _Renderer(sub, by_url).lines()]
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - reader changed shape
        return [f"## {rtype}"] + [
            f"- {json.dumps(r, separators=(',', ':'))[:400]} [{k}]" for k, r in sub.items()
        ]


def chunks(lines: list[str], budget: int, count: Any) -> list[list[str]]:
    """Consecutive groups of lines under ``budget`` tokens; a fact line keeps its series heading."""
    out: list[list[str]] = []
    cur: list[str] = []
    used = 0
    heading = ""
    for line in lines:
        is_fact = bool(_TAG.search(line))
        if not is_fact:
            heading = line
        cost = count(line) + 1
        if cur and used + cost > budget:
            out.append(cur)
            cur, used = (
                ([heading] if is_fact and heading else []),
                count(heading) if is_fact and heading else 0,
            )
        cur.append(line)
        used += cost
    if cur and any(_TAG.search(x) for x in cur):
        out.append(cur)
    return out


# -- prompts ----------------------------------------------------------------------------------------

RECORD_INTRO = (
    "Below is a patient's health record from FHIR. Each fact line ends with the id of the resource it "
    "comes from, in brackets, e.g. [Observation/abc-123]."
)
CLAIMS_RULE = (
    'Every claim must cite, in "sources", the ids of the resources it rests on, exactly as shown in '
    'brackets (e.g. "Observation/abc-123"). Use only facts from the record.'
)
SUMMARY_TASK = (
    "Summarize this record for a clinician: active problems, current medications, key results and their "
    "trends, and recent encounters. Write one short claim per statement. "
    'Reply with a JSON object: {"claims": [{"text": "...", "sources": ["Type/id", ...]}]}.'
)
ASK_TASK = (
    'Answer the question from the record. Reply with a JSON object: {"answer": "<short answer>", "claims": '
    '[{"text": "<a fact the answer rests on>", "sources": ["Type/id", ...]}]}.'
)


def claim_schema(ids: list[str] | None = None) -> dict[str, Any]:
    src: dict[str, Any] = {"type": "string"}
    if ids is not None and len(ids) <= 500:
        src = {"type": "string", "enum": ids}
    return {
        "type": "object",
        "properties": {"text": {"type": "string"}, "sources": {"type": "array", "items": src, "minItems": 1}},
        "required": ["text", "sources"],
    }


class _Ehr(Task):
    input_kinds: ClassVar[tuple[Kind, ...]] = ("fhir",)
    read_kind = "fhir"
    Options = EhrOptions
    out_model: ClassVar[type[Output]]
    max_new_tokens = 768

    def instruction(self, question: str | None) -> str:
        raise NotImplementedError

    def messages(self, inputs: list[PreparedInput], question: str | None, options: Any) -> list[Message]:
        """The direct layout: the whole record, then the instruction and question last."""
        o = self.opts(options)
        record = inputs[0].text or ""
        return [
            *system_messages(o),
            Message.user(f"{RECORD_INTRO}\n\n{record}\n\n{CLAIMS_RULE}\n{self.instruction(question)}"),
        ]

    def reply_schema(self, inputs: list[PreparedInput], options: Any) -> dict[str, Any] | None:
        ids = sorted(resources_of(inputs[0])) if inputs else None
        claims = {"type": "array", "items": claim_schema(ids)}
        if self.out_model is EhrAnswerOut:
            return {
                "type": "object",
                "properties": {"answer": {"type": "string"}, "claims": claims},
                "required": ["answer", "claims"],
            }
        return {"type": "object", "properties": {"claims": claims | {"minItems": 1}}, "required": ["claims"]}

    def parse(self, text: str, inputs: list[PreparedInput], options: Any) -> Output:
        resources = resources_of(inputs[0])
        data = extract_json(text, (dict, list)).value
        if isinstance(data, list):  # the claims alone, without their wrapper object
            data = {"claims": data}
        try:
            value = self.out_model.model_validate(data)
        except ValidationError as e:
            raise ParseError(validation_messages(e)) from None
        claims, errors = check_claims(value.claims, resources)  # type: ignore[attr-defined]
        if errors:
            raise ParseError(errors)
        return value.model_copy(update={"claims": claims})

    def repair_prompt(self, errors: list[str], inputs: list[PreparedInput], options: Any) -> str:
        # Not the schema itself: its enum of every resource id would repeat the whole record.
        return "\n".join(
            [
                "Your reply above could not be used:",
                *(f"- {e}" for e in errors[:12]),
                "Reply again with ONLY the corrected JSON object, citing resource ids exactly as shown in "
                "brackets in the record.",
            ]
        )

    # -- navigator --------------------------------------------------------------------------------

    def fits(
        self, engine: Engine, inputs: list[PreparedInput], question: str | None, params: GenerationParams
    ) -> bool:
        """Whether the whole record fits: not trimmed by the reader, and within the engine's context."""
        trimmed = (inputs[0].provenance.details.get("trimmed") or {}).get("dropped")
        if trimmed:
            return False
        prompt = self.messages(inputs, question, self.Options())[-1].parts[0]
        tokens = engine.count_text_tokens(getattr(prompt, "text", ""))
        return tokens + params.max_new_tokens + 64 <= engine.capabilities.max_context

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
        question = self.check(inputs, question, o)
        gp = self.generation_params(engine, params, o, inputs)
        if o.mode == "direct" or (o.mode == "auto" and self.fits(engine, inputs, question, gp)):
            return super().run(engine, inputs, question, options=o, params=params, on_token=on_token, ctx=ctx)
        return self.navigate(engine, inputs, question, o, gp, on_token, ctx)

    def navigate(
        self,
        engine: Engine,
        inputs: list[PreparedInput],
        question: str | None,
        o: Any,
        gp: GenerationParams,
        on_token: OnToken | None,
        ctx: RunContext | None = None,
    ) -> Result:
        resources = resources_of(inputs[0])
        trace = Trace(self, engine, inputs, on_token, ctx)
        warnings: list[str] = []
        goal = f"Question: {question.strip()}" if question else "Goal: a clinical summary of this patient."
        types = sorted({k.split("/", 1)[0] for k in resources})
        clinical = [t for t in types if t not in ADMIN_TYPES]
        small = replace(gp, max_new_tokens=min(gp.max_new_tokens, 256))

        # 1. manifest -> resource types
        msgs = [
            *system_messages(o),
            Message.user(
                "You are navigating a patient's FHIR record. This is its manifest (resource types, counts "
                f"and names):\n{manifest_text(resources)}\n\n{goal}\n"
                "Which resource types are needed? Reply with a JSON list of resource type names from the manifest."
            ),
        ]
        schema = {"type": "array", "items": {"type": "string", "enum": types}, "minItems": 1}
        r = trace.generate("manifest", msgs, _constrained(engine, small, o, schema), stream=False)
        picked = _picked_types(r.text, types)
        if not picked:
            picked = clinical
            warnings.append(
                "navigator: the model's choice of resource types was unusable; all clinical types were read"
            )
        if "Patient" in types and "Patient" not in picked:
            picked = ["Patient", *picked]

        # 2. facts per resource type, in chunks that fit
        budget = max(512, min(6000, engine.capabilities.max_context - small.max_new_tokens - 600))
        facts: list[Claim] = []
        fact_schema = {
            "type": "object",
            "properties": {"facts": {"type": "array", "items": claim_schema(sorted(resources))}},
            "required": ["facts"],
        }
        for rtype in picked:
            for n, chunk in enumerate(
                chunks(type_lines(resources, rtype), budget, engine.count_text_tokens), 1
            ):
                msgs = [
                    *system_messages(o),
                    Message.user(
                        f"{RECORD_INTRO}\nThese are its {rtype} resources:\n"
                        + "\n".join(chunk)
                        + f"\n\n{goal}\n"
                        "List the facts from these resources that matter for it, each citing its ids. "
                        'Reply with a JSON object: {"facts": [{"text": "...", "sources": ["Type/id", ...]}]}.'
                    ),
                ]
                step = trace.generate(
                    f"facts:{rtype}:{n}", msgs, _constrained(engine, small, o, fact_schema), stream=False
                )
                try:
                    got = Facts.model_validate(extract_json(step.text, dict).value).facts
                except (ParseError, ValidationError):
                    warnings.append(f"navigator: no usable facts from {rtype} (part {n})")
                    continue
                good = [c for c in check_claims(got, resources)[0] if all(s in resources for s in c.sources)]
                if len(good) < len(got):
                    warnings.append(
                        f"navigator: {len(got) - len(good)} {rtype} facts citing unknown ids dropped"
                    )
                facts.extend(good[: o.max_facts_per_step])
        if not facts:
            # Nothing usable came back: fall back to the record's own lines for the chosen types, so the
            # answer still rests on cited facts (taken verbatim, not written by the model).
            warnings.append("navigator: no facts extracted; the record's own lines were used")
            for rtype in picked:
                for line in type_lines(resources, rtype):
                    if m := _TAG.search(line):
                        facts.append(Claim(text=line[: m.start()].strip(" -"), sources=[m.group(1)]))

        # 3. the answer from the facts
        listing = "\n".join(f"- {c.text} [{', '.join(c.sources)}]" for c in facts)
        budget_chars = max(2000, (engine.capabilities.max_context - gp.max_new_tokens - 600) * 3)
        if len(listing) > budget_chars:
            listing = listing[:budget_chars].rsplit("\n", 1)[0]
            warnings.append("navigator: the fact list was cut to fit the context")
        msgs = [
            *system_messages(o),
            Message.user(
                "Facts from a patient's FHIR record, each followed by the ids of its resources in brackets:\n"
                f"{listing}\n\n{CLAIMS_RULE}\n{self.instruction(question)}"
            ),
        ]
        first = trace.generate("answer", msgs, gp)
        outcome = self.parse_with_repair(trace, msgs, gp, first.text, inputs, o)
        outcome.warnings = warnings + outcome.warnings
        return self.build(trace, outcome, inputs, o)


def _constrained(engine: Engine, p: GenerationParams, o: Any, schema: dict[str, Any]) -> GenerationParams:
    ok = o.constrain and engine.capabilities.json_schema and not p.think
    return replace(p, json_schema=schema if ok else None)


def _picked_types(text: str, types: list[str]) -> list[str]:
    try:
        value = extract_json(text, (list, dict)).value
    except ParseError:
        value = re.findall(r"[A-Z][A-Za-z]+", text)
    if isinstance(value, dict):
        value = next((v for v in value.values() if isinstance(v, list)), [])
    lower = {t.lower(): t for t in types}
    out: list[str] = []
    for v in value if isinstance(value, list) else []:
        t = lower.get(str(v).strip().lower())
        if t and t not in out:
            out.append(t)
    return out


class EhrSummary(_Ehr):
    name = "ehr-summary"
    description = "FHIR record -> clinical summary; each claim cites the resource ids it rests on."
    out_model = EhrSummaryOut

    def instruction(self, question: str | None) -> str:
        return SUMMARY_TASK + (f"\nFocus: {question.strip()}" if question else "")


class EhrAsk(_Ehr):
    name = "ehr-ask"
    description = "FHIR record + question -> answer; each claim cites the resource ids it rests on."
    out_model = EhrAnswerOut
    needs_question = True

    def instruction(self, question: str | None) -> str:
        return f"Question: {(question or '').strip()}\n{ASK_TASK}"
