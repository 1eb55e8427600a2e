"""A NIfTI volume (.nii, .nii.gz) -> the same slices a DICOM series of it would give.

The volume is turned to the closest canonical orientation (RAS+) without resampling, slices are taken
along the superior axis from feet to head (as "sort by z" orders a DICOM series), and each is shown
as a radiologist views an axial DICOM slice: patient's right on the image left, anterior at the top.
"""

from __future__ import annotations

import logging
import math
import zlib
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np
from nibabel.affines import apply_affine, obliquity
from nibabel.analyze import AnalyzeHeader
from nibabel.filebasedimages import ImageFileError
from nibabel.nifti1 import Nifti1Header
from nibabel.spatialimages import SpatialImage

from aris.inputs.base import PreparedInput
from aris.inputs.detect import looks_like_hu, missing_pair_error
from aris.inputs.errors import CorruptFileError, SeriesError, UnsupportedFormatError
from aris.inputs.volume import (
    AXIAL_TOLERANCE_DEG,
    CT_WINDOWS,
    envelope_warnings,
    minmax_grey,
    sample_indices,
    slice_parts,
    window_ct,
)
from aris.types import Provenance

logger = logging.getLogger(__name__)

_MODALITIES = {"ct": "ct", "mri": "mri", "mr": "mri"}


def read_nifti(path: str | Path, *, modality: Literal["ct", "mri", "mr"] = "ct") -> PreparedInput:
    """Read a NIfTI volume into ``[img, "SLICE 1", img, "SLICE 2", ...]``.

    NIfTI carries no modality, so the caller says which recipe applies: ``"ct"`` (values in HU after
    the header's scl_slope/scl_inter, three windows into RGB) or ``"mri"`` (min-max over the whole
    volume into grey). A 4D file gives its first volume, with a warning.

    Raises
    ------
    UnsupportedFormatError
        Not a NIfTI/Analyze file.
    CorruptFileError
        Truncated or damaged.
    SeriesError
        Fewer than three dimensions.
    """
    path = Path(path)
    kind = _MODALITIES.get(str(modality).lower())
    if kind is None:
        raise SeriesError(path, f"modality {modality!r} has no volume recipe; use 'ct' or 'mri'")
    try:
        img = nib.load(path)
    except ImageFileError as e:
        raise UnsupportedFormatError(path, "not a NIfTI file Aris can read") from e
    except FileNotFoundError as e:
        raise missing_pair_error(path, e) from e
    except (OSError, EOFError, ValueError) as e:
        raise CorruptFileError(path, f"damaged NIfTI file ({type(e).__name__})") from e
    if not isinstance(img, SpatialImage):
        raise UnsupportedFormatError(path, "not a NIfTI volume")

    warnings: list[str] = []
    # nibabel moves scl_slope/scl_inter from the header onto the data proxy when it loads a file.
    slope, inter = _scaling(img)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 3:
        raise SeriesError(path, f"a {len(shape)}D image, not a volume")
    original_axes = "".join(nib.aff2axcodes(img.affine))
    form_details, form_warnings = _orientation_source(img, original_axes)
    try:
        if len(shape) > 3:
            extra = int(np.prod(shape[3:]))
            warnings.append(f"{len(shape)}D file ({extra} volumes): the first volume used")
            img = img.slicer[(..., *([0] * (len(shape) - 3)))]
        canonical = nib.as_closest_canonical(img)
        data = canonical.get_fdata()  # applies scl_slope / scl_inter
    except FileNotFoundError as e:
        raise missing_pair_error(path, e) from e
    except (OSError, EOFError, ValueError, zlib.error) as e:
        raise CorruptFileError(path, f"damaged or truncated NIfTI data ({type(e).__name__})") from e
    warnings.extend(form_warnings)
    if np.isnan(data).any():
        fill = float(np.nanmin(data)) if not np.isnan(data).all() else 0.0
        warnings.append(f"{int(np.isnan(data).sum())} NaN voxels set to the volume minimum")
        data = np.nan_to_num(data, nan=fill)

    nx, ny, nz = data.shape
    indices = sample_indices(nz)
    # Radiological view of an axial slice: rows run anterior -> posterior, columns right -> left.
    chosen = np.stack([data[::-1, ::-1, k].T for k in indices])
    details: dict[str, Any] = {
        "format": "NIfTI",
        "shape": list(shape),
        "voxel_size_mm": [round(float(z), 6) for z in canonical.header.get_zooms()[:3]],
        "orientation_in_file": original_axes,
        "orientation_used": "".join(nib.aff2axcodes(canonical.affine)),
        **form_details,
        "scl_slope": slope,
        "scl_inter": inter,
        "n_slices": nz,
        "indices": indices,
        "rows": ny,
        "columns": nx,
    }
    if kind == "ct":
        rgb = window_ct(chosen)
        details["windows_hu"] = {"R": list(CT_WINDOWS[0]), "G": list(CT_WINDOWS[1]), "B": list(CT_WINDOWS[2])}
    else:
        rgb, (lo, hi) = minmax_grey(chosen, (float(data.min()), float(data.max())))
        details["minmax"] = [lo, hi]

    affine = canonical.affine[:3, :3]
    normal = affine[:, 2] / np.linalg.norm(affine[:, 2])
    spacing = float(np.linalg.norm(affine[:, 2]))
    env, facts = envelope_warnings(
        n_slices=nz, rows=ny, columns=nx, normal=normal, gaps=[spacing] * max(nz - 1, 0) or None
    )
    oblique = max(math.degrees(float(a)) for a in obliquity(canonical.affine))
    facts["obliquity_deg"] = round(oblique, 2)
    if oblique > AXIAL_TOLERANCE_DEG and not any("from axial" in w for w in env):
        env.append(f"oblique volume ({oblique:.0f} degrees): reoriented to the closest axes, not resampled")
    details.update(facts)
    warnings.extend(env)
    warnings.extend(_reformat_warnings(original_axes, canonical.header.get_zooms()[:3]))
    warnings.extend(_modality_warnings(kind, data))
    logger.info("nifti: %s -> %d slices of %d (%s)", "x".join(map(str, shape)), len(indices), nz, kind)
    return PreparedInput(
        kind=kind,
        parts=slice_parts(rgb),
        provenance=Provenance(kind=kind, sources=[str(path)], details=details, warnings=warnings),
        extra={"indices": indices},
    )


