"""The viewer's routes on a real server: original values served as they are in the files, views kept for
jobs after their uploads are gone, and nothing reachable by path.

The engine here is the scripted one: these routes sit above the engine (reading studies, keeping views,
shaping records), and what a model answers does not change them.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image

from aris.server import create_app
from aris.server.settings import ServerSettings

from .conftest import live_server

KEYS = {"reader": "viewer-reader-key-0123456789", "other": "viewer-other-key-0123456789"}
H = {"Authorization": f"Bearer {KEYS['reader']}"}
OTHER = {"Authorization": f"Bearer {KEYS['other']}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    from aris.config import ArisSettings
    from aris.engines.fake import FakeEngine

    home = tmp_path_factory.mktemp("home")
    keys_file = home / "keys.toml"
    keys_file.write_text(
        "".join(
            f'[[key]]\nname = "{name}"\nsha256 = "{hashlib.sha256(key.encode()).hexdigest()}"\n\n'
            for name, key in KEYS.items()
        )
    )
    keys_file.chmod(0o600)
    app = create_app(
        ServerSettings(api_keys_file=keys_file), engine=FakeEngine(), aris_settings=ArisSettings(home=home)
    )
    with live_server(app) as url:
        yield url, home


def _upload(url: str, paths: list[Path]) -> str:
    files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    r = httpx.post(f"{url}/v1/uploads", files=files, headers=H)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _view(url: str, upload_id: str, kind: str) -> dict:  # type: ignore[type-arg]
    r = httpx.get(f"{url}/v1/viewer/uploads/{upload_id}", params={"kind": kind}, headers=H, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _finish(url: str, job_id: str) -> None:
    with httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", headers=H, timeout=60) as r:
        for _ in r.iter_lines():
            pass


def _modality_values(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1)) + float(
        ds.get("RescaleIntercept", 0)
    )


def test_series_slices_are_the_files_values_in_hu_ordered_feet_to_head(server, samples) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    paths = sorted(samples("dicom/ct_series/head_ct2_4slices").iterdir())
    uid = _upload(url, paths)
    assert httpx.get(f"{url}/v1/viewer/uploads/{uid}", params={"kind": "ct"}).status_code == 401
    m = _view(url, uid, "ct")
    view = m["view"]
    assert m["kind"] == "ct"
    assert view["type"] == "series"
    assert view["n"] == 4
    assert view["unit"] == "HU"
    by_z = sorted(
        paths, key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2])
    )
    zs = [float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in by_z]
    assert view["positions_mm"] == pytest.approx(zs)
    for i, p in enumerate(by_z):
        raw = httpx.get(f"{url}{view['base_url']}/slice-{i + 1:05d}.bin", headers=H)
        assert raw.headers["content-type"] == "application/octet-stream"
        assert view["dtypes"][i] == "int16"
        got = np.frombuffer(raw.content, "<i2").reshape(view["rows"], view["columns"])
        np.testing.assert_array_equal(got, _modality_values(p))
    presets = {p["name"]: (p["center"], p["width"]) for p in view["presets"]}
    assert presets["Recipe R (wide)"] == (0.0, 2048.0)
    assert presets["Recipe G (soft tissue)"] == (40.0, 350.0)
    assert presets["Recipe B (brain)"] == (40.0, 80.0)
    assert presets["Lung"] == (-600.0, 1500.0)
    assert view["sampled"] == [0, 1, 2, 3]
    assert view["dicom"]["rescale"]["intercept"] == float(pydicom.dcmread(paths[0]).RescaleIntercept)
    assert view["dicom"]["chosen_because"] == "the only series"
    assert [i["label"] for i in m["images"]] == ["SLICE 1", "SLICE 2", "SLICE 3", "SLICE 4"]


def test_a_messy_study_is_viewed_as_the_series_the_model_was_shown_in_true_order(server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A study with a repeat acquisition, a DERIVED reformat with more slices, a localizer, a re-sent file,
    clutter, shuffled names, a tilted plane and a different rescale per file (scripts/make_volumes.py)."""
    import importlib.util
    import sys

    url, _ = server
    script = Path(__file__).resolve().parents[2] / "scripts" / "make_volumes.py"
    spec = importlib.util.spec_from_file_location("make_volumes", script)
    assert spec is not None
    assert spec.loader is not None
    mv = sys.modules.setdefault("make_volumes", importlib.util.module_from_spec(spec))
    if not hasattr(mv, "make_study"):
        spec.loader.exec_module(mv)
    study = mv.make_study(
        tmp_path / "study", mv.SeriesSpec(n_slices=12, size=32, tilt=5.0, inplane_jitter=2.0)
    )
    files = sorted(p for p in study.folder.rglob("*") if p.is_file())
    m = _view(url, _upload(url, files), "ct")
    view = m["view"]
    assert m["details"]["series_uid"] == study.main.series_uid
    assert view["n"] == 12
    for k in range(12):
        raw = httpx.get(f"{url}{view['base_url']}/slice-{k + 1:05d}.bin", headers=H).content
        dtype = "<i2" if view["dtypes"][k] == "int16" else "<f4"
        np.testing.assert_array_equal(np.frombuffer(raw, dtype).reshape(32, 32), study.main.hu(k))
    along = [float(np.dot(p, study.main.normal)) for p in study.main.positions]
    assert view["positions_mm"] == pytest.approx(along, abs=1e-3)
    assert "ORIGINAL preferred over DERIVED" in view["dicom"]["chosen_because"]


