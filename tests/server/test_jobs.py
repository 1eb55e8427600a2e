"""The task API end to end on a real server and a real engine: upload, preview, job, SSE events, result."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from aris.server import create_app
from aris.server.settings import ServerSettings

from .conftest import live_server

H = {"Authorization": "Bearer k"}


@pytest.fixture(scope="module")
def server(vlm_engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    from aris.config import ArisSettings

    home = tmp_path_factory.mktemp("home")
    app = create_app(
        ServerSettings(api_key="k", max_upload_mb=5), engine=vlm_engine, aris_settings=ArisSettings(home=home)
    )
    with live_server(app) as url:
        yield url, home


def _events(url: str, job_id: str) -> list[dict]:
    out = []
    with httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", headers=H, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
    return out


def test_ct_series_job_streams_events_and_keeps_images(server, samples) -> None:  # type: ignore[no-untyped-def]
    url, home = server
    files = [
        ("files", (p.name, p.read_bytes(), "application/dicom"))
        for p in sorted(samples("dicom/ct_series/head_ct2_4slices").iterdir())
    ]
    up = httpx.post(f"{url}/v1/uploads", files=files, headers=H)
    assert up.status_code == 201, up.text
    uid = up.json()["id"]
    prep = httpx.post(f"{url}/v1/uploads/{uid}/prepare", json={"kind": "ct"}, headers=H).json()
    assert prep["kind"] == "ct"
    assert [i["label"] for i in prep["images"]] == ["SLICE 1", "SLICE 2", "SLICE 3", "SLICE 4"]
    png = httpx.get(url + prep["images"][0]["url"], headers=H)
    assert Image.open(io.BytesIO(png.content)).mode == "RGB"

    job = httpx.post(
        f"{url}/v1/jobs",
        json={
            "task": "ct",
            "uploads": [uid],
            "kind": "ct",
            "question": "Any hemorrhage?",
            "options": {"max_new_tokens": 8},
        },
        headers=H,
    )
    assert job.status_code == 202, job.text
    events = _events(url, job.json()["id"])
    types = [e["type"] for e in events]
    assert types[0] == "preparing"
    assert types[1] == "prepared"
    assert len(events[1]["images"]) == 4
    assert "token" in types
    assert types[-2:] == ["result", "done"]
    result = events[-2]["result"]
    assert result["notice"].startswith("Preliminary")
    assert result["prompt_sha256"]
    record = httpx.get(f"{url}/v1/jobs/{job.json()['id']}", headers=H).json()
    assert record["status"] == "done"
    assert (home / "jobs" / job.json()["id"] / "images" / "0004.png").exists()
    assert not list((home / "jobs" / job.json()["id"]).glob("*.json"))  # the store is the one record
    # the upload was removed after the job
    assert httpx.post(f"{url}/v1/uploads/{uid}/prepare", json={"kind": "ct"}, headers=H).status_code == 404
    assert any(j["id"] == job.json()["id"] for j in httpx.get(f"{url}/v1/jobs", headers=H).json())
    # the shared store (the one `aris batch status` reads) has the job, its result and the audit trail
    from aris.store import Store

    with Store.open(f"sqlite:///{home / 'aris.db'}") as store:
        sid = record["store_job"]
        assert store.counts(sid)["done"] == 1
        rows = store.export(sid)
        assert rows[0]["result"]["prompt_sha256"] == result["prompt_sha256"]


def test_zip_with_traversal_names_is_rejected(server) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../etc/evil.dcm", b"x")
    r = httpx.post(
        f"{url}/v1/uploads", files=[("files", ("study.zip", buf.getvalue(), "application/zip"))], headers=H
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "unsafe_archive"


def test_oversized_upload_is_413(server) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    r = httpx.post(
        f"{url}/v1/uploads", files=[("files", ("big.dcm", b"\0" * (6 * 1024 * 1024), "x"))], headers=H
    )
    assert r.status_code == 413


def test_unknown_task_and_missing_key(server) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    assert httpx.get(f"{url}/v1/jobs").status_code == 401
    r = httpx.post(f"{url}/v1/jobs", json={"task": "nope", "uploads": ["x"]}, headers=H)
    assert r.status_code == 400
    assert "Unknown task" in r.json()["error"]["message"]


def test_openapi_schema_is_published(server) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    spec = httpx.get(f"{url}/openapi.json").json()
    assert "/v1/chat/completions" in spec["paths"]
    assert "/v1/jobs" in spec["paths"]


def test_history_comes_from_the_store_after_a_restart(server, vlm_engine) -> None:  # type: ignore[no-untyped-def]
    from aris.config import ArisSettings

    url, home = server
    buf = io.BytesIO()
    Image.new("L", (96, 80), 90).save(buf, format="PNG")
    png = buf.getvalue()
    uid = httpx.post(f"{url}/v1/uploads", files=[("files", ("a.png", png, "x"))], headers=H).json()["id"]
    done = httpx.post(
        f"{url}/v1/jobs", json={"task": "cxr-report", "uploads": [uid], "max_new_tokens": 3}, headers=H
    ).json()
    assert _events(url, done["id"])[-1]["type"] == "done"
    uid = httpx.post(f"{url}/v1/uploads", files=[("files", ("b.png", png, "x"))], headers=H).json()["id"]
    slow = httpx.post(
        f"{url}/v1/jobs", json={"task": "cxr-report", "uploads": [uid], "max_new_tokens": 4000}, headers=H
    ).json()
    cancelled = httpx.delete(f"{url}/v1/jobs/{slow['id']}", headers=H).json()
    assert cancelled["status"] == "cancelled"
    before = httpx.get(f"{url}/v1/jobs/{done['id']}", headers=H).json()

    # a second server on the same home and store (a restart) knows both jobs, from the store
    again = create_app(ServerSettings(api_key="k"), engine=vlm_engine, aris_settings=ArisSettings(home=home))
    with live_server(again) as url2:
        listed = {j["id"]: j["status"] for j in httpx.get(f"{url2}/v1/jobs", headers=H).json()}
        assert listed[done["id"]] == "done"
        assert listed[slow["id"]] == "cancelled"
        after = httpx.get(f"{url2}/v1/jobs/{done['id']}", headers=H).json()
        assert after["result"] == before["result"]
        replay = _events(url2, done["id"])
        assert [e["type"] for e in replay] == ["result", "done"]
        assert replay[0]["result"]["prompt_sha256"] == before["result"]["prompt_sha256"]