FORM_TOLERANCE_MM = 0.1  # the qform and sform may place a corner voxel this far apart and still agree
_AXIS_NAMES = (("L", "R", "left and right"), ("A", "P", "front and back"), ("S", "I", "head and feet"))


def _orientation_source(img: Any, axes: str) -> tuple[dict[str, Any], list[str]]:
    """Where the affine nibabel gave came from, and a warning when that orientation is assumed or contested.

    nibabel uses the sform when its code is set, else the qform, else a default (LAS, as Analyze
    assumed); it says nothing when it falls back to the default or when both forms are set and differ.
    """
    header = img.header
    if isinstance(header, Nifti1Header):  # NIfTI-1 and NIfTI-2
        qcode, scode = int(header["qform_code"]), int(header["sform_code"])
        source = "sform" if scode else "qform" if qcode else "default"
        details: dict[str, Any] = {"qform_code": qcode, "sform_code": scode, "affine_from": source}
        if source == "default":
            return details, [_assumed_warning("no qform/sform in the header", axes)]
        if not (qcode and scode):
            return details, []
        try:
            qform = header.get_qform()
        except ValueError:
            return details, ["the header's qform cannot be read; the sform was used without checking it"]
        return details, _disagreement(qform, header.get_sform(), img.shape[:3])
    if isinstance(header, AnalyzeHeader):  # Analyze 7.5: orientation only from an SPM .mat beside it
        mat = getattr(img, "file_map", {}).get("mat")
        if mat is not None and mat.filename and Path(mat.filename).is_file():
            return {"affine_from": "SPM .mat"}, []
        return {"affine_from": "default"}, [_assumed_warning("an Analyze header stores no orientation", axes)]
    return {}, []


