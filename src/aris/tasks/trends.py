"""Lab and vital-sign trends from FHIR Observations: the numbers from code, the narrative from the model.

Per test (LOINC code and unit): values over time, least-squares slope per year, change since the
previous value, reference range and out-of-range flags. The model is shown that computed table and
writes a narrative over it; every number in ``Result.parsed["series"]`` comes from this module.

Reference ranges come from the Observation's ``referenceRange`` when it has one; otherwise from the
small built-in table of typical adult ranges below (only when the unit matches exactly), labelled
as such. Ranges differ by laboratory, age and sex: the table is a screening aid, not a lab's range.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field, field_validator

from aris.errors import InputError
from aris.inputs.base import Kind, PreparedInput
from aris.tasks.base import Output, Task, TaskOptions, system_messages
from aris.tasks.ehr import resources_of
from aris.tasks.parsing import ParseError, answer_only
from aris.types import Message

SECONDS_PER_YEAR = 365.25 * 24 * 3600
BUILTIN_SOURCE = "typical adult range (built-in, not the lab's)"

# LOINC code -> (unit as FHIR writes it, low, high); None = no bound on that side.
TYPICAL_RANGES: dict[str, tuple[str, float | None, float | None]] = {
    "4548-4": ("%", 4.0, 5.6),  # HbA1c: 5.7-6.4 prediabetes, >= 6.5 diabetes (ADA)
    "2345-7": ("mg/dL", 70.0, 99.0),  # glucose, fasting
    "2093-3": ("mg/dL", None, 199.0),  # total cholesterol, desirable < 200
    "2571-8": ("mg/dL", None, 149.0),  # triglycerides, normal < 150
    "2085-9": ("mg/dL", 40.0, None),  # HDL, low < 40
    "13457-7": ("mg/dL", None, 99.0),  # LDL, optimal < 100
    "2160-0": ("mg/dL", 0.6, 1.3),  # creatinine (sex-independent span)
    "2823-3": ("mmol/L", 3.5, 5.1),  # potassium
    "2951-2": ("mmol/L", 135.0, 145.0),  # sodium
    "718-7": ("g/dL", 12.0, 17.5),  # hemoglobin (sex-independent span)
    "6690-2": ("10*3/uL", 4.0, 11.0),  # leukocytes
    "1988-5": ("mg/L", None, 10.0),  # CRP
    "8867-4": ("/min", 60.0, 100.0),  # heart rate
    "9279-1": ("/min", 12.0, 20.0),  # respiratory rate
    "8310-5": ("Cel", 36.1, 37.2),  # body temperature
    "59408-5": ("%", 95.0, 100.0),  # SpO2 by pulse oximetry
    "2708-6": ("%", 95.0, 100.0),  # SaO2
    "39156-5": ("kg/m2", 18.5, 24.9),  # BMI
    "8480-6": ("mm[Hg]", 90.0, 129.0),  # systolic BP, stage 1 hypertension from 130
    "8462-4": ("mm[Hg]", 60.0, 79.0),  # diastolic BP, stage 1 hypertension from 80
}


class Point(BaseModel):
    date: str  # ISO 8601 as in the record
    value: float
    id: str  # "Observation/<id>" it came from
    flag: str | None = None  # "H" above range, "L" below, None within or no range


class Series(BaseModel):
    code: str
    name: str
    unit: str
    values: list[Point]
    n: int
    first: float
    latest: float
    latest_date: str
    minimum: float
    maximum: float
    change_since_last: float | None = None
    change_since_last_pct: float | None = None
    slope_per_year: float | None = None
    reference_low: float | None = None
    reference_high: float | None = None
    reference_source: str | None = None
    out_of_range: int = 0
    flags: list[str] = Field(default_factory=list)


class TrendsOut(Output):
    series: list[Series]
    narrative: str = Field(min_length=1)


class TrendsOptions(TaskOptions):
    codes: list[str] = Field(
        default_factory=list, description="LOINC codes or test-name words to keep; all when empty"
    )

    @field_validator("codes", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v


# -- the computation (pure) -----------------------------------------------------------------------------


def _when(r: dict[str, Any]) -> str | None:
    v = (
        r.get("effectiveDateTime")
        or (r.get("effectivePeriod") or {}).get("start")
        or r.get("effectiveInstant")
        or r.get("issued")
    )
    return v if isinstance(v, str) else None


_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2}))?$")


def _parse_time(s: str) -> tuple[datetime, str | None]:
    """A FHIR date/dateTime -> (instant, precision note). FHIR allows "2020" and "2020-05": those are
    placed at the start of the year or month, and the note says so. ValueError for anything else."""
    s = s.strip()
    if m := _PARTIAL.match(s):
        year, month = int(m.group(1)), int(m.group(2) or 1)
        return datetime(year, month, 1, tzinfo=UTC), "year" if m.group(2) is None else "month"
    dt = (
        datetime.fromisoformat(s.replace("Z", "+00:00"))
        if "T" in s
        else datetime.fromisoformat(s + "T00:00:00+00:00")
    )
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)), None  # naive times in one record share a clock


def _code(cc: dict[str, Any] | None) -> tuple[str, str]:
    codings = (cc or {}).get("coding") or []
    c = next((x for x in codings if x.get("system") == "http://loinc.org"), codings[0] if codings else {})
    code = str(c.get("code") or (cc or {}).get("text") or "unknown")
    name = str((cc or {}).get("text") or c.get("display") or code)
    return code, name


def _range(r: dict[str, Any]) -> tuple[float | None, float | None] | None:
    for rr in r.get("referenceRange") or []:
        lo = (rr.get("low") or {}).get("value")
        hi = (rr.get("high") or {}).get("value")
        if lo is not None or hi is not None:
            return (float(lo) if lo is not None else None, float(hi) if hi is not None else None)
    return None


def slope_per_year(points: list[tuple[datetime, float]]) -> float | None:
    """Ordinary least-squares slope of value on time in years; None with fewer than two distinct times."""
    if len({t for t, _ in points}) < 2:
        return None
    t0 = points[0][0]
    xs = [(t - t0).total_seconds() / SECONDS_PER_YEAR for t, _ in points]
    ys = [v for _, v in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def _flag(v: float, lo: float | None, hi: float | None) -> str | None:
    if hi is not None and v > hi:
        return "H"
    if lo is not None and v < lo:
        return "L"
    return None


def compute_series(
    resources: dict[str, dict[str, Any]], codes: list[str] | None = None, notes: list[str] | None = None
) -> list[Series]:
    """Every numeric Observation (and numeric component, e.g. blood pressure) grouped by code and unit.

    Observations dated only to a year or month are placed at its start and flagged; one whose date
    cannot be read is left out and named in ``notes`` (when given).
    """
    raw: dict[tuple[str, str], list[tuple[datetime, str, float, str, dict[str, Any]]]] = defaultdict(list)
    names: dict[tuple[str, str], str] = {}
    partial: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for key, r in resources.items():
        if r.get("resourceType") != "Observation" or r.get("status") in ("entered-in-error", "cancelled"):
            continue
        when = _when(r)
        if when is None:
            continue
        try:
            t, precision = _parse_time(when)
        except ValueError:
            if notes is not None:
                notes.append(f"{key}: date {when!r} cannot be read; left out of the trends")
            continue
        items = [(r, r.get("code"))] + [(c, c.get("code")) for c in r.get("component") or []]
        for obj, cc in items:
            q = obj.get("valueQuantity")
            if not q or not isinstance(q.get("value"), int | float) or isinstance(q.get("value"), bool):
                continue
            code, name = _code(cc)
            unit = str(q.get("code") or q.get("unit") or "")
            k = (code, unit)
            names.setdefault(k, name)
            raw[k].append((t, when, float(q["value"]), key, obj))
            if precision:
                partial[k][precision] += 1
    out: list[Series] = []
    for (code, unit), pts in raw.items():
        name = names[(code, unit)]
        if codes and not any(c == code or c.lower() in name.lower() for c in codes):
            continue
        pts.sort(key=lambda p: p[0])
        rng = _range(pts[-1][4])
        source = "record" if rng else None
        if rng is None and code in TYPICAL_RANGES and TYPICAL_RANGES[code][0] == unit:
            rng = TYPICAL_RANGES[code][1:]
            source = BUILTIN_SOURCE
        lo, hi = rng if rng else (None, None)
        values = [Point(date=w, value=v, id=i, flag=_flag(v, lo, hi)) for _, w, v, i, _ in pts]
        vals = [p.value for p in values]
        change = pct = None
        if len(vals) >= 2:
            change = round(vals[-1] - vals[-2], 6)
            pct = round(100.0 * change / vals[-2], 3) if vals[-2] else None
        slope = slope_per_year([(t, v) for t, _, v, _, _ in pts])
        flags: list[str] = []
        last = values[-1].flag
        if last == "H":
            flags.append("latest above range")
        elif last == "L":
            flags.append("latest below range")
        if len(values) >= 2 and source:
            prev = values[-2].flag
            if prev is None and last is not None:
                flags.append("newly out of range")
            elif prev is not None and last is None:
                flags.append("back within range")
        if len(values) == 1:
            flags.append("single value")
        for precision, n in sorted(partial[(code, unit)].items()):
            flags.append(
                f"{n} value{'s' if n != 1 else ''} dated to the {precision} only (placed at its start)"
            )
        out.append(
            Series(
                code=code,
                name=name,
                unit=unit,
                values=values,
                n=len(values),
                first=vals[0],
                latest=vals[-1],
                latest_date=values[-1].date,
                minimum=min(vals),
                maximum=max(vals),
                change_since_last=change,
                change_since_last_pct=pct,
                slope_per_year=round(slope, 6) if slope is not None else None,
                reference_low=lo,
                reference_high=hi,
                reference_source=source,
                out_of_range=sum(1 for p in values if p.flag),
                flags=flags,
            )
        )
    out.sort(key=lambda s: (-(s.out_of_range > 0), s.name.lower()))
    return out


def _n(x: float | None) -> str:
    return "-" if x is None else f"{x:+.3g}" if x != 0 else "0"


def table(series: list[Series]) -> str:
    """The computed facts as the model sees them: one block per test, values oldest first."""
    lines = []
    for s in series:
        ref = ""
        if s.reference_source:
            lo = "" if s.reference_low is None else f"{s.reference_low:g}"
            hi = "" if s.reference_high is None else f"{s.reference_high:g}"
            ref = f"; reference {lo}-{hi} {s.unit} ({'record' if s.reference_source == 'record' else 'typical adult'})"
        vals = ", ".join(f"{p.date[:10]} {p.value:g}{' ' + p.flag if p.flag else ''}" for p in s.values)
        lines.append(
            f"- {s.name} ({s.code}), {s.unit}: {vals}; change since last {_n(s.change_since_last)}; "
            f"slope {_n(s.slope_per_year)} per year{ref}"
            + (f"; flags: {', '.join(s.flags)}" if s.flags else "")
        )
    return "\n".join(lines)


NARRATIVE_PROMPT = (
    "These trends were computed from a patient's lab results and vital signs (H = above range, "
    "L = below range):\n{table}\n\n{focus}Write a short narrative for a clinician about the notable trends. "
    "Use only the numbers in the table; do not compute new ones."
)


class Trends(Task):
    name = "trends"
    description = "FHIR observations -> computed trends (slope/year, ranges, flags) + a narrative over them."
    input_kinds: ClassVar[tuple[Kind, ...]] = ("fhir",)
    read_kind = "fhir"
    Options = TrendsOptions
    max_new_tokens = 384

    def series(self, inputs: list[PreparedInput], o: Any, notes: list[str] | None = None) -> list[Series]:
        series = compute_series(resources_of(inputs[0]), o.codes or None, notes)
        if not series:
            src = inputs[0].provenance.sources[0] if inputs[0].provenance.sources else None
            raise InputError(src, "has no numeric observations" + (" matching the codes" if o.codes else ""))
        return series

    def messages(self, inputs: list[PreparedInput], question: str | None, options: Any) -> list[Message]:
        o = self.opts(options)
        focus = f"Focus: {question.strip()}\n" if question else ""
        text = NARRATIVE_PROMPT.format(table=table(self.series(inputs, o)), focus=focus)
        return [*system_messages(o), Message.user(text)]

    def parse(self, text: str, inputs: list[PreparedInput], options: Any) -> TrendsOut:
        o = self.opts(options)
        narrative = answer_only(text)
        if not narrative:
            raise ParseError("empty narrative")
        notes: list[str] = []
        out = TrendsOut(series=self.series(inputs, o, notes), narrative=narrative)
        return out.warn(*notes)  # type: ignore[return-value]

    def repair_prompt(self, errors: list[str], inputs: list[PreparedInput], options: Any) -> str:
        return "Your reply was empty. Write the short narrative about the trends in the table."