def test_radiograph_values_before_the_window_and_the_square_the_model_sees(server, samples) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    path = samples("dicom/cxr/highdicom_dx_image.dcm")
    view = _view(url, _upload(url, [path]), "cxr")["view"]
    ds = pydicom.dcmread(path)
    assert (view["width"], view["height"]) == (ds.Columns, ds.Rows)
    assert view["inverted"] is (ds.PhotometricInterpretation == "MONOCHROME1")
    side = max(ds.Rows, ds.Columns)
    assert view["padding"] == {
        "left": (side - ds.Columns) // 2,
        "top": (side - ds.Rows) // 2,
        "size": side,
        "width": ds.Columns,
        "height": ds.Rows,
    }
    raw = httpx.get(f"{url}{view['base_url']}/image.bin", headers=H).content
    dtype = "<i2" if view["dtype"] == "int16" else "<f4"
    got = np.frombuffer(raw, dtype).reshape(ds.Rows, ds.Columns)
    np.testing.assert_array_equal(got, _modality_values(path))


def test_slide_thumbnail_mask_and_the_sampled_tiles(server, samples) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    m = _view(url, _upload(url, [samples("wsi/cmu_small_region.svs")]), "wsi")
    view = m["view"]
    thumb = Image.open(io.BytesIO(httpx.get(f"{url}{view['base_url']}/thumb.png", headers=H).content))
    mask = Image.open(io.BytesIO(httpx.get(f"{url}{view['base_url']}/mask.png", headers=H).content))
    assert thumb.size == (view["thumb"]["width"], view["thumb"]["height"])
    assert mask.size == (view["mask"]["width"], view["mask"]["height"])
    assert view["mask"]["same_as_prepared"] is True
    assert len(view["tiles"]) == len(m["images"])
    w0, h0 = view["level0"]
    for t in view["tiles"]:
        assert 0 <= t["x"] < w0
        assert 0 <= t["y"] < h0
    assert view["magnification"] == "10X"


def test_pdf_text_lines_are_boxed_in_page_pixels(server, samples) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    view = _view(url, _upload(url, [samples("lab/synthetic_lab_report.pdf")]), "pdf")["view"]
    page = view["pages"][0]
    hits = [line for line in page["lines"] if "Hemoglobin" in line["text"]]
    assert hits
    w, h = page["size_px"]
    x0, y0, x1, y1 = hits[0]["box"]
    assert 0 <= x0 < x1 <= w
    assert 0 <= y0 < y1 <= h


def test_fhir_observations_per_analyte_and_a_dated_timeline(server, samples) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    path = samples("fhir/synthetic_patient_bundle_r4.json")
    view = _view(url, _upload(url, [path]), "fhir")["view"]
    bundle = json.loads(path.read_text())
    resources = [e["resource"] for e in bundle["entry"]]
    analytes = set()
    for r in resources:
        if r["resourceType"] != "Observation" or not r.get("effectiveDateTime"):
            continue
        for obj in [r, *r.get("component", [])]:
            q = obj.get("valueQuantity")
            if q and isinstance(q.get("value"), int | float):
                code = next(c["code"] for c in obj["code"]["coding"] if c["system"] == "http://loinc.org")
                analytes.add((code, q.get("code") or q.get("unit")))
    assert {(s["code"], s["unit"]) for s in view["series"]} == analytes
    kinds = {"Encounter": "encounter", "Condition": "condition", "MedicationRequest": "medication"}
    expected = {k: sum(1 for r in resources if r["resourceType"] == t) for t, k in kinds.items()}
    got = {k: sum(1 for e in view["timeline"] if e["kind"] == k) for k in kinds.values()}
    assert got == expected
    assert all(e["start"] for e in view["timeline"])