def _assumed_warning(reason: str, axes: str) -> str:
    return (
        f"{reason}: orientation unknown, the voxel axes were assumed to be {axes}; "
        "left and right may be swapped"
    )


def _disagreement(qform: np.ndarray, sform: np.ndarray, shape: Any) -> list[str]:
    """A warning when the two forms turn the voxels different ways or place them apart (the sform is used)."""
    q_axes, s_axes = nib.aff2axcodes(qform), nib.aff2axcodes(sform)
    if q_axes != s_axes:
        swapped = [name for a, b, name in _AXIS_NAMES if _axis_of(q_axes, a, b) != _axis_of(s_axes, a, b)]
        return [
            f"the header's qform ({''.join(q_axes)}) and sform ({''.join(s_axes)}) disagree on the orientation: "
            f"the sform was used; if the qform is right, {', '.join(swapped) or 'the axes'} are swapped as shown"
        ]
    corners = np.array(np.meshgrid(*[[0, max(int(n) - 1, 0)] for n in shape], indexing="ij")).reshape(3, -1).T
    gap = float(np.max(np.linalg.norm(apply_affine(qform, corners) - apply_affine(sform, corners), axis=1)))
    if gap > FORM_TOLERANCE_MM:
        return [
            f"the header's qform and sform disagree (they place voxels up to {gap:.3g} mm apart): the sform was used"
        ]
    return []


def _axis_of(axes: Any, a: str, b: str) -> tuple[int, str] | None:
    """Which voxel axis runs along the a-b direction, and toward which end."""
    for i, code in enumerate(axes):
        if code in (a, b):
            return i, code
    return None


ANISOTROPY_TOLERANCE = 0.05  # relative difference of the two in-plane voxel sizes still called square


def _reformat_warnings(axes_in_file: str, zooms: Any) -> list[str]:
    """What the DICOM path would say: slices that were not acquired axially, and pixels that are not square.

    The volume is turned to the closest axes, so a sagittal or coronal file is shown as axial images
    built across its slices; with thick slices those images are stretched along one side.
    """
    out: list[str] = []
    slice_axis = axes_in_file[2:3]
    plane = {"L": "sagittal", "R": "sagittal", "A": "coronal", "P": "coronal"}.get(slice_axis)
    if plane:
        out.append(
            f"the file holds {plane} slices (axes {axes_in_file}); the axial images shown are reformatted "
            "across them, and MedGemma was trained on acquired axial slices"
        )
    dx, dy = float(zooms[0]), float(zooms[1])
    if min(dx, dy) > 0 and abs(dx - dy) > ANISOTROPY_TOLERANCE * max(dx, dy):
        out.append(
            f"axial pixels are {dx:.3g} x {dy:.3g} mm (not square): each image is stretched "
            f"{max(dx, dy) / min(dx, dy):.2g}x along one side as shown"
        )
    return out


def _modality_warnings(kind: str, data: np.ndarray) -> list[str]:
    """NIfTI stores no modality: say so when the values contradict the recipe asked for."""
    lo, hi = float(np.min(data)), float(np.max(data))
    if kind == "ct" and not looks_like_hu(data):
        return [
            f"values range {lo:.4g} to {hi:.4g} with under 1% below -500 (no air at -1000 HU): not CT in "
            "Hounsfield units (an MR volume?); the CT windows were applied as asked (use kind 'mri' for MRI)"
        ]
    if kind == "mri" and looks_like_hu(data):
        return [
            f"values reach {lo:.4g} with over 1% below -500 (air in Hounsfield units): this looks like CT; "
            "the MRI recipe was applied as asked (use kind 'ct' for CT)"
        ]
    return []


def _scaling(img: Any) -> tuple[float | None, float | None]:
    """The scaling get_fdata applies (1 and 0 when the file has none), as plain floats."""
    values = []
    for name in ("slope", "inter"):
        value = getattr(img.dataobj, name, None)
        try:
            values.append(None if value is None or math.isnan(float(value)) else float(value))
        except (TypeError, ValueError):
            values.append(None)
    return values[0], values[1]
