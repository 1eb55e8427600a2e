"""Lab reports to JSON: every test on every page, validated, duplicates across pages merged.

One call per page (not all pages at once): a page is one image of 256 tokens and its tests fit the
reply budget, so a long report is not cut off mid-list, a failed page is repaired alone, and each
page is one step in the record. Tests that appear on two pages (a repeated header row, a result
continued overleaf) are merged afterwards: same name, result (comparison signs kept) and unit, and no
field that differs between the two (collection time, specimen, ...), keeping every non-empty field.

Replies in other shapes are read without dropping anything silently: tests grouped by panel
(``{"Renal Function": [...], ...}``) are all kept, the panel taken from the key; common alternative
keys (``units``, ``reference_range``, ...) map to their field; any other key with a value is a
warning naming it.

Source: the page images by default (the recipe MedGemma was evaluated on); with ``source="text"``
(or automatically on an engine without vision) the PDF's text layer is sent instead.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from aris.context import RunContext
from aris.engines.base import Engine
from aris.errors import InputError
from aris.inputs.base import Kind, PreparedInput
from aris.result import Result
from aris.tasks import report_prompts as R
from aris.tasks.base import OnToken, Outcome, Output, Task, TaskOptions, Trace, system_messages
from aris.tasks.parsing import ParseError, extract_json, norm
from aris.types import GenerationParams, ImagePart, Message, Part, TextPart

TIME_FORMAT = "%d-%m-%Y %H:%M:%S"
FIELDS = ("name", "result", "unit", "range", "panel", "method", "specimen", "sample_collection_time")

LAB_PROMPT = (
    "You are a clinical data extraction specialist. Extract all lab tests from this lab report page into a "
    "JSON list. Each object has the keys: name, result, unit, range, panel, method, specimen, "
    "sample_collection_time. Copy every value exactly as printed, as a string; sample_collection_time is "
    'formatted DD-MM-YYYY HH:MM:SS. Use "" for a field the page does not show. Reply with the JSON list only.'
)

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?$"
)
_DMY = re.compile(r"^(\d{2})[-.](\d{2})[-.](\d{4})[ T](\d{2}):(\d{2})(?::(\d{2}))?$")


def collection_time(value: str) -> str:
    """``DD-MM-YYYY HH:MM:SS``, converting only unambiguous forms; ValueError otherwise.

    Accepted: the format itself, seconds missing, dots for dashes, and ISO 8601 (year first, so the
    day and month cannot be swapped). Slashed dates (02/09/2025) are refused: day-first and
    month-first readings are both plausible.
    """
    v = value.strip()
    if m := _DMY.match(v):
        d, mo, y, h, mi, s = m.groups()
    elif m := _ISO.match(v):
        y, mo, d, h, mi, s = m.groups()
    else:
        raise ValueError(f"{value!r} is not DD-MM-YYYY HH:MM:SS")
    text = f"{d}-{mo}-{y} {h}:{mi}:{s or '00'}"
    try:
        datetime.strptime(text, TIME_FORMAT)
    except ValueError:
        raise ValueError(f"{value!r} is not a real date and time") from None
    return text


# Other spellings models use for the fields; keys compare lower-case, spaces and hyphens as "_".
ALIASES: dict[str, str] = {
    **dict.fromkeys(("test", "test_name", "analyte", "parameter", "investigation"), "name"),
    **dict.fromkeys(("value", "result_value", "observed_value"), "result"),
    **dict.fromkeys(("units", "uom", "unit_of_measure"), "unit"),
    **dict.fromkeys(
        (
            "reference_range",
            "ref_range",
            "normal_range",
            "reference",
            "reference_interval",
            "ref_interval",
            "biological_reference_interval",
        ),
        "range",
    ),
    **dict.fromkeys(("panel_name", "test_panel"), "panel"),
    **dict.fromkeys(("methodology",), "method"),
    **dict.fromkeys(("sample", "sample_type", "specimen_type"), "specimen"),
    **dict.fromkeys(
        (
            "collection_time",
            "collection_date",
            "collection_datetime",
            "collection_date_time",
            "collected",
            "collected_at",
            "collected_on",
            "sample_time",
            "sample_collection_date",
        ),
        "sample_collection_time",
    ),
}


def field_of(key: Any) -> str | None:
    """The LabTest field a reply's key names (its own name or a common alternative), or None."""
    if not isinstance(key, str):
        return None
    k = re.sub(r"[\s\-]+", "_", key.strip().lower())
    return k if k in FIELDS else ALIASES.get(k)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def canonical_item(raw: dict[Any, Any]) -> tuple[dict[str, Any], list[str]]:
    """A reply's test object with its keys mapped to the fields, and a note for every value not kept.

    A field's own key wins over an alternative spelling; an alternative (or an unknown key) whose
    value is not kept is named in a note, never dropped silently.
    """
    out: dict[str, Any] = {}
    notes: list[str] = []
    # the fields' own keys first, then the alternatives in the reply's order
    for key in sorted(raw, key=lambda k: field_of(k) != k):
        value = raw[key]
        field = field_of(key)
        if field is None:
            if not _blank(value):
                notes.append(f"key {key!r} is not a lab test field; its value {_shown(value)} was not kept")
            continue
        if _blank(out.get(field)):
            if field not in out or not _blank(value):
                out[field] = value
            continue
        if not _blank(value) and str(value).strip() != str(out[field]).strip():
            notes.append(
                f"key {key!r} {_shown(value)} differs from {field} {_shown(out[field])}; "
                f"{field} kept, {key!r} not kept"
            )
    return out, notes


