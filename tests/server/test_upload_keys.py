"""An upload's result key is what the reader reads, names included: the same bytes under names the reader
skips (a dot-file, __MACOSX) are another input, never served the first one's answer."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import httpx

from aris.config import ArisSettings
from aris.engines.fake import FakeEngine
from aris.server import create_app
from aris.server.local import live_server
from aris.server.settings import ServerSettings

SERIES = Path(__file__).parents[1] / "data" / "dicom" / "ct_series" / "head_ct2_4slices"
H = {"Authorization": "Bearer k"}


def _zipped(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, src in zip(names, sorted(SERIES.iterdir()), strict=False):
            z.writestr(name, src.read_bytes())
    return buf.getvalue()


def _job(url: str, data: bytes) -> dict[str, Any]:
    up = httpx.post(f"{url}/v1/uploads", files=[("files", ("study.zip", data, "application/zip"))], headers=H)
    body = {"task": "ct", "uploads": [up.json()["id"]], "kind": "ct", "question": "Any hemorrhage?"}
    job = httpx.post(f"{url}/v1/jobs", json=body, headers=H)
    assert job.status_code == 202, job.text
    events = []
    with httpx.stream("GET", f"{url}/v1/jobs/{job.json()['id']}/events", headers=H, timeout=120) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    prepared = next(e for e in events if e["type"] == "prepared")
    result = next(e for e in events if e["type"] == "result")
    return {"images": len(prepared["images"]), "reused": result["reused"], "text": result["result"]["text"]}


def test_the_same_bytes_under_a_name_the_reader_skips_are_another_input(tmp_path: Path) -> None:
    four = _zipped(["study/1", "study/2", "study/3", "study/4"])
    three = _zipped(["study/1", "study/2", "study/3", "study/x/.4"])  # a dot-file: not read
    engine = FakeEngine(replies=["Final Answer: no (4 slices)", "Final Answer: no (3 slices)"])
    app = create_app(ServerSettings(api_key="k"), engine=engine, aris_settings=ArisSettings(home=tmp_path))
    with live_server(app) as url:
        first = _job(url, four)
        second = _job(url, three)
        again = _job(url, four)
    assert (first["images"], second["images"]) == (4, 3)
    assert not second["reused"]
    assert second["text"] == "Final Answer: no (3 slices)"
    assert again["reused"]  # the same upload again is served from the store
    assert len(engine.prompts) == 2
