"""What the web viewer shows: a study's original values, beside what the model saw.

The model sees 8-bit pictures (a CT windowed into RGB, a radiograph through its VOI window); a reader
judges them against the original values. These routes give the viewer both, for an upload (before a
run) and for a job (reopened later):

=====================================  =============================================================
``GET /v1/viewer/uploads/{id}?kind=``  manifest: the model's images, warnings, details and the view
``GET /v1/viewer/jobs/{id}``           manifest of a job: its own images, overlay, result, the view
``GET /v1/viewer/history``             the caller's jobs with a status that says "failed validation"
``GET .../views/{key}/{name}``         one data file of a view (raw slices, thumbnails, masks)
=====================================  =============================================================

A *view* is built once per study content (the sha256 the store records as the job's input digest)
and kind, under ``$ARIS_HOME/viewer/<digest>/<key>/``: pixel values and geometry, a slide's
thumbnail and tissue mask, a PDF's text-line boxes, a FHIR record's observations and timeline. It
never holds DICOM headers or file names. A job finds its study's view through its input digest, so a
job reopened after its upload was removed still shows the original values, and two runs on one study
share one view.

Like every route, these sit behind the app-wide guards (keys, Host/Origin, limits); a key sees the
views of its own uploads and jobs only, and files are named by URL, never by server path.

Raw slices are ``application/octet-stream``: little-endian ``int16`` (or ``float32`` when a value is
not a whole number or does not fit), rows x columns, after the Modality LUT (HU for CT). The view's
JSON says which, per slice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import shutil
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse
from PIL import Image

from aris.errors import ArisError, InputError
from aris.inputs.base import PreparedInput
from aris.server.auth import Principal
from aris.server.errors import APIError
from aris.server.guard import principal_of
from aris.server.jobs import JobManager

logger = logging.getLogger(__name__)

VIEW_VERSION = 1
DATA_NAME = re.compile(r"^(slice-\d{5}\.bin|image\.bin|image\.png|thumb\.png|mask\.png)$")
VIEW_KEY = re.compile(r"^[0-9a-f]{16}$")
ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
INT16 = (-32768, 32767)

# Window presets (center, width) on original values. The recipe's three are MedGemma's CT windows
# (aris.inputs.volume.CT_WINDOWS); the clinical ones are the usual reading windows.
CLINICAL_CT_PRESETS = (("Brain", 40.0, 80.0), ("Lung", -600.0, 1500.0), ("Bone", 400.0, 1800.0))


router = APIRouter(prefix="/v1/viewer", tags=["viewer"])  # keys, Host/Origin, limits: app-wide guards


def attach(app: FastAPI) -> None:
    """Add the viewer routes (behind the app's key, Host/Origin and size guards like every route)."""
    app.state.viewer_locks = {}
    app.state.viewer_job_digests = {}  # job id -> its study's content digest, from the store
    app.include_router(router)


def _jobs(request: Request) -> JobManager:
    jobs = getattr(request.app.state, "jobs", None)
    if jobs is None:
        raise APIError(503, "the model is still loading", "server_error", code="not_ready")
    return jobs  # type: ignore[no-any-return]


async def _job_record(jobs: JobManager, job_id: str, who: Principal) -> dict[str, Any]:
    """A job as its caller sees it: id, task, status, created, error, result (404 when not theirs)."""
    if not ID.match(job_id):
        raise APIError(404, "no such job", code="not_found")
    return await jobs.get(job_id, who)


def _job_digest(jobs: JobManager, record: dict[str, Any], cache: dict[str, str]) -> str | None:
    """The content digest of the job's study, as the store recorded it (it never changes: kept)."""
    if record["id"] in cache:
        return cache[record["id"]]
    try:
        items = jobs.store.items(record["store_job"])
    except Exception:  # a job the store no longer knows: no view, its images still show
        return None
    if not items:
        return None
    cache[record["id"]] = str(items[0].input_digest)
    return cache[record["id"]]


def _views_root(jobs: JobManager) -> Path:
    return Path(jobs.home) / "viewer"


# -- routes --------------------------------------------------------------------------------------------


@router.get("/uploads/{upload_id}")
async def upload_view(
    upload_id: str,
    request: Request,
    kind: str = Query(default="auto", max_length=32, description="An input kind, as for prepare."),
) -> dict[str, Any]:
    """What the model will see of an upload, and the study's original values to view beside it."""
    jobs, who = _jobs(request), principal_of(request.scope)
    upload = jobs.get_upload(upload_id, who)
    prepared = await jobs.prepare(upload_id, who, kind)
    digest = upload.digest
    key = view_key(prepared)
    folder = _views_root(jobs) / digest / key
    lock = request.app.state.viewer_locks.setdefault(f"{digest}/{key}", asyncio.Lock())
    async with lock:
        if not (folder / "view.json").is_file():
            try:
                await asyncio.to_thread(build_view, prepared, upload.input_path(), folder)
            except (OSError, FileNotFoundError) as e:
                raise APIError(404, "the upload was removed while it was being read", code="not_found") from e
    view = json.loads((folder / "view.json").read_text())
    base = f"/v1/viewer/uploads/{upload_id}/views/{key}"
    engine = request.app.state.engine
    return {
        "source": {"type": "upload", "id": upload_id},
        "kind": prepared.kind,
        "images": [
            {"url": f"/v1/uploads/{upload_id}/images/{i + 1:04d}.png?kind={kind}", "label": label}
            for i, label in enumerate(prepared.labels)
        ],
        "image_tokens": len(prepared.arrays) * engine.capabilities.image_tokens,
        "warnings": list(prepared.provenance.warnings),
        "details": _jsonable(prepared.provenance.details),
        "text": (prepared.text or "")[:20000],
        "view": _with_urls(view, base),
    }


@router.get("/uploads/{upload_id}/views/{key}/{name}")
async def upload_view_file(upload_id: str, key: str, name: str, request: Request) -> FileResponse:
    jobs, who = _jobs(request), principal_of(request.scope)
    digest = jobs.get_upload(upload_id, who).digest
    return _view_file(_views_root(jobs) / digest, key, name)


@router.get("/jobs/{job_id}")
async def job_view(job_id: str, request: Request) -> dict[str, Any]:
    """A job as it ran: its own images, overlay, result and status, with its study's view if kept."""
    jobs, who = _jobs(request), principal_of(request.scope)
    record = await _job_record(jobs, job_id, who)
    folder = jobs.job_dir(job_id)
    names = sorted(p.name for p in (folder / "images").glob("*.png")) if (folder / "images").is_dir() else []
    result = record.get("result")
    prov = (result or {}).get("provenance") or []
    details = prov[0].get("details", {}) if prov else {}
    digest = await asyncio.to_thread(_job_digest, jobs, record, request.app.state.viewer_job_digests)
    view = None
    if digest:
        found = await asyncio.to_thread(find_view, _views_root(jobs) / digest, prov[0] if prov else None)
        if found is not None:
            view = _with_urls(found[1], f"/v1/viewer/jobs/{job_id}/views/{found[0]}")
    labels = _labels(view, details, len(names))
    return {
        "source": {"type": "job", "id": job_id},
        "job": {k: v for k, v in record.items() if k != "result"},
        "status_label": status_label(record),
        "kind": prov[0].get("kind") if prov else (view or {}).get("kind"),
        "images": [{"url": f"/v1/jobs/{job_id}/images/{n}", "label": labels[i]} for i, n in enumerate(names)],
        "overlay": f"/v1/jobs/{job_id}/files/overlay.png" if (folder / "overlay.png").is_file() else None,
        "result": result,
        "warnings": [w for p in prov for w in p.get("warnings", [])],
        "details": details,
        "view": view,
    }


@router.get("/jobs/{job_id}/views/{key}/{name}")
async def job_view_file(job_id: str, key: str, name: str, request: Request) -> FileResponse:
    jobs, who = _jobs(request), principal_of(request.scope)
    record = await _job_record(jobs, job_id, who)
    digest = await asyncio.to_thread(_job_digest, jobs, record, request.app.state.viewer_job_digests)
    if not digest:
        raise APIError(404, "this job's study was not kept for viewing", code="not_found")
    return _view_file(_views_root(jobs) / digest, key, name)


@router.get("/history")
async def history(request: Request, limit: int = Query(default=50, ge=1, le=200)) -> list[dict[str, Any]]:
    """The caller's jobs, newest first, each with the status a reader needs ("failed validation")."""
    jobs, who = _jobs(request), principal_of(request.scope)
    rows = await jobs.list(who, limit)
    # The list carries no results; a finished job's record says whether its reply validated.
    records = [await _job_record(jobs, r["id"], who) if r["status"] == "done" else r for r in rows]
    out = []
    for r in records:
        result = r.get("result") or {}
        out.append(
            {
                "id": r["id"],
                "task": r["task"],
                "status": r["status"],
                "status_label": status_label(r),
                "created": r["created"],
                "error": r.get("error"),
                "model": result.get("model"),
            }
        )
    return out


def status_label(record: dict[str, Any]) -> str:
    """The status a reader needs: "failed validation" when no parser accepted the reply, else the job's."""
    result = record.get("result")
    if record.get("status") == "done" and isinstance(result, dict) and result.get("parsed") is None:
        return "failed validation" if result.get("errors") else "done"
    return str(record.get("status"))


def _view_file(digest_folder: Path, key: str, name: str) -> FileResponse:
    if not VIEW_KEY.match(key) or not DATA_NAME.match(name):
        raise APIError(404, "no such file", code="not_found")
    path = digest_folder / key / name
    if not path.is_file():
        raise APIError(404, "no such file", code="not_found")
    media = "image/png" if name.endswith(".png") else "application/octet-stream"
    return FileResponse(path, media_type=media, headers={"Cache-Control": "private, max-age=3600"})


def _with_urls(view: dict[str, Any], base: str) -> dict[str, Any]:
    out = dict(view)
    out["base_url"] = base
    return out


def _labels(view: dict[str, Any] | None, details: dict[str, Any], n: int) -> list[str]:
    labels = (view or {}).get("model_labels") or []
    if len(labels) == n:
        return [str(x) for x in labels]
    return [f"IMAGE {i + 1}" for i in range(n)]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# -- views ---------------------------------------------------------------------------------------------


def view_facts(prepared: PreparedInput) -> dict[str, Any]:
    """What a view depends on besides the study's bytes (its folder's key)."""
    d = prepared.provenance.details
    facts: dict[str, Any] = {"v": VIEW_VERSION, "kind": prepared.kind}
    if prepared.kind in ("ct", "mri"):
        facts["series_uid"] = d.get("series_uid")
    if prepared.kind == "wsi":
        facts["footprint"] = [d.get("region_at_level"), d.get("level_downsample"), d.get("level")]
    return facts


def view_key(prepared: PreparedInput) -> str:
    return hashlib.sha256(json.dumps(view_facts(prepared), sort_keys=True).encode()).hexdigest()[:16]


def find_view(digest_folder: Path, provenance: dict[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
    """The view of a job's study: the one its provenance names, else the only one there is."""
    if not digest_folder.is_dir():
        return None
    views = []
    for f in sorted(digest_folder.glob("*/view.json")):
        try:
            views.append((f.parent.name, json.loads(f.read_text())))
        except (OSError, ValueError):
            continue
    if provenance is not None:
        kind = provenance.get("kind")
        d = provenance.get("details") or {}
        for key, v in views:
            facts = v.get("facts", {})
            if facts.get("kind") != kind:
                continue
            if kind in ("ct", "mri") and facts.get("series_uid") != d.get("series_uid"):
                continue
            if kind == "wsi" and facts.get("footprint") != [
                d.get("region_at_level"),
                d.get("level_downsample"),
                d.get("level"),
            ]:
                continue
            return key, v
        return None
    return views[0] if len(views) == 1 else None


def build_view(prepared: PreparedInput, source: Path, folder: Path) -> dict[str, Any]:
    """Write the view of ``source`` as ``prepared`` read it into ``folder`` (atomically) and return it."""
    tmp = folder.parent / f".{folder.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True, mode=0o700)
    try:
        builders: dict[str, Callable[[PreparedInput, Path, Path], dict[str, Any]]] = {
            "ct": _series_view,
            "mri": _series_view,
            "cxr": _image_view,
            "image": _image_view,
            "wsi": _slide_view,
            "pdf": _pdf_view,
            "fhir": _fhir_view,
        }
        build = builders.get(prepared.kind)
        view: dict[str, Any] = (
            build(prepared, source, tmp)
            if build
            else {"type": "none", "note": f"no viewer for {prepared.kind}"}
        )
        view["kind"] = prepared.kind
        view["facts"] = view_facts(prepared)
        view["model_labels"] = prepared.labels
        (tmp / "view.json").write_text(json.dumps(_jsonable(view)))
        if folder.exists():  # built meanwhile by another process: keep that one
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("viewer: %s view built (%s)", prepared.kind, view.get("type"))
    return view


def _as_stored(values: np.ndarray) -> tuple[bytes, str]:
    """Little-endian int16 when every value is a whole number that fits, else float32."""
    if values.size and np.issubdtype(values.dtype, np.integer):
        fits = int(values.min()) >= INT16[0] and int(values.max()) <= INT16[1]
        whole = True
    else:
        finite = np.isfinite(values).all() if values.size else True
        whole = bool(finite) and bool(np.array_equal(values, np.round(values)))
        fits = (
            whole and values.size > 0 and float(values.min()) >= INT16[0] and float(values.max()) <= INT16[1]
        )
    if whole and fits:
        return values.astype("<i2").tobytes(), "int16"
    return values.astype("<f4").tobytes(), "float32"


def _ct_presets(kind: str) -> list[dict[str, Any]]:
    if kind != "ct":
        return []
    from aris.inputs.volume import CT_WINDOWS

    names = ("Recipe R (wide)", "Recipe G (soft tissue)", "Recipe B (brain)")
    out = [
        {"name": n, "center": (lo + hi) / 2, "width": float(hi - lo), "recipe": True}
        for n, (lo, hi) in zip(names, CT_WINDOWS, strict=True)
    ]
    out += [{"name": n, "center": c, "width": w, "recipe": False} for n, c, w in CLINICAL_CT_PRESETS]
    return out


def _series_view(prepared: PreparedInput, source: Path, folder: Path) -> dict[str, Any]:
    d = prepared.provenance.details
    if d.get("format") == "NIfTI":
        return _nifti_view(prepared, source, folder)
    from pydicom.pixels import apply_modality_lut

    from aris.inputs import dicom
    from aris.inputs import series as S

    uid = d.get("series_uid")
    with ExitStack() as stack:
        _, files = S._collect(source, stack)
        refs, _ = S._scan(files, single=len(files) == 1)
        group = S._group(refs).get(str(uid))
        if not group:
            raise InputError(None, "the viewer cannot find the series the model was shown")
        vol = S._make_volume(str(uid), group)
        indices = list(d.get("indices") or [])
        positions = [round(vol.projections[i], 4) for i in indices if i < len(vol.projections)]
        if positions != d.get("positions_mm"):
            # The stack shown must be the one the model's slices came from, or the viewer would lie.
            raise ArisError("the viewer ordered the series differently from the model's reading")
        dtypes: list[str] = []
        lo, hi = math.inf, -math.inf
        for n, ref in enumerate(vol.slices):
            values = apply_modality_lut(S._decode(ref), dicom.rescale_dataset(ref.dataset(), ref.frame))
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
            data, dtype = _as_stored(values)
            (folder / f"slice-{n + 1:05d}.bin").write_bytes(data)
            dtypes.append(dtype)
        first = vol.slices[0].dataset()
        frame = vol.slices[0].frame
        rds = dicom.rescale_dataset(first, frame)
        spacing = dicom.as_floats(first.get("PixelSpacing"), 2)
        if spacing is None and frame is not None:
            spacing = dicom.as_floats(
                dicom.frame_value(first, frame, "PixelMeasuresSequence", "PixelSpacing"), 2
            )
        thickness = first.get("SliceThickness")
        iop = vol.slices[0].orientation
        view = {
            "type": "series",
            "n": len(vol.slices),
            "rows": vol.slices[0].rows,
            "columns": vol.slices[0].columns,
            "dtypes": dtypes,
            "unit": "HU" if prepared.kind == "ct" else "",
            "value_range": [lo, hi],
            "positions_mm": [round(p, 4) for p in vol.projections],
            "pixel_spacing_mm": list(spacing) if spacing else None,
            "sampled": indices,
            "presets": _ct_presets(prepared.kind),
            "model_window": d.get("windows_hu") or ({"minmax": d.get("minmax")} if d.get("minmax") else None),
            "dicom": {
                "modality": d.get("modality"),
                "photometric": str(first.get("PhotometricInterpretation") or ""),
                "rescale": {
                    "slope": _num(rds.get("RescaleSlope")),
                    "intercept": _num(rds.get("RescaleIntercept")),
                    "type": str(rds.get("RescaleType") or ("HU" if prepared.kind == "ct" else "")),
                    "modality_lut": "ModalityLUTSequence" in rds,
                },
                "pixel_spacing_mm": list(spacing) if spacing else None,
                "slice_thickness_mm": _num(thickness),
                "slice_spacing_mm": d.get("spacing_mm"),
                "orientation": d.get("orientation"),
                "image_orientation_patient": list(iop) if iop else None,
                "series_number": d.get("series_number"),
                "series_description": d.get("series_description"),
                "chosen_because": d.get("chosen_because"),
                "candidates": d.get("candidates"),
                "window": d.get("windows_hu") or d.get("minmax"),
            },
        }
    return view


def _nifti_view(prepared: PreparedInput, source: Path, folder: Path) -> dict[str, Any]:
    """The same slices the NIfTI reader took: canonical orientation, radiological view, feet to head."""
    import nibabel as nib

    d = prepared.provenance.details
    img = nib.load(source)
    if len(img.shape) > 3:
        img = img.slicer[(..., *([0] * (len(img.shape) - 3)))]
    canonical = nib.as_closest_canonical(img)
    data = np.asarray(canonical.get_fdata())
    if np.isnan(data).any():
        data = np.nan_to_num(data, nan=float(np.nanmin(data)) if not np.isnan(data).all() else 0.0)
    nx, ny, nz = data.shape
    dtypes = []
    for k in range(nz):
        payload, dtype = _as_stored(data[::-1, ::-1, k].T)
        (folder / f"slice-{k + 1:05d}.bin").write_bytes(payload)
        dtypes.append(dtype)
    affine = canonical.affine
    zooms = [float(z) for z in canonical.header.get_zooms()[:3]]
    normal = affine[:3, 2] / np.linalg.norm(affine[:3, 2])
    positions = [
        round(float(np.dot(affine[:3, :3] @ [0, 0, k] + affine[:3, 3], normal)), 4) for k in range(nz)
    ]
    return {
        "type": "series",
        "n": nz,
        "rows": ny,
        "columns": nx,
        "dtypes": dtypes,
        "unit": "HU" if prepared.kind == "ct" else "",
        "value_range": [float(data.min()), float(data.max())],
        "positions_mm": positions,
        "pixel_spacing_mm": [zooms[1], zooms[0]],
        "sampled": list(d.get("indices") or []),
        "presets": _ct_presets(prepared.kind),
        "model_window": d.get("windows_hu") or ({"minmax": d.get("minmax")} if d.get("minmax") else None),
        "dicom": {
            "format": "NIfTI",
            "voxel_size_mm": zooms,
            "orientation_in_file": d.get("orientation_in_file"),
            "orientation_used": d.get("orientation_used"),
            "rescale": {"slope": d.get("scl_slope"), "intercept": d.get("scl_inter"), "type": "scl"},
            "orientation": d.get("orientation"),
            "window": d.get("windows_hu") or d.get("minmax"),
        },
    }


def _num(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _image_view(prepared: PreparedInput, source: Path, folder: Path) -> dict[str, Any]:
    """A radiograph's values after the Modality LUT (before any window), or a picture's own pixels."""
    d = prepared.provenance.details
    pad = prepared.padding
    img = prepared.images[0]
    if pad is not None:
        img = img.crop((pad.left, pad.top, pad.left + pad.width, pad.top + pad.height))
    width, height = img.size
    view: dict[str, Any] = {
        "type": "image",
        "width": width,
        "height": height,
        "window": d.get("window"),
        # the square the model sees when a task pads (localization): symmetric, odd pixel right/bottom
        "padding": d.get("padding")
        or {
            "left": (max(width, height) - width) // 2,
            "top": (max(width, height) - height) // 2,
            "size": max(width, height),
            "width": width,
            "height": height,
        },
        "padded_by_reader": d.get("padding") is not None,
        "inverted": bool((d.get("window") or {}).get("inverted"))
        if isinstance(d.get("window"), dict)
        else False,
    }
    grey = d.get("format") == "DICOM" and isinstance(d.get("window"), dict) and "source" in d["window"]
    grey = grey and d["window"]["source"] != "palette colour LUT"
    if d.get("mode") in ("I;16", "I;16B", "I;16L", "I", "F"):
        # A 16-bit or float picture: the reader scaled it min-max to 8 bits; the viewer gets its values.
        from PIL import ImageOps

        with Image.open(source) as im:
            values = np.asarray(ImageOps.exif_transpose(im), dtype=np.float64)
        payload, dtype = _as_stored(values)
        (folder / "image.bin").write_bytes(payload)
        lo, hi = float(values.min()), float(values.max())
        view.update(
            {
                "channels": 1,
                "dtype": dtype,
                "value_range": [lo, hi],
                "presets": [
                    {"name": "Full range (as prepared)", "center": (lo + hi) / 2, "width": max(hi - lo, 1.0)}
                ],
                "dicom": {k: d.get(k) for k in ("format", "mode") if k in d},
            }
        )
    elif grey:
        from pydicom.pixels import apply_modality_lut

        from aris.inputs import dicom

        ds = dicom.read_header(source)
        stored = dicom.decode(ds, source, 0 if dicom.n_frames(ds) > 1 else None)
        values = np.asarray(apply_modality_lut(stored, ds))
        if values.shape != (height, width):
            raise ArisError("the viewer read a radiograph of another size than the model's")
        payload, dtype = _as_stored(values)
        (folder / "image.bin").write_bytes(payload)
        spacing = dicom.as_floats(ds.get("PixelSpacing"), 2) or dicom.as_floats(
            ds.get("ImagerPixelSpacing"), 2
        )
        view.update(
            {
                "channels": 1,
                "dtype": dtype,
                "value_range": [float(values.min()), float(values.max())],
                "presets": _image_presets(d.get("window"), values),
                "dicom": {
                    "modality": d.get("modality"),
                    "photometric": d.get("photometric"),
                    "bits_stored": d.get("bits_stored"),
                    "transfer_syntax": d.get("transfer_syntax"),
                    "rescale": {
                        "slope": _num(ds.get("RescaleSlope")),
                        "intercept": _num(ds.get("RescaleIntercept")),
                        "modality_lut": "ModalityLUTSequence" in ds,
                    },
                    "pixel_spacing_mm": list(spacing) if spacing else None,
                    "window": d.get("window"),
                    "body_part": d.get("body_part"),
                },
            }
        )
    else:
        img.convert("RGB").save(folder / "image.png")
        view.update(
            {
                "channels": 3,
                "dtype": "uint8",
                "value_range": [0.0, 255.0],
                "presets": [{"name": "Full range", "center": 127.5, "width": 256.0}],
                "dicom": {
                    k: d.get(k) for k in ("format", "modality", "photometric", "mode", "window") if k in d
                },
            }
        )
    return view


def _image_presets(window: Any, values: np.ndarray) -> list[dict[str, Any]]:
    """Linear windows for a radiograph: the file's own, the reader's percentile window, full range."""
    out: list[dict[str, Any]] = []
    if isinstance(window, dict):
        if window.get("source") == "header window" and math.isfinite(float(window.get("width") or "nan")):
            out.append(
                {"name": "File window", "center": float(window["center"]), "width": float(window["width"])}
            )
        elif "low" in window and "high" in window:
            lo, hi = float(window["low"]), float(window["high"])
            out.append({"name": "Percentile window (as prepared)", "center": (lo + hi) / 2, "width": hi - lo})
    lo, hi = float(values.min()), float(values.max())
    out.append({"name": "Full range", "center": (lo + hi) / 2, "width": max(hi - lo, 1.0)})
    return out


def _slide_view(prepared: PreparedInput, source: Path, folder: Path) -> dict[str, Any]:
    """The slide's low-resolution image and tissue mask (as the reader built them) and the tiles' boxes."""
    from aris.inputs.wsi import build_mask, open_slide

    d = prepared.provenance.details
    slide = open_slide(source)
    try:
        footprint = float(d["region_at_level"]) * float(d["level_downsample"])
        mask = build_mask(slide, footprint)
        from aris.inputs.wsi import low_res_image

        rgb, _, scale = low_res_image(slide)
    finally:
        slide.close()
    Image.fromarray(rgb, "RGB").save(folder / "thumb.png")
    Image.fromarray((mask.mask * 255).astype(np.uint8), "L").save(folder / "mask.png")
    recorded = d.get("mask") or {}
    same = (
        list(mask.mask.shape) == recorded.get("shape")
        and round(mask.threshold, 4) == recorded.get("saturation_threshold")
        and round(float(mask.mask.mean()), 4) == recorded.get("tissue_fraction")
    )
    return {
        "type": "slide",
        "thumb": {"width": rgb.shape[1], "height": rgb.shape[0], "level0_per_pixel": scale},
        "mask": {
            "width": mask.mask.shape[1],
            "height": mask.mask.shape[0],
            "level0_per_pixel": mask.scale,
            "threshold": round(mask.threshold, 4),
            "tissue_fraction": round(float(mask.mask.mean()), 4),
            "same_as_prepared": same,
        },
        "tiles": d.get("tiles") or [],
        "magnification": d.get("magnification"),
        "tile_px": d.get("tile"),
        "level0": (d.get("level_dimensions") or [[0, 0]])[0],
        "warnings": [] if same else ["the tissue mask shown differs from the one the tiles were chosen with"],
    }


def _pdf_view(prepared: PreparedInput, source: Path, folder: Path) -> dict[str, Any]:
    """Each page's text lines with their boxes in page-image pixels, to find an extracted row on its page."""
    import pypdfium2 as pdfium

    d = prepared.provenance.details
    pages_out: list[dict[str, Any]] = []
    warnings: list[str] = []
    try:
        doc = pdfium.PdfDocument(source)
    except pdfium.PdfiumError:
        doc = None
        warnings.append("the text layer could not be read for highlighting")
    for info in d.get("pages") or []:
        lines: list[dict[str, Any]] = []
        if doc is not None:
            page = doc[int(info["page"]) - 1]
            try:
                _, h_pt = page.get_size()
                scale = float(info["scale"])
                tp = page.get_textpage()
                for i in range(tp.count_rects()):
                    left, bottom, right, top = tp.get_rect(i)
                    text = tp.get_text_bounded(left, bottom, right, top).strip()
                    if text:
                        box = [left * scale, (h_pt - top) * scale, right * scale, (h_pt - bottom) * scale]
                        lines.append({"text": text, "box": [round(v, 1) for v in box]})
                tp.close()
            finally:
                page.close()
        pages_out.append({"page": info["page"], "size_px": info.get("size_px"), "lines": lines})
    if doc is not None:
        doc.close()
    return {"type": "pdf", "pages": pages_out, "warnings": warnings}


def _fhir_view(prepared: PreparedInput, source: Path, folder: Path) -> dict[str, Any]:
    """Observations as the ``trends`` task computes them, and encounters, conditions and medications."""
    from aris.tasks.trends import compute_series

    resources: dict[str, dict[str, Any]] = prepared.extra.get("resources") or {}
    series = [s.model_dump(mode="json") for s in compute_series(resources)]
    timeline: list[dict[str, Any]] = []
    for key, r in resources.items():
        rtype = r.get("resourceType")
        if rtype == "Encounter":
            period = r.get("period") or {}
            types = r.get("type") or [{}]
            label = _text(types[0]) or _text(r.get("class")) or "encounter"
            timeline.append(_event("encounter", label, period.get("start"), period.get("end"), r, key))
        elif rtype == "Condition":
            status = _text(r.get("clinicalStatus"))
            timeline.append(
                _event(
                    "condition",
                    _text(r.get("code")),
                    r.get("onsetDateTime") or r.get("recordedDate"),
                    r.get("abatementDateTime"),
                    r,
                    key,
                    status,
                )
            )
        elif rtype == "MedicationRequest":
            med = _text(r.get("medicationCodeableConcept")) or (r.get("medicationReference") or {}).get(
                "display"
            )
            timeline.append(
                _event(
                    "medication",
                    str(med or "medication"),
                    r.get("authoredOn"),
                    None,
                    r,
                    key,
                    str(r.get("status") or ""),
                )
            )
    timeline = [t for t in timeline if t["start"]]
    timeline.sort(key=lambda t: (t["start"], t["kind"]))
    return {"type": "fhir", "series": series, "timeline": timeline}


def _event(
    kind: str, label: str, start: Any, end: Any, r: dict[str, Any], key: str, status: str = ""
) -> dict[str, Any]:
    return {
        "kind": kind,
        "label": label or kind,
        "start": start if isinstance(start, str) else None,
        "end": end if isinstance(end, str) else None,
        "status": status or str(r.get("status") or ""),
        "id": key,
    }


def _text(cc: Any) -> str:
    if isinstance(cc, dict):
        if cc.get("text"):
            return str(cc["text"])
        codings = cc.get("coding") or []
        if codings:
            c = codings[0]
            return str(c.get("display") or c.get("code") or "")
        if cc.get("display") or cc.get("code"):
            return str(cc.get("display") or cc.get("code"))
    return ""
