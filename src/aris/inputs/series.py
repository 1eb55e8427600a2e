"""A CT or MR series (folder, zip or list of files) -> the slices MedGemma was trained to read.

Steps, in the recipe's order (MedGemma's CT recipe, docs/recipes.md):

1. Scan headers only (pixel data stays on disk). Non-image objects (SEG, SR, RT, DICOMDIR), other
   image types and unreadable files are skipped and reported.
2. Group by SeriesInstanceUID; each multi-frame (enhanced) object contributes one slice per frame,
   placed by its per-frame Plane Position.
3. Make each series one volume: drop scouts (ImageType LOCALIZER/SCOUT/TOPOGRAM) mixed into it, require
   ImagePositionPatient, keep the largest AcquisitionNumber group (unless the acquisitions cover
   disjoint position ranges: then they are one volume acquired in steps), drop duplicate
   InstanceNumbers, keep the first echo / time point where several share the positions.
4. Choose a series: CT/MR over others, non-localizer, non-DERIVED, then most slices; or the one named.
5. Sort along the slice normal (row x column cosines), projecting ImagePositionPatient on it.
6. Take at most 85 slices, decode only those (CT) and window them into RGB (slices without a rescale
   are reported: their stored values are taken as HU); MRI is scaled min-max over the whole volume
   into grey, MONOCHROME1 slices inverted.
"""

from __future__ import annotations

import bisect
import logging
import mmap
import tempfile
import threading
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from aris.errors import InputError
from aris.inputs import dicom
from aris.inputs.archive import safe_extract
from aris.inputs.base import PreparedInput
from aris.inputs.errors import CorruptFileError, SeriesError
from aris.inputs.parallel import pmap
from aris.inputs.volume import (
    AXIAL_TOLERANCE_DEG,
    CT_WINDOWS,
    MIN_TRAINED_SLICES,
    ct_lut,
    envelope_warnings,
    minmax_grey,
    sample_indices,
    slice_normal,
    slice_parts,
    tilt_from_axial,
    window_ct,
)
from aris.types import Provenance

logger = logging.getLogger(__name__)

VOLUME_MODALITIES = {"CT": "ct", "MR": "mri"}
_MODALITY_ALIASES = {"ct": "CT", "mri": "MR", "mr": "MR"}
MAX_LISTED = 10  # skipped files named in a warning; the rest are counted


@dataclass
class SliceRef:
    """One slice before decoding: a single-frame file, or one frame of a multi-frame object."""

    path: Path
    ds: Dataset | None  # None until needed: the fast scan reads no Dataset (see dicom.scan_header)
    frame: int | None
    series_uid: str
    modality: str
    image_type: tuple[str, ...]
    acquisition: int | None
    instance: int | None
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    rows: int
    columns: int
    series_number: int | None = None
    summary: dicom.HeaderSummary | None = None  # set by the fast scan
    echo: float | None = None  # EchoNumbers; an enhanced MR frame's EffectiveEchoTime
    temporal: int | None = None  # TemporalPositionIdentifier; a frame's TemporalPositionIndex

    def dataset(self) -> Dataset:
        """The full header (pixel data deferred), read on first use."""
        if self.ds is None:
            self.ds = dicom.read_header(self.path)
        return self.ds

    @property
    def name(self) -> str:
        return self.path.name if self.frame is None else f"{self.path.name}[frame {self.frame + 1}]"


@dataclass
class Volume:
    """One series made into an ordered volume, with the reasons for whatever was left out."""

    series_uid: str
    modality: str
    slices: list[SliceRef]  # sorted along the normal once ordered
    all_count: int
    image_type: tuple[str, ...]
    series_number: int | None
    description: str
    notes: list[str] = field(default_factory=list)
    normal: np.ndarray | None = None
    projections: list[float] = field(default_factory=list)
    unusable: str | None = None  # why this series cannot become a volume

    @property
    def derived(self) -> bool:
        return bool(self.image_type) and self.image_type[0] == "DERIVED"

    @property
    def localizer(self) -> bool:
        return _is_localizer(self.image_type)

    @property
    def localizer_like(self) -> bool:
        """A localizer, or too few slices to be a volume (a scout often lacks the LOCALIZER type)."""
        return self.localizer or len(self.slices) < MIN_TRAINED_SLICES

    @property
    def axial(self) -> bool:
        return self.normal is not None and tilt_from_axial(self.normal) <= AXIAL_TOLERANCE_DEG

    def summary(self) -> dict[str, Any]:
        return {
            "series_uid": self.series_uid,
            "series_number": self.series_number,
            "description": self.description,
            "modality": self.modality,
            "image_type": "\\".join(self.image_type),
            "files_or_frames": self.all_count,
            "usable_slices": len(self.slices) if self.unusable is None else 0,
            **({"unusable": self.unusable} if self.unusable else {}),
        }