def test_a_job_keeps_its_view_after_its_upload_is_removed(server, samples) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    uid = _upload(url, sorted(samples("dicom/ct_series/head_ct2_4slices").iterdir()))
    before = _view(url, uid, "ct")["view"]
    first = httpx.get(f"{url}{before['base_url']}/slice-00001.bin", headers=H).content
    job = httpx.post(
        f"{url}/v1/jobs", json={"task": "ct", "uploads": [uid], "kind": "ct", "question": "Bleed?"}, headers=H
    ).json()
    _finish(url, job["id"])
    assert httpx.get(f"{url}/v1/viewer/uploads/{uid}", params={"kind": "ct"}, headers=H).status_code == 404
    m = httpx.get(f"{url}/v1/viewer/jobs/{job['id']}", headers=H).json()
    assert m["status_label"] == "done"
    assert [i["label"] for i in m["images"]] == ["SLICE 1", "SLICE 2", "SLICE 3", "SLICE 4"]
    assert all(i["url"].startswith(f"/v1/jobs/{job['id']}/images/") for i in m["images"])
    assert m["view"]["base_url"].startswith(f"/v1/viewer/jobs/{job['id']}/views/")
    again = httpx.get(f"{url}{m['view']['base_url']}/slice-00001.bin", headers=H).content
    assert again == first
    assert m["result"]["text"] == "ok"


def test_a_reply_that_does_not_validate_is_called_so(server, samples) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    uid = _upload(url, [samples("dicom/cxr/highdicom_dx_image.dcm")])
    job = httpx.post(
        f"{url}/v1/jobs", json={"task": "cxr-localize", "uploads": [uid], "kind": "cxr"}, headers=H
    ).json()
    _finish(url, job["id"])
    m = httpx.get(f"{url}/v1/viewer/jobs/{job['id']}", headers=H).json()
    assert m["job"]["status"] == "done"
    assert m["status_label"] == "failed validation"
    history = httpx.get(f"{url}/v1/viewer/history", headers=H).json()
    assert next(h for h in history if h["id"] == job["id"])["status_label"] == "failed validation"


def test_view_files_are_reached_by_name_only(server, samples) -> None:  # type: ignore[no-untyped-def]
    url, home = server
    uid = _upload(url, sorted(samples("dicom/ct_series/head_ct2_4slices").iterdir()))
    view = _view(url, uid, "ct")["view"]
    base = view["base_url"]
    key = base.rsplit("/", 1)[1]
    assert httpx.get(f"{url}{base}/view.json", headers=H).status_code == 404
    assert httpx.get(f"{url}{base}/..%2Fview.json", headers=H).status_code == 404
    assert (
        httpx.get(f"{url}/v1/viewer/uploads/{uid}/views/{key[:-1]}x/slice-00001.bin", headers=H).status_code
        == 404
    )
    assert httpx.get(f"{url}/v1/viewer/jobs/nosuchjob", headers=H).status_code == 404
    assert (
        httpx.get(f"{url}/v1/viewer/jobs/nosuchjob/views/{key}/slice-00001.bin", headers=H).status_code == 404
    )
    body = json.dumps(_view(url, uid, "ct"))
    assert str(home) not in body
    assert "/tmp" not in body


def test_another_key_sees_none_of_it(server, samples) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    uid = _upload(url, sorted(samples("dicom/ct_series/head_ct2_4slices").iterdir()))
    view = _view(url, uid, "ct")["view"]
    for path in (f"/v1/viewer/uploads/{uid}?kind=ct", f"{view['base_url']}/slice-00001.bin"):
        assert httpx.get(f"{url}{path}", headers=OTHER).status_code == 404, path
        assert httpx.get(f"{url}{path}", headers=H).status_code == 200, path
    job = httpx.post(
        f"{url}/v1/jobs", json={"task": "ct", "uploads": [uid], "kind": "ct", "question": "Mass?"}, headers=H
    ).json()
    _finish(url, job["id"])
    mine = httpx.get(f"{url}/v1/viewer/jobs/{job['id']}", headers=H).json()["view"]["base_url"]
    for path in (f"/v1/viewer/jobs/{job['id']}", f"{mine}/slice-00001.bin"):
        assert httpx.get(f"{url}{path}", headers=OTHER).status_code == 404, path
        assert httpx.get(f"{url}{path}", headers=H).status_code == 200, path
    assert job["id"] not in [h["id"] for h in httpx.get(f"{url}/v1/viewer/history", headers=OTHER).json()]
    assert job["id"] in [h["id"] for h in httpx.get(f"{url}/v1/viewer/history", headers=H).json()]
