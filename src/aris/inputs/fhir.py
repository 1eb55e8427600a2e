"""FHIR R4 records (Bundle JSON or NDJSON of resources) as a patient manifest plus compact text.

MedGemma's EHR results come from Synthea FHIR records, and Google's EHR navigator reads a
patient's resource manifest, picks the relevant types and condenses facts per resource. This
module does the reading and condensing once, without a model:

- parse and validate with ``fhir.resources.R4B`` (R4 content; the package's default is R5, which
  rejects R4 bundles),
- a manifest: resource types, counts and date ranges,
- one text rendering per resource type: Observations as dated series (value, unit, reference range,
  flag), Conditions with status and onset/abatement, MedicationRequests, Encounters,
  DiagnosticReports, then anything else on one line each. Every line that states a fact ends with
  its resource id, ``[Observation/abc]``, so a task can make the model cite its sources,
- trimmed to a token budget: the least relevant lines go first (administrative resources, then
  encounters, vital signs, reports, labs, medications, conditions; the patient line never), oldest
  first within each tier; what was dropped is said at the end of the text and in the provenance.

``PreparedInput.text`` and its single text part hold the rendering; ``extra`` holds the manifest
and ``resources`` (``"Type/id"`` -> the resource's JSON) for tasks that want structured data.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aris.inputs.base import PreparedInput
from aris.inputs.errors import CorruptFileError, InvalidFHIRError
from aris.types import Provenance, TextPart

logger = logging.getLogger(__name__)

TOKEN_BUDGET = 8000
CHARS_PER_TOKEN = 3  # the same deliberately high estimate as Engine.count_text_tokens

# Relevance tiers: lines in lower tiers are dropped first when the budget is short.
TIER_ADMIN, TIER_ENCOUNTER, TIER_VITALS, TIER_OTHER, TIER_LAB, TIER_MEDS, TIER_CONDITION, TIER_PATIENT = (
    range(8)
)
ADMIN_TYPES = {
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "Device",
    "Provenance",
    "Claim",
    "ExplanationOfBenefit",
    "Coverage",
    "CareTeam",
    "SupplyDelivery",
    "Endpoint",
    "HealthcareService",
}
VITAL_CATEGORIES = {"vital-signs", "survey", "social-history"}
SECTION_ORDER = ["Patient", "Condition", "MedicationRequest", "Observation", "DiagnosticReport", "Encounter"]
SYSTEM_NAMES = {
    "http://loinc.org": "LOINC",
    "http://snomed.info/sct": "SNOMED",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://hl7.org/fhir/sid/icd-10": "ICD-10",
    "http://hl7.org/fhir/sid/cvx": "CVX",
}


@dataclass
class Line:
    text: str
    tier: int
    date: str = ""  # ISO date, "" when undated (sorts as oldest)
    key: str | None = None  # "Type/id" of the resource a fact line states; None for headings
    hid: str | None = None  # a heading's id
    under: tuple[str, ...] = ()  # the headings a fact line sits under


# --- loading and validation ----------------------------------------------------------------------


def _load(path: Path) -> tuple[list[dict[str, Any]], str, str | None]:
    """Raw resources, the container kind ('bundle', 'ndjson', 'resource') and the bundle type."""
    files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".ndjson")) if path.is_dir() else [path]
    if not files:
        raise InvalidFHIRError(path, "folder holds no .json or .ndjson file")
    resources: list[dict[str, Any]] = []
    container, bundle_type = "ndjson", None
    for f in files:
        items, container, bundle_type = _load_file(f)
        resources.extend(items)
    if len(files) > 1:
        container, bundle_type = "folder", None
    return resources, container, bundle_type


def _load_file(path: Path) -> tuple[list[dict[str, Any]], str, str | None]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CorruptFileError(path, f"cannot be read ({e.strerror or type(e).__name__})") from e
    if not raw.strip():
        raise CorruptFileError(path, "empty file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidFHIRError(path, f"not UTF-8 text (byte {e.start})") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        if "resourceType" not in data:
            raise InvalidFHIRError(path, "JSON object without resourceType: not FHIR")
        if data["resourceType"] == "Bundle":
            _validate(path, data, "Bundle", where="")
            entries = data.get("entry") or []
            out = []
            for i, entry in enumerate(entries):
                if "resource" in entry:
                    res = dict(entry["resource"])
                    if entry.get("fullUrl"):
                        res["__fullUrl"] = entry["fullUrl"]
                    out.append(res)
                else:
                    logger.debug("bundle entry %d has no resource", i)
            return out, "bundle", data.get("type")
        _validate(path, data, data["resourceType"], where="")
        return [data], "resource", None
    if data is not None:
        raise InvalidFHIRError(
            path, f"JSON {type(data).__name__} at the top level: not a FHIR Bundle or resource"
        )
    # NDJSON: one resource per line
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            res = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidFHIRError(path, f"line {n}: not JSON ({e.msg}, column {e.colno})") from e
        if not isinstance(res, dict) or "resourceType" not in res:
            raise InvalidFHIRError(path, f"line {n}: not a FHIR resource (no resourceType)")
        _validate(path, res, res["resourceType"], where=f"line {n}: ")
        out.append(res)
    return out, "ndjson", None


def _validate(path: Path, data: dict[str, Any], resource_type: str, where: str) -> None:
    """Validate against the R4 (R4B) model; raise InvalidFHIRError with the first problem."""
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError) as e:
        raise InvalidFHIRError(path, f"{where}unknown FHIR R4 resourceType {resource_type!r}") from e
    try:
        model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = _loc(err.get("loc", ()))
        if loc.startswith("entry[") and isinstance(data.get("entry"), list):
            i = err["loc"][1]
            rtype = (data["entry"][i].get("resource") or {}).get("resourceType", "?")
            loc = f"{loc} ({rtype})"
        raise InvalidFHIRError(
            path,
            f"{where}invalid {resource_type}: {loc}: {err.get('msg', 'invalid')} ({e.error_count()} problem{'s' if e.error_count() != 1 else ''})",
        ) from e
    except (TypeError, ValueError) as e:  # fhir_core raises a few plain errors for malformed values
        raise InvalidFHIRError(path, f"{where}invalid {resource_type}: {e}") from e


def _loc(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


# --- small renderers -----------------------------------------------------------------------------


def _date(value: Any) -> str:
    return value[:10] if isinstance(value, str) else ""


def _concept(cc: dict[str, Any] | None, with_code: bool = True) -> str:
    if not cc:
        return ""
    codings = cc.get("coding") or []
    name = cc.get("text") or next((c.get("display") for c in codings if c.get("display")), "") or ""
    if with_code and codings:
        c = codings[0]
        system = SYSTEM_NAMES.get(c.get("system", ""), "")
        if c.get("code"):
            code = f"{system} {c['code']}".strip()
            name = f"{name} ({code})" if name else code
    return name


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _quantity(q: dict[str, Any] | None) -> str:
    if not q or q.get("value") is None:
        return ""
    unit = q.get("unit") or q.get("code") or ""
    return f"{q.get('comparator', '')}{_num(q['value'])} {unit}".strip()


def _value(obj: dict[str, Any]) -> str:
    if "valueQuantity" in obj:
        return _quantity(obj["valueQuantity"])
    if "valueCodeableConcept" in obj:
        return _concept(obj["valueCodeableConcept"], with_code=False)
    for key in ("valueString", "valueInteger", "valueBoolean", "valueDateTime", "valueTime"):
        if key in obj:
            return str(obj[key])
    if "valueRange" in obj:
        r = obj["valueRange"]
        return f"{_quantity(r.get('low'))}-{_quantity(r.get('high'))}"
    if "valueRatio" in obj:
        r = obj["valueRatio"]
        return f"{_quantity(r.get('numerator'))}/{_quantity(r.get('denominator'))}"
    if "valuePeriod" in obj:
        p = obj["valuePeriod"]
        return f"{_date(p.get('start'))} to {_date(p.get('end'))}"
    if "dataAbsentReason" in obj:
        return f"absent ({_concept(obj['dataAbsentReason'], with_code=False)})"
    return ""


def _ref_range(obs: dict[str, Any]) -> str:
    out = []
    for rr in obs.get("referenceRange") or []:
        if rr.get("text"):
            out.append(rr["text"])
            continue
        lo = _num(rr["low"]["value"]) if (rr.get("low") or {}).get("value") is not None else ""
        hi = _num(rr["high"]["value"]) if (rr.get("high") or {}).get("value") is not None else ""
        if lo and hi:
            out.append(f"{lo}-{hi}")
        elif lo:
            out.append(f">={lo}")
        elif hi:
            out.append(f"<={hi}")
    return f" (ref {'; '.join(out)})" if out else ""


def _flag(obs: dict[str, Any]) -> str:
    codes = [
        c.get("code") for i in obs.get("interpretation") or [] for c in i.get("coding") or [] if c.get("code")
    ]
    return f" {','.join(codes)}" if codes else ""


def _status(cc: dict[str, Any] | None) -> str:
    if not cc:
        return ""
    codings = cc.get("coding") or []
    return str((codings[0].get("code") if codings else None) or cc.get("text", ""))


def _obs_date(r: dict[str, Any]) -> str:
    return _date(
        r.get("effectiveDateTime")
        or (r.get("effectivePeriod") or {}).get("start")
        or r.get("effectiveInstant")
        or r.get("issued")
    )


def resource_date(r: dict[str, Any]) -> str:
    """The clinically relevant date of a resource (when it happened, not when it was recorded)."""
    t = r.get("resourceType")
    if t == "Observation" or t == "DiagnosticReport":
        return _obs_date(r)
    if t == "Condition":
        return _date(
            r.get("onsetDateTime") or (r.get("onsetPeriod") or {}).get("start") or r.get("recordedDate")
        )
    if t == "MedicationRequest":
        return _date(r.get("authoredOn"))
    if t == "Encounter":
        return _date((r.get("period") or {}).get("start"))
    for key in (
        "effectiveDateTime",
        "performedDateTime",
        "occurrenceDateTime",
        "date",
        "issued",
        "recorded",
        "created",
    ):
        if isinstance(r.get(key), str):
            return _date(r[key])
    for key in ("performedPeriod", "period", "billablePeriod"):
        if isinstance(r.get(key), dict):
            return _date(r[key].get("start"))
    return ""


# --- rendering -----------------------------------------------------------------------------------


class _Renderer:
    def __init__(self, resources: dict[str, dict[str, Any]], by_url: dict[str, str]) -> None:
        self.resources = resources
        self.by_url = by_url

    def ref(self, reference: dict[str, Any] | None) -> str | None:
        """'Type/id' for a reference, resolving bundle-local urn:uuid references."""
        if not reference or not reference.get("reference"):
            return None
        r = reference["reference"]
        return self.by_url.get(r) or (r if "/" in r and not r.startswith("urn:") else None)

    def ref_name(self, reference: dict[str, Any] | None) -> str:
        key = self.ref(reference)
        res = self.resources.get(key or "")
        if res is not None:
            return _concept(res.get("code"), with_code=False) or key or ""
        return (reference or {}).get("display") or key or ""

    def lines(self) -> list[Line]:
        by_type: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for key, r in self.resources.items():
            by_type[r["resourceType"]].append((key, r))
        out: list[Line] = []
        order = SECTION_ORDER + sorted(t for t in by_type if t not in SECTION_ORDER)
        for rtype in order:
            items = by_type.get(rtype)
            if not items:
                continue
            render = getattr(self, f"_{rtype}", None)
            out.extend(render(items) if render else self._generic(rtype, items))
        return out

    def _Patient(self, items: list[tuple[str, dict[str, Any]]]) -> list[Line]:
        lines = [Line("## Patient", TIER_PATIENT, hid="sec:Patient")]
        for key, r in items:
            bits = [r.get("gender") or "gender unknown"]
            if r.get("birthDate"):
                bits.append(f"born {r['birthDate']}")
            if r.get("deceasedDateTime"):
                bits.append(f"died {_date(r['deceasedDateTime'])}")
            elif r.get("deceasedBoolean"):
                bits.append("deceased")
            lines.append(Line(f"- {', '.join(bits)} [{key}]", TIER_PATIENT, "", key, under=("sec:Patient",)))
        return lines

    def _Condition(self, items: list[tuple[str, dict[str, Any]]]) -> list[Line]:
        lines = [Line(f"## Conditions ({len(items)})", TIER_CONDITION, hid="sec:Condition")]
        for key, r in sorted(items, key=lambda kv: resource_date(kv[1])):
            status = ", ".join(
                s for s in (_status(r.get("clinicalStatus")), _status(r.get("verificationStatus"))) if s
            )
            when = []
            onset = resource_date(r)
            if onset:
                when.append(f"onset {onset}")
            abated = _date(r.get("abatementDateTime") or (r.get("abatementPeriod") or {}).get("start"))
            if abated:
                when.append(f"abated {abated}")
            text = f"- {_concept(r.get('code'))}: {status or 'status unknown'}"
            text += f"; {', '.join(when)}" if when else ""
            lines.append(Line(f"{text} [{key}]", TIER_CONDITION, onset, key, under=("sec:Condition",)))
        return lines

    def _MedicationRequest(self, items: list[tuple[str, dict[str, Any]]]) -> list[Line]:
        lines = [Line(f"## Medication requests ({len(items)})", TIER_MEDS, hid="sec:MedicationRequest")]
        for key, r in sorted(items, key=lambda kv: resource_date(kv[1])):
            date = resource_date(r)
            med = _concept(r.get("medicationCodeableConcept")) or self.ref_name(r.get("medicationReference"))
            bits = [f"{r.get('status', '?')} {r.get('intent', '')}".strip()]
            dosage = "; ".join(d["text"] for d in r.get("dosageInstruction") or [] if d.get("text"))
            if dosage:
                bits.append(dosage)
            reasons = [self.ref_name(x) for x in r.get("reasonReference") or []]
            reasons += [_concept(x, with_code=False) for x in r.get("reasonCode") or []]
            if any(reasons):
                bits.append("for " + ", ".join(x for x in reasons if x))
            text = f"- {date or 'undated'} {med or 'medication'}: {'; '.join(bits)} [{key}]"
            lines.append(Line(text, TIER_MEDS, date, key, under=("sec:MedicationRequest",)))
        return lines

    def _Observation(self, items: list[tuple[str, dict[str, Any]]]) -> list[Line]:
        series: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        tiers: dict[str, int] = {}
        for key, r in items:
            name = _concept(r.get("code")) or "Observation"
            series[name].append((key, r))
            cats = {c.get("code") for cat in r.get("category") or [] for c in cat.get("coding") or []}
            tiers[name] = TIER_VITALS if cats & VITAL_CATEGORIES else TIER_LAB
        lines = [
            Line(
                f"## Observations ({len(items)}; dated series, oldest first)", TIER_LAB, hid="sec:Observation"
            )
        ]
        # labs before vital signs, then by name: the order a clinician scans a results page
        for name in sorted(series, key=lambda n: (tiers[n] != TIER_LAB, n.lower())):
            tier = tiers[name]
            lines.append(Line(f"{name}:", tier, hid=f"series:{name}"))
            for key, r in sorted(series[name], key=lambda kv: _obs_date(kv[1])):
                date = _obs_date(r)
                if r.get("component"):
                    value = ", ".join(
                        f"{_concept(c.get('code'), with_code=False)} {_value(c)}".strip()
                        for c in r["component"]
                    )
                else:
                    value = _value(r)
                status = (
                    "" if r.get("status") in ("final", "amended", "corrected", None) else f" ({r['status']})"
                )
                text = f"  {date or 'undated'} {value or 'no value'}{_ref_range(r)}{_flag(r)}{status} [{key}]"
                lines.append(Line(text, tier, date, key, under=("sec:Observation", f"series:{name}")))
        return lines

    def _DiagnosticReport(self, items: list[tuple[str, dict[str, Any]]]) -> list[Line]:
        lines = [Line(f"## Diagnostic reports ({len(items)})", TIER_OTHER, hid="sec:DiagnosticReport")]
        for key, r in sorted(items, key=lambda kv: resource_date(kv[1])):
            date = resource_date(r)
            results = [k for k in (self.ref(x) for x in r.get("result") or []) if k]
            bits = [r.get("status", "?")]
            if results:
                bits.append("results " + ", ".join(results))
            if r.get("conclusion"):
                bits.append(f"conclusion: {r['conclusion']}")
            text = f"- {date or 'undated'} {_concept(r.get('code'))}: {'; '.join(bits)} [{key}]"
            lines.append(Line(text, TIER_OTHER, date, key, under=("sec:DiagnosticReport",)))
        return lines

    def _Encounter(self, items: list[tuple[str, dict[str, Any]]]) -> list[Line]:
        lines = [Line(f"## Encounters ({len(items)})", TIER_ENCOUNTER, hid="sec:Encounter")]
        for key, r in sorted(items, key=lambda kv: resource_date(kv[1])):
            date = resource_date(r)
            cls = (r.get("class") or {}).get("code", "")
            kind = "; ".join(_concept(t, with_code=False) for t in r.get("type") or [])
            reasons = [_concept(x, with_code=False) for x in r.get("reasonCode") or []]
            reasons += [self.ref_name(x) for x in r.get("reasonReference") or []]
            text = f"- {date or 'undated'} {cls} {kind}".rstrip() + f": {r.get('status', '?')}"
            if any(reasons):
                text += "; reason " + ", ".join(x for x in reasons if x)
            lines.append(Line(f"{text} [{key}]", TIER_ENCOUNTER, date, key, under=("sec:Encounter",)))
        return lines

    def _generic(self, rtype: str, items: list[tuple[str, dict[str, Any]]]) -> list[Line]:
        tier = TIER_ADMIN if rtype in ADMIN_TYPES else TIER_OTHER
        lines = [Line(f"## {rtype} ({len(items)})", tier, hid=f"sec:{rtype}")]
        for key, r in sorted(items, key=lambda kv: resource_date(kv[1])):
            date = resource_date(r)
            types = r.get("type") if isinstance(r.get("type"), list) else []
            what = (
                _concept(r.get("code"))
                or _concept(r.get("vaccineCode"))
                or (_concept(types[0]) if types else "")
                or (r["name"] if isinstance(r.get("name"), str) else "")
            )
            status = r.get("status", "")
            text = f"- {date + ' ' if date else ''}{what or rtype}{': ' + status if status else ''} [{key}]"
            lines.append(Line(text, tier, date, key, under=(f"sec:{rtype}",)))
        return lines


def _tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _trim(lines: list[Line], budget: int) -> tuple[list[Line], Counter[str]]:
    """Drop the least relevant, oldest fact lines until the text fits; headings follow their lines."""
    total = sum(_tokens(ln.text) + 1 for ln in lines)
    dropped: Counter[str] = Counter()
    if total <= budget:
        return lines, dropped
    order = sorted(
        (i for i, ln in enumerate(lines) if ln.key and ln.tier < TIER_PATIENT),
        key=lambda i: (lines[i].tier, lines[i].date, i),
    )
    gone: set[int] = set()
    for i in order:
        if total <= budget:
            break
        gone.add(i)
        total -= _tokens(lines[i].text) + 1
        dropped[lines[i].key.split("/")[0]] += 1  # type: ignore[union-attr]
    kept = [ln for i, ln in enumerate(lines) if i not in gone]
    live = {h for ln in kept for h in ln.under}
    return [ln for ln in kept if ln.hid is None or ln.hid in live], dropped


def read_fhir(path: str | Path, *, token_budget: int = TOKEN_BUDGET) -> PreparedInput:
    """Read an R4 Bundle, an NDJSON file of resources (or a folder of them) into manifest + text.

    Raises
    ------
    InvalidFHIRError
        Not JSON/NDJSON, not FHIR, or failing R4 validation (the first problem is named).
    CorruptFileError
        Empty or unreadable.
    """
    path = Path(path)
    raw, container, bundle_type = _load(path)
    if not raw:
        raise InvalidFHIRError(path, "no resources (empty Bundle)")
    resources: dict[str, dict[str, Any]] = {}
    by_url: dict[str, str] = {}
    for n, r in enumerate(raw):
        url = r.pop("__fullUrl", None)
        rid = r.get("id") or (url.rsplit(":", 1)[-1].rsplit("/", 1)[-1] if url else f"#{n + 1}")
        key = f"{r['resourceType']}/{rid}"
        resources[key] = r
        if url:
            by_url[url] = key
        by_url[key] = key
    lines = _Renderer(resources, by_url).lines()
    counts = Counter(r["resourceType"] for r in resources.values())
    dates: dict[str, list[str]] = defaultdict(list)
    for r in resources.values():
        d = resource_date(r)
        if d:
            dates[r["resourceType"]].append(d)
    all_dates = sorted(d for ds in dates.values() for d in ds)
    manifest: dict[str, Any] = {
        "container": container,
        "bundle_type": bundle_type,
        "total": len(resources),
        "patients": counts.get("Patient", 0),
        "date_range": [all_dates[0], all_dates[-1]] if all_dates else None,
        "resource_types": {
            t: {
                "count": c,
                "first": min(dates[t]) if dates[t] else None,
                "last": max(dates[t]) if dates[t] else None,
            }
            for t, c in counts.most_common()
        },
    }
    summary = ", ".join(f"{c} {t}" for t, c in counts.most_common())
    span = f", {all_dates[0]} to {all_dates[-1]}" if all_dates else ""
    head = f"FHIR record: {len(resources)} resources ({summary}){span}."
    full_tokens = _tokens(head) + sum(_tokens(ln.text) + 1 for ln in lines)
    kept, dropped = _trim(lines, max(0, token_budget - _tokens(head) - 40))
    body = "\n".join(ln.text for ln in kept)
    text = f"{head}\n\n{body}"
    warnings: list[str] = []
    trimmed: dict[str, Any] = {"dropped": dict(dropped), "full_tokens": full_tokens}
    if dropped:
        note = ", ".join(f"{c} {t}" for t, c in dropped.most_common())
        text += f"\n\n(Trimmed to fit {token_budget} tokens: {note} lines omitted, least relevant and oldest first.)"
        warnings.append(f"rendering trimmed to {token_budget} tokens: {note} lines omitted")
    trimmed["kept_tokens"] = _tokens(text)
    if counts.get("Patient", 0) > 1:
        warnings.append(f"{counts['Patient']} patients in one record: facts of different patients are mixed")
    logger.info(
        "fhir: %d resources, %d types, %d lines dropped", len(resources), len(counts), sum(dropped.values())
    )
    details = {"manifest": manifest, "token_budget": token_budget, "trimmed": trimmed}
    return PreparedInput(
        kind="fhir",
        parts=[TextPart(text)],
        provenance=Provenance(kind="fhir", sources=[str(path)], details=details, warnings=warnings),
        text=text,
        extra={"manifest": manifest, "resources": resources},
    )