# -- public ---------------------------------------------------------------------------------------


def read_series(
    source: str | Path | Sequence[str | Path],
    *,
    modality: str | None = None,
    series_uid: str | None = None,
) -> PreparedInput:
    """Read a CT or MR series into ``[img, "SLICE 1", img, "SLICE 2", ...]``.

    Parameters
    ----------
    source
        A folder (searched recursively), a zip, one file, or a list of files.
    modality
        ``"ct"`` or ``"mri"`` (``"mr"``) keeps only series of that modality; by default the series'
        own Modality picks the recipe: CT windows or MRI min-max.
    series_uid
        Take this SeriesInstanceUID instead of applying the choice rules.

    Raises
    ------
    SeriesError
        No usable series (the message names the folder and what was found instead), or
        ``series_uid``/``modality`` match nothing.
    CorruptFileError, NoPixelDataError, UnsupportedTransferSyntaxError
        When ``source`` is a single file that cannot be a slice; in a folder such files are skipped
        and reported in the warnings instead.
    """
    wanted = _wanted_modality(modality, source)
    with ExitStack() as stack:
        label, files = _collect(source, stack)
        refs, skipped = _scan(files, single=len(files) == 1, root=label)
        volumes = [_make_volume(uid, group) for uid, group in _group(refs).items()]
        chosen, reason = _choose(volumes, label, wanted, series_uid, skipped)
        return _render(chosen, reason, volumes, skipped, label, wanted)


# -- collecting files -------------------------------------------------------------------------------


def _wanted_modality(modality: str | None, source: Any) -> str | None:
    if modality is None:
        return None
    code = _MODALITY_ALIASES.get(modality.lower())
    if code is None:
        raise SeriesError(
            source if isinstance(source, str | Path) else None,
            f"modality {modality!r} has no volume recipe; use 'ct' or 'mri'",
        )
    return code


def _collect(source: str | Path | Sequence[str | Path], stack: ExitStack) -> tuple[Path, list[Path]]:
    """All candidate files, and the path to name in messages (the folder, zip or first file)."""
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            files = [p for p in sorted(path.rglob("*")) if p.is_file() and not _hidden(p, path)]
            if not files:
                raise SeriesError(path, "the folder holds no files")
            return path, files
        if not path.exists():
            raise SeriesError(path, "no such file or folder")
        if zipfile.is_zipfile(path):
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aris-series-")))
            files = [p for p in safe_extract(path, tmp / "x") if not _hidden(p, tmp / "x")]
            if not files:
                raise SeriesError(path, "the zip holds no files")
            return path, sorted(files)
        return path, [path]
    files = [Path(p) for p in source]
    if not files:
        raise SeriesError(None, "no files given")
    return files[0].parent if len(files) > 1 else files[0], files


def _hidden(path: Path, root: Path) -> bool:
    """Dot files and macOS zip debris (__MACOSX) are never slices; skip them silently."""
    rel = path.relative_to(root).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in rel)


# -- scanning headers -------------------------------------------------------------------------------


def _scan(
    files: list[Path], *, single: bool, root: Path | None = None
) -> tuple[list[SliceRef], list[tuple[str, str]]]:
    """SliceRefs for every CT/MR image file; (name, reason) for everything skipped.

    With a single file, its problem is raised (naming it) instead of being reported.
    """
    refs: list[SliceRef] = []
    skipped: list[tuple[str, str]] = []
    for path in files:
        summary = dicom.scan_header(path)
        if summary is not None:
            refs.append(
                SliceRef(
                    path=path,
                    ds=None,
                    frame=None,
                    series_uid=summary.series_uid,
                    modality=summary.modality,
                    image_type=summary.image_type,
                    acquisition=summary.acquisition,
                    instance=summary.instance,
                    position=summary.position,
                    orientation=summary.orientation,
                    rows=summary.rows,
                    columns=summary.columns,
                    series_number=summary.series_number,
                    summary=summary,
                    echo=summary.echo,
                    temporal=summary.temporal,
                )
            )
            continue
        try:
            ds = dicom.read_header(path)
            dicom.check_pixels(ds, path)
        except InputError as e:
            if single:
                raise
            skipped.append((_shown(path, root), e.problem))
            continue
        sop = dicom.sop_class_name(ds)
        if "CT Image Storage" not in sop and "MR Image Storage" not in sop:
            reason = f"a {sop} object, not a CT or MR image"
            if single:
                raise SeriesError(path, reason)
            skipped.append((_shown(path, root), reason))
            continue
        refs.extend(_refs(path, ds))
    return refs, skipped


