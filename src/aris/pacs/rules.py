"""Routing: which series (or images) of a complete study run which task. Pure functions over the
instances' headers as the node recorded them, so tests call them alone.

A rule matches a series when every pattern it sets matches (case-insensitive regular expressions:
Modality and BodyPartExamined match whole, SeriesDescription anywhere) and the series holds instances of a SOP class the
rule's input kind reads (or one of the rule's ``sop_class`` list). Instances of other SOP classes
(SR, presentation states, segmentations, dose reports...) are skipped and named. Volume kinds (ct,
mri, wsi) take a whole series as one input; image kinds (cxr, image) take one instance.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom.uid import UID

from aris.errors import ConfigError
from aris.pacs.settings import Rule
from aris.pacs.state import InstanceMeta

CR = "1.2.840.10008.5.1.4.1.1.1"
DX = ("1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1.1")
SC = "1.2.840.10008.5.1.4.1.1.7"
# The SOP classes each input kind's reader takes (the series reader reads single-frame CT/MR images).
KIND_SOP_CLASSES: dict[str, frozenset[str]] = {
    "ct": frozenset({"1.2.840.10008.5.1.4.1.1.2"}),
    "mri": frozenset({"1.2.840.10008.5.1.4.1.1.4"}),
    "cxr": frozenset({CR, *DX}),
    "image": frozenset(
        {
            CR,
            *DX,
            SC,
            "1.2.840.10008.5.1.4.1.1.1.2",  # digital mammography, for presentation
            "1.2.840.10008.5.1.4.1.1.6.1",  # ultrasound image
            "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL photographic image
        }
    ),
    "wsi": frozenset({"1.2.840.10008.5.1.4.1.1.77.1.6"}),
}
VOLUME_KINDS = frozenset({"ct", "mri", "wsi"})


def sop_name(uid: str) -> str:
    name = UID(uid).name
    return name if name != uid else f"SOP class {uid}"


def sop_uid(value: str) -> str:
    """A SOP class given by UID or by its DICOM name ("CT Image Storage")."""
    value = value.strip()
    if re.fullmatch(r"[0-9.]+", value):
        return value
    from pydicom._uid_dict import UID_dictionary

    for uid, entry in UID_dictionary.items():
        if entry[0].lower() == value.lower():
            return str(uid)
    raise ConfigError(
        f"unknown SOP class {value!r}: give its UID or its DICOM name (e.g. 'CT Image Storage')"
    )


def rule_kind(rule: Rule) -> str:
    """The input kind a rule's jobs are read as: the rule's, else the task's own."""
    from aris.tasks import get_task

    task = get_task(rule.task)
    kind = rule.kind or (task.read_kind if task.read_kind != "auto" else (task.input_kinds or ("image",))[0])
    if task.input_kinds and kind not in task.input_kinds:
        raise ConfigError(
            f"rule {rule.name!r}: task {rule.task} takes {'/'.join(task.input_kinds)}, not {kind}"
        )
    if kind not in KIND_SOP_CLASSES and not rule.sop_class:
        raise ConfigError(
            f"rule {rule.name!r}: the node routes DICOM images (kinds {', '.join(sorted(KIND_SOP_CLASSES))}); "
            f"give sop_class for kind {kind}"
        )
    return kind


def check_rules(rules: Sequence[Rule], destinations: Sequence[str], default_send_to: Sequence[str]) -> None:
    """Fail at start, naming the rule, rather than on the first study."""
    from aris.runner import check_options

    for r in rules:
        rule_kind(r)
        check_options(r.task, r.options)
        for uid in r.sop_class:
            sop_uid(uid)
        for name in r.send_to if r.send_to is not None else default_send_to:
            if name not in destinations:
                raise ConfigError(
                    f"rule {r.name!r} sends to {name!r}, which is not a [pacs.{name}] connection "
                    f"(known: {', '.join(sorted(destinations)) or 'none'})"
                )


@dataclass(frozen=True)
class Series:
    uid: str
    instances: list[InstanceMeta]

    def _first(self, attr: str) -> Any:
        return next((getattr(i, attr) for i in self.instances if getattr(i, attr)), None)

    @property
    def modality(self) -> str:
        return str(self._first("modality") or "")

    @property
    def body_part(self) -> str:
        return str(self._first("body_part") or "")

    @property
    def description(self) -> str:
        return str(self._first("series_description") or "")

    @property
    def number(self) -> int:
        n = self._first("series_number")
        return int(n) if n is not None else 0

    def label(self) -> str:
        """How status names a series: number, modality and size (no description: it may name a patient)."""
        return f"series {self.number} ({self.modality or '?'}, {len(self.instances)} instance(s))"