class LabTest(BaseModel):
    model_config = ConfigDict(coerce_numbers_to_str=True, extra="ignore")

    name: str = Field(min_length=1)
    result: str
    unit: str = ""
    range: str = ""
    panel: str = ""
    method: str = ""
    specimen: str = ""
    sample_collection_time: str = ""

    @field_validator("*", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return "" if v is None else v

    @field_validator("name", "result", "unit", "range", "panel", "method", "specimen")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()

    _time_note: str | None = PrivateAttr(default=None)
    _key_notes: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _keys(cls, data: Any, handler: ModelWrapValidatorHandler[LabTest]) -> LabTest:
        """Alternative keys mapped to the fields; every value not kept is recorded in ``key_notes``."""
        if not isinstance(data, dict):
            return handler(data)
        mapped, notes = canonical_item(data)
        test = handler(mapped)
        test._key_notes = notes
        return test

    @model_validator(mode="after")
    def _time(self) -> LabTest:
        """``DD-MM-YYYY HH:MM:SS`` when the printed time converts unambiguously; otherwise the time is
        kept exactly as printed, with a note, rather than losing the row (or the page) over it."""
        raw = self.sample_collection_time.strip()
        if not raw:
            self.sample_collection_time = ""
            return self
        try:
            self.sample_collection_time = collection_time(raw)
        except ValueError as e:
            self.sample_collection_time = raw
            self._time_note = f"sample_collection_time kept as printed: {e}"
        return self

    @property
    def time_note(self) -> str | None:
        """Why ``sample_collection_time`` is not in the normal form, when it is not."""
        return self._time_note

    @property
    def key_notes(self) -> list[str]:
        """The reply's values this test did not keep (unknown keys, conflicting alternatives)."""
        return list(self._key_notes)


class LabOut(Output):
    tests: list[LabTest]
    pages: int
    duplicates_merged: int = 0


class LabOptions(TaskOptions):
    source: Literal["auto", "image", "text"] = Field(
        default="auto",
        description="page images (the recipe), the PDF text layer, or auto (images if the engine sees)",
    )
    prompts: R.PromptSet = R.prompts_field()


# keys that wrap the list of tests rather than name a panel
_WRAPPERS = {"tests", "lab tests", "results", "lab results", "data", "items", "rows"}


def _rows(value: Any) -> tuple[list[tuple[str, Any, str]], list[str]]:
    """Each test object of a reply as (label for errors, object, panel from the reply's grouping), and
    notes. A dict of several lists (tests grouped by panel) keeps every list; nothing is dropped
    without a note."""
    if isinstance(value, list):
        return [(f"item {i}", v, "") for i, v in enumerate(value)], []
    lists = {k: v for k, v in value.items() if isinstance(v, list)}
    grouped = any(isinstance(x, dict) for v in lists.values() for x in v)
    if not lists or (not grouped and any(field_of(k) == "name" for k in value)):
        return [("item 0", value, "")], []  # one test alone
    groups: list[tuple[str, list[Any]]] = []
    notes: list[str] = []
    for key, v in value.items():
        if isinstance(v, list):
            groups.append((str(key), v))
        elif isinstance(v, dict) and any(field_of(k) == "name" for k in v):
            groups.append((str(key), [v]))  # a group of one test written as an object
        elif not _blank(v) and v != {}:
            notes.append(f"key {key!r} outside the tests: its value {_shown(v)} was not kept")
    if len(groups) == 1:
        return [(f"item {i}", v, "") for i, v in enumerate(groups[0][1])], notes
    rows: list[tuple[str, Any, str]] = []
    for key, items in groups:
        panel = "" if norm(key) in _WRAPPERS else key.strip()
        rows.extend((f"{key} item {i}", v, panel) for i, v in enumerate(items))
    notes.append(
        f"the reply grouped its tests under {len(groups)} keys ({', '.join(k for k, _ in groups)}); "
        "every group was kept, its key as the panel of tests that name none"
    )
    return rows, notes


def parse_page(text: str) -> PageTests:
    """One page's reply -> validated tests. A cut-off list keeps its complete items (with a warning)."""
    found = extract_json(text, (list, dict))
    rows, notes = _rows(found.value)
    errors: list[str] = []
    tests: list[LabTest] = []
    for label, item, panel in rows:
        if not isinstance(item, dict):
            errors.append(f"{label}: not an object")
            continue
        try:
            test = LabTest.model_validate(item)
        except ValidationError as e:
            name = canonical_item(item)[0].get("name")  # the key the reply used for it, whichever
            errors.extend(
                f"{label}{' (' + str(name) + ')' if name else ''}: "
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in e.errors(include_url=False)
            )
            continue
        if panel and not test.panel:
            test.panel = panel
        tests.append(test)
    if errors:
        raise ParseError(errors)
    keys = [f"{t.name}: {n}" for t in tests for n in t.key_notes]
    dates = [f"{t.name}: {t.time_note}" for t in tests if t.time_note]
    return PageTests(tests, [*found.notes, *notes, *keys, *dates])


class PageTests(list[LabTest]):
    """One page's tests, carrying the parser's notes (e.g. a cut-off reply whose complete items were kept)."""

    def __init__(self, items: list[LabTest], notes: list[str] | None = None) -> None:
        super().__init__(items)
        self.notes = list(notes or [])


def _same(field: str, a: str, b: str) -> bool:
    """Whether two printed values are the same: whitespace ignored, and case too except in units
    (mU and MU differ); comparison signs and every other character count (">60" is not "<60")."""
    if field == "name":
        return norm(a) == norm(b)
    a, b = "".join(a.split()), "".join(b.split())
    return a == b if field == "unit" else a.casefold() == b.casefold()


def _mergeable(first: LabTest, t: LabTest) -> bool:
    """The same test seen again: same name, result and unit, and every other field the same or
    blank in one of them (a different collection time, specimen, method, ... is another test)."""
    return all(
        _same(f, getattr(first, f), getattr(t, f))
        for f in FIELDS
        if f in ("name", "result", "unit") or (getattr(first, f) and getattr(t, f))
    )


def merge_tests(pages: list[list[LabTest]]) -> tuple[list[LabTest], int]:
    """All pages' tests in order; the same test seen again (see ``_mergeable``) fills the first's
    blanks. A row that could be the same as several earlier ones is kept as its own row."""
    merged: list[LabTest] = []
    dups = 0
    for tests in pages:
        for t in tests:
            same = [i for i, first in enumerate(merged) if _mergeable(first, t)]
            if len(same) != 1:
                merged.append(t)
                continue
            dups += 1
            first = merged[same[0]]
            merged[same[0]] = first.model_copy(
                update={f: getattr(t, f) for f in FIELDS if not getattr(first, f) and getattr(t, f)}
            )
    return merged, dups


class LabExtract(Task):
    name = "lab-extract"
    description = (
        "Lab report PDF or image -> every test {name, result, unit, range, panel, method, specimen, time}."
    )
    input_kinds: ClassVar[tuple[Kind, ...]] = ("pdf", "image")
    n_inputs = (1, 32)
    Options = LabOptions
    max_new_tokens = 2048

    def reply_schema(self, inputs: list[PreparedInput], options: Any) -> dict[str, Any] | None:
        if self.opts(options).prompts == "report":
            return None  # the report's prompt, answered in the model's own words
        item = {
            "type": "object",
            "properties": {f: {"type": "string"} for f in FIELDS},
            "required": list(FIELDS),
            "additionalProperties": False,
        }
        return {"type": "array", "items": item}

    def source(self, engine: Engine | None, inputs: list[PreparedInput], o: Any) -> str:
        if o.source != "auto":
            return str(o.source)
        has_images = any(i.arrays for i in inputs)
        if has_images and (engine is None or engine.capabilities.vision):
            return "image"
        return "text"

    def pages(self, inputs: list[PreparedInput], source: str) -> list[list[Part]]:
        """Each page as the parts one call sends: its image, or its text layer."""
        pages: list[list[Part]] = []
        for p in inputs:
            if source == "image":
                pages.extend([img] for img in p.parts if isinstance(img, ImagePart))
                continue
            # the PDF reader keeps each page's text layer in the provenance; else the whole text
            texts = [str(pg.get("text") or "") for pg in p.provenance.details.get("pages") or []]
            if not any(t.strip() for t in texts):
                texts = [p.text] if p.text else []
            if not any(t and t.strip() for t in texts):
                src = p.provenance.sources[0] if p.provenance.sources else None
                raise InputError(src, "has no text layer; send the page images to a vision engine instead")
            pages.extend([TextPart(f"Lab report page text:\n{t}")] for t in texts if t and t.strip())
        if not pages:
            src = inputs[0].provenance.sources[0] if inputs and inputs[0].provenance.sources else None
            raise InputError(src, "has no pages to read")
        return pages

    def page_messages(self, page: list[Part], o: Any) -> list[Message]:
        return [*system_messages(o), Message("user", [*page, TextPart(LAB_PROMPT)])]

    def report_messages(self, inputs: list[PreparedInput], source: str, o: Any) -> list[Message]:
        """The report's prompt for the whole report in one call: its row has no image marker and
        speaks of "the given lab report", so the text comes first, then every page."""
        pages = [part for page in self.pages(inputs, source) for part in page]
        return [*system_messages(o), Message("user", [TextPart(R.fill(R.LAB, {})), *pages])]

    def messages(self, inputs: list[PreparedInput], question: str | None, options: Any) -> list[Message]:
        """The first page's conversation (each page is sent the same way, one call each); with the
        report's prompt, the one call for the whole report."""
        o = self.opts(options)
        if o.prompts == "report":
            return self.report_messages(inputs, self.source(None, inputs, o), o)
        return self.page_messages(self.pages(inputs, self.source(None, inputs, o))[0], o)

    def parse(self, text: str, inputs: list[PreparedInput], options: Any) -> LabOut:
        tests = parse_page(text)
        return LabOut(tests=list(tests), pages=1).warn(*tests.notes)  # type: ignore[return-value]

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
        if o.prompts == "report":
            source = self.source(engine, inputs, o)
            o = o.model_copy(update={"source": source})  # messages() sees what this engine can read
            return super().run(engine, inputs, question, options=o, params=params, on_token=on_token, ctx=ctx)
        self.check(inputs, question, o)
        pages = self.pages(inputs, self.source(engine, inputs, o))
        gp = self.generation_params(engine, params, o, inputs)
        trace = Trace(self, engine, inputs, on_token, ctx)
        per_page: list[list[LabTest]] = []
        texts: list[str] = []
        errors: list[str] = []
        warnings: list[str] = []
        repaired = False
        for n, page in enumerate(pages, 1):
            if n > 1 and on_token is not None:
                on_token("answer", "\n")
            msgs = self.page_messages(page, o)
            first = trace.generate(f"page {n}", msgs, gp)
            oc = self.parse_with_repair(
                trace, msgs, gp, first.text, inputs, o, parse=parse_page, name=f"page {n}"
            )
            texts.append(oc.text)
            repaired |= oc.repaired
            if oc.value is None:
                errors.extend(f"page {n}: {e}" for e in oc.errors)
                continue
            warnings.extend(f"page {n}: {w}" for w in oc.value.notes)
            per_page.append(list(oc.value))
        tests, dups = merge_tests(per_page)
        value = LabOut(tests=tests, pages=len(pages), duplicates_merged=dups) if per_page else None
        text = "\n".join(texts)
        outcome = Outcome(value, text, errors=errors, warnings=warnings, repaired=repaired)
        return trace.result(outcome, value.model_dump(mode="json") if value else None, raw=text)