def _shown(path: Path, root: Path | None) -> str:
    """A skipped file's name as the user knows it: relative to the folder given (sub-folders kept)."""
    if root is not None and root.is_dir():
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.name


def _refs(path: Path, ds: Dataset) -> list[SliceRef]:
    common: dict[str, Any] = {
        "path": path,
        "ds": ds,
        "series_uid": str(ds.get("SeriesInstanceUID") or "(no SeriesInstanceUID)"),
        "modality": str(ds.get("Modality") or "").upper(),
        "acquisition": dicom.as_int(ds.get("AcquisitionNumber")),
        "instance": dicom.as_int(ds.get("InstanceNumber")),
        "rows": dicom.as_int(ds.get("Rows")) or 0,
        "columns": dicom.as_int(ds.get("Columns")) or 0,
        "series_number": dicom.as_int(ds.get("SeriesNumber")),
    }
    frames = dicom.n_frames(ds)
    if frames == 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        return [
            SliceRef(
                frame=None,
                image_type=dicom.image_type(ds),
                position=dicom.as_floats(ds.get("ImagePositionPatient"), 3),
                orientation=dicom.as_floats(ds.get("ImageOrientationPatient"), 6),
                echo=_first_number(ds.get("EchoNumbers")),
                temporal=dicom.as_int(ds.get("TemporalPositionIdentifier")),
                **common,
            )
        ]
    # Enhanced multi-frame: each frame is a slice placed by its own functional groups.
    out = []
    for i in range(frames):
        frame_type = dicom.frame_value(ds, i, "CTImageFrameTypeSequence", "FrameType") or dicom.frame_value(
            ds, i, "MRImageFrameTypeSequence", "FrameType"
        )
        position = dicom.frame_value(ds, i, "PlanePositionSequence", "ImagePositionPatient")
        orientation = dicom.frame_value(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient")
        echo = dicom.frame_value(ds, i, "MREchoSequence", "EffectiveEchoTime")
        temporal = dicom.frame_value(ds, i, "FrameContentSequence", "TemporalPositionIndex")
        out.append(
            SliceRef(
                frame=i,
                image_type=tuple(str(v).upper() for v in frame_type) if frame_type else dicom.image_type(ds),
                position=dicom.as_floats(position, 3),
                orientation=dicom.as_floats(
                    orientation if orientation is not None else ds.get("ImageOrientationPatient"), 6
                ),
                echo=_first_number(echo),
                temporal=dicom.as_int(temporal),
                **common,
            )
        )
    return out


def _first_number(value: Any) -> float | None:
    """The first value of a (possibly multi-valued) number, or None."""
    if value is not None and isinstance(value, Sequence) and not isinstance(value, str):
        value = value[0] if len(value) else None
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _group(refs: Iterable[SliceRef]) -> dict[str, list[SliceRef]]:
    groups: dict[str, list[SliceRef]] = defaultdict(list)
    for r in refs:
        groups[r.series_uid].append(r)
    return dict(groups)


# -- one series -> one volume -----------------------------------------------------------------------


def _make_volume(uid: str, refs: list[SliceRef]) -> Volume:
    first = refs[0].dataset()
    # A scout inside the series (ImageType LOCALIZER/SCOUT/TOPOGRAM) is no slice of the volume; a
    # series of scouts only stays one (ranked as a localizer).
    scouts = [r for r in refs if _is_localizer(r.image_type)]
    all_count = len(refs)
    if scouts and len(scouts) < len(refs):
        refs = [r for r in refs if not _is_localizer(r.image_type)]
    else:
        scouts = []
    types = Counter(r.image_type for r in refs)
    vol = Volume(
        series_uid=uid,
        modality=Counter(r.modality for r in refs).most_common(1)[0][0],
        slices=refs,
        all_count=all_count,
        image_type=types.most_common(1)[0][0],
        series_number=refs[0].series_number,
        description=str(first.get("SeriesDescription") or ""),
    )
    if scouts:
        vol.notes.append(
            f"{len(scouts)} localizer slice{'s' if len(scouts) != 1 else ''} (ImageType "
            f"{'/'.join(sorted({t for r in scouts for t in r.image_type if t in _LOCALIZER_TYPES}))}) "
            "dropped from the volume"
        )
    # Require ImagePositionPatient (and the orientation that gives it meaning).
    placed = [r for r in refs if r.position is not None and r.orientation is not None]
    if len(placed) < len(refs):
        vol.notes.append(
            f"{len(refs) - len(placed)} without ImagePositionPatient/ImageOrientationPatient dropped"
        )
    if not placed:
        vol.unusable = "no ImagePositionPatient/ImageOrientationPatient: the slices cannot be ordered"
        return vol

    # One plane: a series mixing orientations keeps its most common one.
    planes = Counter(_orientation_key(r.orientation) for r in placed)  # type: ignore[arg-type]
    if len(planes) > 1:
        key, _ = planes.most_common(1)[0]
        kept = [r for r in placed if _orientation_key(r.orientation) == key]  # type: ignore[arg-type]
        vol.notes.append(f"{len(placed) - len(kept)} slices in other orientations dropped")
        placed = kept
    try:
        normal = slice_normal(placed[0].orientation)  # type: ignore[arg-type]
    except ValueError:
        vol.unusable = "ImageOrientationPatient has parallel row and column directions"
        return vol
    where = {id(r): float(np.dot(np.asarray(r.position), normal)) for r in placed}

    placed = _one_acquisition(placed, where, vol.notes)
    placed = _drop_duplicate_instances(placed, where, vol.notes)
    placed = _one_image_per_position(placed, where, vol.notes)

    sizes = Counter((r.rows, r.columns) for r in placed)
    if len(sizes) > 1:
        size, _ = sizes.most_common(1)[0]
        vol.notes.append(
            f"{sum(1 for r in placed if (r.rows, r.columns) != size)} slices of another size dropped"
        )
        placed = [r for r in placed if (r.rows, r.columns) == size]

    vol.slices = sorted(placed, key=lambda r: (where[id(r)], r_key(r)))
    vol.projections = [where[id(r)] for r in vol.slices]
    vol.normal = normal
    return vol


_LOCALIZER_TYPES = ("LOCALIZER", "SCOUT", "TOPOGRAM")


def _is_localizer(image_type: tuple[str, ...]) -> bool:
    return any(t in image_type for t in _LOCALIZER_TYPES)


def r_key(r: SliceRef) -> tuple[int, str, int]:
    """Tie-break for slices at the same position: InstanceNumber, then file name, then frame."""
    return (r.instance if r.instance is not None else 1 << 30, r.path.name, r.frame or 0)


def _orientation_key(iop: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(v, 3) + 0.0 for v in iop)


SAME_PLACE_MM = 0.01
"""Two slices whose positions along the normal differ by less than this are at the same place."""


def _overlaps(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when some value of ``a`` is within SAME_PLACE_MM of some value of ``b``."""
    sb = sorted(b)
    for x in a:
        i = bisect.bisect_left(sb, x - SAME_PLACE_MM)
        if i < len(sb) and sb[i] <= x + SAME_PLACE_MM:
            return True
    return False


def _one_acquisition(refs: list[SliceRef], where: dict[int, float], notes: list[str]) -> list[SliceRef]:
    """Keep the largest AcquisitionNumber group.

    When the groups cover disjoint ranges of slice positions they are parts of one volume acquired in
    steps (a sequential head CT numbers each step); the rule exists to drop REPEATED runs over the
    same range, so disjoint acquisitions are all kept, and the provenance says so. Ranges that
    overlap at all (a repeat shifted by part of a slice interleaves with the first run, sharing no
    position) are repeats; ranges that only touch are disjoint.
    """
    groups: dict[int | None, list[SliceRef]] = defaultdict(list)
    for r in refs:
        groups[r.acquisition].append(r)
    if len(groups) < 2:
        return refs
    names = sorted(groups, key=_none_last)
    spans = {a: (min(where[id(r)] for r in groups[a]), max(where[id(r)] for r in groups[a])) for a in names}
    places = {a: [where[id(r)] for r in groups[a]] for a in names}
    repeated = any(
        _spans_overlap(spans[a], spans[b]) or _overlaps(places[a], places[b])
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    )
    if not repeated:
        notes.append(
            f"{len(groups)} acquisitions at disjoint positions kept together as one volume "
            f"(AcquisitionNumber {', '.join(str(a) for a in names)})"
        )
        return refs
    best = max(names, key=lambda a: (len(groups[a]), -_none_last(a)))
    notes.append(
        f"kept AcquisitionNumber {best} ({len(groups[best])} slices), the largest; dropped "
        + ", ".join(f"{a} ({len(groups[a])})" for a in names if a != best)
        + " (acquisitions over overlapping positions)"
    )
    return groups[best]


def _spans_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """True when the position ranges ``a`` and ``b`` share more than a point (SAME_PLACE_MM)."""
    return a[0] < b[1] - SAME_PLACE_MM and b[0] < a[1] - SAME_PLACE_MM


def _none_last(a: int | None) -> int:
    return a if a is not None else 1 << 30


def _drop_duplicate_instances(
    refs: list[SliceRef], where: dict[int, float], notes: list[str]
) -> list[SliceRef]:
    """Drop re-sent files: a repeated (InstanceNumber, frame) at a position another slice already holds.

    Scanners that number each acquisition from 1 repeat InstanceNumbers at different positions: those
    slices are all kept. A re-sent file repeats its number at an occupied place (its own, or the
    neighbour's image it duplicates): of each such group the slices at free positions are kept,
    first by file name, and the rest dropped.
    """
    by_key: dict[tuple[int, int], list[SliceRef]] = defaultdict(list)
    plain: list[SliceRef] = []
    for r in refs:
        if r.instance is None:
            plain.append(r)
        else:
            by_key[(r.instance, r.frame or 0)].append(r)
    if all(len(g) == 1 for g in by_key.values()):
        return refs
    kept = [g[0] for g in by_key.values() if len(g) == 1] + plain
    occupied = sorted(where[id(r)] for r in kept)
    dropped = 0
    for g in by_key.values():
        if len(g) == 1:
            continue
        for r in sorted(g, key=lambda r: (_overlaps([where[id(r)]], occupied), r.path.name, r.frame or 0)):
            if _overlaps([where[id(r)]], occupied):
                dropped += 1
                continue
            kept.append(r)
            bisect.insort(occupied, where[id(r)])
    if dropped:
        notes.append(
            f"{dropped} re-sent slice{'s' if dropped != 1 else ''} dropped "
            "(an InstanceNumber repeated at a position another slice holds)"
        )
    return kept


def _crowded(refs: list[SliceRef], where: dict[int, float]) -> list[list[SliceRef]]:
    """The groups of two or more slices at one position (within SAME_PLACE_MM of each other)."""
    ordered = sorted(refs, key=lambda r: where[id(r)])
    groups: list[list[SliceRef]] = []
    run: list[SliceRef] = []
    for r in ordered:
        if run and where[id(r)] - where[id(run[-1])] >= SAME_PLACE_MM:
            if len(run) > 1:
                groups.append(run)
            run = []
        run.append(r)
    if len(run) > 1:
        groups.append(run)
    return groups


def _one_image_per_position(
    refs: list[SliceRef], where: dict[int, float], notes: list[str]
) -> list[SliceRef]:
    """Keep one echo and one time point where several share the slice positions.

    Echoes or time points of one acquisition are different images at the same positions: ordered by
    position they would interleave. When EchoNumbers (an enhanced frame's EffectiveEchoTime) or
    TemporalPositionIdentifier (TemporalPositionIndex) tells the images at a position apart, the
    first echo / time point is kept and the rest dropped, and the provenance says so; anything else
    still sharing a position is reported.
    """
    crowded = _crowded(refs, where)
    if not crowded:
        return refs
    enhanced = any(r.frame is not None for r in refs)
    for attr, label in (
        ("echo", "EffectiveEchoTime" if enhanced else "EchoNumbers"),
        ("temporal", "TemporalPositionIndex" if enhanced else "TemporalPositionIdentifier"),
    ):
        if not any(len({getattr(r, attr) for r in g}) > 1 for g in crowded):
            continue  # this attribute does not tell the images at a position apart
        counts = Counter(getattr(r, attr) for r in refs)
        first = min(counts, key=_value_key)
        refs = [r for r in refs if getattr(r, attr) == first]
        notes.append(
            f"images at the same positions differ by {label}: kept {label} {_shown_value(first)} "
            f"({counts[first]} slices), dropped "
            + ", ".join(
                f"{_shown_value(v)} ({counts[v]})" for v in sorted(counts, key=_value_key) if v != first
            )
        )
        crowded = _crowded(refs, where)
        if not crowded:
            return refs
    notes.append(
        f"{len(crowded)} position{'s' if len(crowded) != 1 else ''} hold 2+ different images "
        f"({sum(len(g) for g in crowded)} slices; not repeats of one file, no EchoNumbers or "
        "TemporalPositionIdentifier tells them apart): the volume interleaves them"
    )
    return refs


def _shown_value(v: float | None) -> str:
    return "none" if v is None else f"{v:g}"


def _value_key(v: float | None) -> tuple[bool, float]:
    return (v is None, v if v is not None else 0.0)


# -- choosing among series --------------------------------------------------------------------------


def _choose(
    volumes: list[Volume],
    label: Path,
    wanted: str | None,
    series_uid: str | None,
    skipped: list[tuple[str, str]],
) -> tuple[Volume, str]:
    if not volumes:
        raise SeriesError(label, "no CT or MR images found" + _skipped_summary(skipped))
    if series_uid is not None:
        match = [v for v in volumes if v.series_uid == series_uid]
        if not match:
            raise SeriesError(
                label,
                f"no series {series_uid}; found " + "; ".join(_describe(v) for v in volumes),
            )
        v = match[0]
        if v.unusable:
            raise SeriesError(label, f"series {series_uid} cannot be used: {v.unusable}")
        if wanted and v.modality != wanted:
            raise SeriesError(label, f"series {series_uid} is {v.modality}, not {wanted}")
        return v, "named by series_uid"

    pool = [v for v in volumes if v.unusable is None]
    if wanted:
        pool = [v for v in pool if v.modality == wanted]
    if not pool:
        what = f"no usable {wanted} series" if wanted else "no usable CT or MR series"
        raise SeriesError(
            label, f"{what}; found " + "; ".join(_describe(v) for v in volumes) + _skipped_summary(skipped)
        )

    def rank(v: Volume) -> tuple[bool, bool, bool, bool, int]:
        return (v.modality in VOLUME_MODALITIES, not v.localizer_like, v.axial, not v.derived, len(v.slices))

    pool.sort(key=rank, reverse=True)
    best = pool[0]
    if len(volumes) == 1:
        return best, "the only series"
    reasons = []
    others = [v for v in volumes if v is not best]
    if any(v.unusable for v in others):
        reasons.append(f"{sum(1 for v in others if v.unusable)} other series cannot be ordered")
    if any(v.localizer for v in others if not v.unusable):
        reasons.append("localizers are not volumes")
    if not best.localizer_like and any(
        v.localizer_like and not v.localizer and not v.unusable for v in others
    ):
        reasons.append(f"series of fewer than {MIN_TRAINED_SLICES} slices are not volumes")
    if best.axial and any(not v.axial and not v.unusable for v in others):
        reasons.append("axial preferred (MedGemma was trained on axial slices)")
    if not best.derived and any(v.derived and not v.unusable for v in others):
        reasons.append("ORIGINAL preferred over DERIVED")
    same_tier = [v for v in pool[1:] if rank(v)[:4] == rank(best)[:4]]
    if same_tier:
        reasons.append(f"most slices ({len(best.slices)} vs {max(len(v.slices) for v in same_tier)})")
    elif wanted and len(pool) == 1:
        reasons.append(f"the only usable {wanted} series")
    return best, "; ".join(reasons) or "ranked first"


def _describe(v: Volume) -> str:
    what = f"{v.modality or '?'} series {v.series_number if v.series_number is not None else '?'}"
    what += f" ({'/'.join(v.image_type[:3]) or 'no ImageType'}, {v.all_count} images)"
    return what + (f": {v.unusable}" if v.unusable else "")


def _skipped_summary(skipped: list[tuple[str, str]]) -> str:
    if not skipped:
        return ""
    reasons = Counter(_reason_kind(r) for _, r in skipped)
    return "; skipped " + ", ".join(f"{n} {k}" for k, n in reasons.most_common())


def _reason_kind(reason: str) -> str:
    for key, text in (
        ("not a DICOM", "non-DICOM files"),
        ("empty", "empty files"),
        ("truncated", "truncated files"),
        ("DICOMDIR", "DICOMDIRs"),
        ("holds no image", "non-image objects"),
        ("not a CT or MR", "other image objects"),
        ("decoder", "files with an unsupported compression"),
    ):
        if key in reason:
            return text
    return "unreadable files"


# -- decoding and rendering -------------------------------------------------------------------------


def _render(
    vol: Volume,
    reason: str,
    volumes: list[Volume],
    skipped: list[tuple[str, str]],
    label: Path,
    wanted: str | None,
) -> PreparedInput:
    recipe_modality = wanted or vol.modality
    kind = VOLUME_MODALITIES.get(recipe_modality)
    if kind is None:
        raise SeriesError(
            label,
            f"the series is {vol.modality or 'of unknown modality'}; MedGemma's volume recipes cover CT "
            "and MRI (pass modality='ct' or 'mri' to force one)",
        )
    n = len(vol.slices)
    indices = sample_indices(n)
    chosen = [vol.slices[i] for i in indices]
    details: dict[str, Any] = {
        "series_uid": vol.series_uid,
        "series_number": vol.series_number,
        "series_description": vol.description,
        "modality": vol.modality,
        "image_type": "\\".join(vol.image_type),
        "chosen_because": reason,
        "candidates": [v.summary() for v in volumes],
        "n_slices": n,
        "indices": indices,
        "rows": chosen[0].rows,
        "columns": chosen[0].columns,
        "slice_normal": [round(float(x), 6) for x in vol.normal] if vol.normal is not None else None,
        "positions_mm": [round(vol.projections[i], 4) for i in indices],
        "files": [vol.slices[i].name for i in indices],
        "notes": list(vol.notes),
        "skipped_files": len(skipped),
        "skipped": [{"file": name, "reason": why} for name, why in skipped],
    }
    rgb: list[np.ndarray]
    rescale_notes: list[str] = []
    if kind == "ct":
        rescale_notes = _check_rescale(chosen)
        rgb = _ct_slices(chosen, label)
        details["windows_hu"] = {"R": list(CT_WINDOWS[0]), "G": list(CT_WINDOWS[1]), "B": list(CT_WINDOWS[2])}
    else:
        grey, (lo, hi), inverted = _mri_slices(vol.slices, indices, label)
        rgb = grey
        details["minmax"] = [lo, hi]
        if inverted:
            details["inverted_monochrome1"] = inverted

    gaps = list(np.diff(vol.projections)) if n > 1 else None
    warnings, facts = envelope_warnings(
        n_slices=n, rows=chosen[0].rows, columns=chosen[0].columns, normal=vol.normal, gaps=gaps
    )
    details.update(facts)
    if wanted and vol.modality != wanted:
        warnings.append(f"series Modality is {vol.modality}; the {kind.upper()} recipe was applied as asked")
    warnings.extend(vol.notes)
    warnings.extend(rescale_notes)
    if skipped:
        listed = ", ".join(f"{name} ({why})" for name, why in skipped[:MAX_LISTED])
        more = f" and {len(skipped) - MAX_LISTED} more" if len(skipped) > MAX_LISTED else ""
        warnings.append(f"skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''}: {listed}{more}")
    others = [v for v in volumes if v is not vol]
    if others:
        warnings.append(
            f"{len(volumes)} series found; using series {vol.series_number} ({reason}); others: "
            + "; ".join(_describe(v) for v in others)
        )
    logger.info("series: %d candidates, %d slices -> %d (%s)", len(volumes), n, len(indices), kind)
    return PreparedInput(
        kind=kind,
        parts=slice_parts(rgb),
        provenance=Provenance(kind=kind, sources=[str(label)], details=details, warnings=warnings),
        extra={"indices": indices},
    )


def _check_rescale(chosen: list[SliceRef]) -> list[str]:
    """What the CT slices' headers say about turning stored values into Hounsfield units.

    Header values only (the fast scan's summary, or the header already read). A slice with only one
    of Rescale Slope and Intercept cannot be right: its file is named in the error. Slices with
    neither (and no Modality LUT) are windowed as if their stored values were HU, which the warning
    says; so does an enhanced object whose leftover top-level pair differs from its frames' own.
    """
    missing: list[SliceRef] = []
    conflicts: list[SliceRef] = []
    for ref in chosen:
        if ref.summary is not None:
            state, conflict = ref.summary.rescale_state, False
        else:
            state, conflict = dicom.rescale_state(ref.dataset(), ref.frame)
        if state == "none":
            missing.append(ref)
        elif state not in ("pair", "lut"):
            where = f" (frame {ref.frame + 1})" if ref.frame is not None else ""
            raise CorruptFileError(
                ref.path, f"the header has {state}{where}: its Hounsfield units cannot be computed"
            )
        if conflict:
            conflicts.append(ref)
    notes = []
    if missing:
        n = len(missing)
        notes.append(
            f"no RescaleSlope/RescaleIntercept in {n} slice{'s' if n != 1 else ''} of {len(chosen)} "
            f"(e.g. {missing[0].name}): stored values taken as Hounsfield units"
        )
    if conflicts:
        n = len(conflicts)
        notes.append(
            f"top-level RescaleSlope/RescaleIntercept differ from the Pixel Value Transformation "
            f"functional group in {n} frame{'s' if n != 1 else ''}: the functional group's values used"
        )
    return notes


def _ct_slices(chosen: list[SliceRef], label: Path) -> list[np.ndarray]:
    """Decode only the chosen slices and window them by table lookup, a thread per core.

    A slice's 16-bit stored values can take only 65,536 values, so the three windows are computed
    once per distinct rescale for all of them (the same arithmetic, element for element) and each
    pixel becomes one lookup of its RGB triple. Decoders and the lookup release the GIL
    (aris.inputs.parallel), so slices decode side by side. Each slice is an array of its own, so
    one can be let go while the others are kept (``aris prepare`` writes and drops them in turn).
    """
    luts: dict[tuple[Any, ...], np.ndarray] = {}
    lock = threading.Lock()

    def one(ref: SliceRef) -> np.ndarray:
        rgb = _own_pages((ref.rows, ref.columns, 3))
        stored, rds, modality_lut = _stored(ref)
        domain = _domain(stored)
        if domain is None or modality_lut or stored.shape != rgb.shape[:2]:
            return window_ct(apply_modality_lut(stored, rds))
        key = (stored.dtype.str, str(rds.get("RescaleSlope")), str(rds.get("RescaleIntercept")))
        with lock:
            lut = luts.get(key)
            if lut is None:
                lut = luts[key] = ct_lut(apply_modality_lut(domain, rds))
        # Index by the bit pattern: the table was built in that order.
        index: np.ndarray[Any, np.dtype[np.unsignedinteger[Any]]] = stored.view(
            np.uint16 if stored.itemsize == 2 else np.uint8
        )
        np.take(lut, index, axis=0, out=rgb)
        return rgb

    _load_shared_pixels(chosen)
    return pmap(one, chosen)


def _own_pages(shape: tuple[int, int, int]) -> np.ndarray:
    """A uint8 array in pages of its own, outside the malloc heap.

    Kept slices allocated from the heap between the decoders' short-lived buffers left it
    fragmented (8 MiB more at the peak of a 340-slice read, bench/prep_ct.py), and a slice let go
    there was not given back; mapped pages are returned when the array goes.
    """
    size = int(np.prod(shape))
    return np.frombuffer(mmap.mmap(-1, max(size, 1)), dtype=np.uint8, count=size).reshape(shape)


def _stored(ref: SliceRef) -> tuple[np.ndarray, Dataset, bool]:
    """A slice's stored values, the data set holding its rescale, and whether that is a Modality LUT."""
    if ref.summary is not None and ref.summary.native_16bit_grey:
        return dicom.read_native(ref.path, ref.summary), ref.summary.rescale(), False
    if ref.summary is not None and ref.summary.j2k_grey:
        fast = dicom.read_j2k_native(ref.path, ref.summary)
        if fast is not None:
            return fast, ref.summary.rescale(), False
    stored = _decode(ref)
    rds = dicom.rescale_dataset(ref.dataset(), ref.frame)
    return stored, rds, "ModalityLUTSequence" in rds


def _load_shared_pixels(refs: list[SliceRef]) -> None:
    """Before threads start: import the JPEG 2000 codec, and read each multi-frame object's deferred
    pixel data once, so its frames are decoded side by side from the same bytes."""
    dicom.jpeg2k_decoder()
    seen: set[int] = set()
    for ref in refs:
        if ref.frame is not None and ref.ds is not None and id(ref.ds) not in seen:
            seen.add(id(ref.ds))
            if dicom.j2k_frames_from_file(ref.ds):
                continue  # each frame's fragments are read by the thread that decodes it
            for keyword in dicom.PIXEL_KEYWORDS:
                if keyword in ref.ds:
                    _ = ref.ds[keyword].value


def _domain(stored: np.ndarray) -> np.ndarray | None:
    """Every value an 8- or 16-bit integer array can hold, ordered by bit pattern."""
    if stored.dtype == np.uint16 or stored.dtype == np.uint8:
        return np.arange(2 ** (8 * stored.itemsize), dtype=stored.dtype)
    if stored.dtype == np.int16:
        return np.arange(65536, dtype=np.uint16).view(np.int16)
    if stored.dtype == np.int8:
        return np.arange(256, dtype=np.uint8).view(np.int8)
    return None


def _mri_slices(
    refs: list[SliceRef], indices: list[int], label: Path
) -> tuple[list[np.ndarray], tuple[float, float], int]:
    """Min-max over the WHOLE volume (every slice decoded, a thread per core), then the chosen slices
    scaled one by one, so the whole volume is never held as floats at once. A MONOCHROME1 slice
    (lowest value shown white) is inverted, as radiographs are; the count of those shown is returned."""
    keep = set(indices)
    flip = [_monochrome1(refs[i]) for i in indices]

    def values(item: tuple[int, SliceRef]) -> tuple[float, float, np.ndarray | None]:
        i, ref = item
        stored, rds, _ = _stored(ref)
        v = apply_modality_lut(stored, rds)
        return float(v.min()), float(v.max()), v if i in keep else None

    _load_shared_pixels(refs)
    results = pmap(values, list(enumerate(refs)))
    lo = min(r[0] for r in results)
    hi = max(r[1] for r in results)
    kept = [results[i][2] for i in indices]
    del results

    def grey(j: int) -> np.ndarray:
        v, kept[j] = kept[j], None  # each slice's values go as soon as its image exists
        assert v is not None
        out = minmax_grey(v, (lo, hi))[0]
        if flip[j]:
            np.subtract(255, out, out=out)
        return out

    return pmap(grey, range(len(kept))), (lo, hi), sum(flip)


def _monochrome1(ref: SliceRef) -> bool:
    """Whether a slice's header says MONOCHROME1 (header values only)."""
    if ref.summary is not None:
        return ref.summary.photometric == "MONOCHROME1"
    return str(ref.dataset().get("PhotometricInterpretation") or "").strip().upper() == "MONOCHROME1"


def _decode(ref: SliceRef) -> np.ndarray:
    arr = dicom.decode(ref.dataset(), ref.path, ref.frame)
    if arr.ndim != 2:
        raise CorruptFileError(ref.path, f"expected one grey frame, got pixel data of shape {arr.shape}")
    return arr