def group(instances: Sequence[InstanceMeta]) -> list[Series]:
    by: dict[str, list[InstanceMeta]] = {}
    for i in instances:
        by.setdefault(i.series_uid, []).append(i)
    out = [
        Series(uid, sorted(items, key=lambda m: (m.instance_number or 0, m.sop_uid)))
        for uid, items in by.items()
    ]
    return sorted(out, key=lambda s: (s.number, s.uid))


@dataclass(frozen=True)
class Planned:
    """A job a rule makes: its input files (inbox-relative; a volume's files are one input), the
    instances in them, and what was skipped."""

    rule: Rule
    kind: str
    series_uid: str
    inputs: list[str]
    instances: list[InstanceMeta]
    skipped: dict[str, int] = field(default_factory=dict)  # SOP class name -> instances skipped

    @property
    def key(self) -> str:
        """The same rule on the same instances is the same job (a study pushed twice runs once)."""
        payload = [
            "pacs-job-v1",
            self.rule.name,
            self.rule.task,
            self.kind,
            self.rule.options,
            self.rule.question or "",
            sorted(i.sop_uid for i in self.instances),
        ]
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def note(self) -> str | None:
        if not self.skipped:
            return None
        return "skipped " + ", ".join(f"{n} {name}" for name, n in sorted(self.skipped.items()))


def _mismatch(rule: Rule, s: Series) -> str | None:
    """Why a series does not match a rule, or None. Modality and body part match whole; a series
    description pattern matches anywhere in it (and the description is never shown: it may name people)."""
    checks = (
        ("modality", rule.modality, s.modality, True),
        ("body part", rule.body_part, s.body_part, True),
        ("series description", rule.series_description, s.description, False),
    )
    for what, pattern, value, whole in checks:
        if pattern is None:
            continue
        if not re.search(f"^(?:{pattern})$" if whole else pattern, value, re.IGNORECASE):
            shown = f" {value!r}" if whole else ""
            return f"{what}{shown} does not match {pattern!r}"
    return None


def plan(instances: Sequence[InstanceMeta], rules: Sequence[Rule]) -> tuple[list[Planned], list[str]]:
    """The jobs the rules make for a study, and why each series that makes none does not."""
    series = group(instances)
    planned: list[Planned] = []
    why: list[str] = []
    for rule in rules:
        kind = rule_kind(rule)
        wanted = frozenset(sop_uid(u) for u in rule.sop_class) or KIND_SOP_CLASSES[kind]
        candidates: list[tuple[Series, list[InstanceMeta], dict[str, int]]] = []
        for s in series:
            miss = _mismatch(rule, s)
            if miss:
                why.append(f"rule {rule.name}: {s.label()}: {miss}")
                continue
            usable = [i for i in s.instances if i.sop_class in wanted]
            skipped = Counter(sop_name(i.sop_class) for i in s.instances if i.sop_class not in wanted)
            if not usable:
                names = ", ".join(sorted(skipped))
                why.append(f"rule {rule.name}: {s.label()}: {names} is not what {rule.task} reads; skipped")
                continue
            if len(usable) < rule.min_instances:
                why.append(
                    f"rule {rule.name}: {s.label()}: {len(usable)} usable, fewer than {rule.min_instances}"
                )
                continue
            candidates.append((s, usable, dict(skipped)))
        if not candidates:
            continue
        if kind in VOLUME_KINDS:
            if rule.select == "largest":
                candidates = [max(candidates, key=lambda c: (len(c[1]), -c[0].number))]
            for s, usable, left_out in candidates:
                planned.append(Planned(rule, kind, s.uid, [i.path for i in usable], usable, left_out))
        else:
            images = [(s, i, left_out) for s, usable, left_out in candidates for i in usable]
            if rule.select == "largest":
                images = [max(images, key=lambda c: (c[1].pixels or 0, -(c[1].instance_number or 0)))]
            for s, i, left_out in images:
                planned.append(Planned(rule, kind, s.uid, [i.path], [i], left_out))
    return planned, why


__all__ = [
    "KIND_SOP_CLASSES",
    "Planned",
    "Series",
    "check_rules",
    "group",
    "plan",
    "rule_kind",
    "sop_name",
    "sop_uid",
]
