"""`aris demo` end to end, as a newcomer runs it: the installed entry point in a fresh process.

The default run uses the real stand-ins (the Gemma 3 270M GGUF on llama.cpp, the tiny VLM on
transformers); the `--model` path is checked with a scripted engine, since it is code above the
engines; `--ui` with the stand-in through the server's own HTTP API.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from typer.testing import CliRunner

from aris.demo.answers import IMAGE_STANDIN, STANDIN_NOTICE, TEXT_STANDIN
from aris.demo.studies import HBA1C, bundled
from aris.notice import NOTICE

PNGS = {
    "chest-xray.png": (964, 1024),
    "chest-xray-square.png": (1024, 1024),
    "ct-contact-sheet.png": None,
    "slide-tiles.png": None,
    "lab-report-page1.png": (1268, 1792),
    "lab-report-page2.png": (1268, 1792),
}


def _flat(text: str) -> str:
    return " ".join(text.split())


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "ARIS_HOME": str(home), "COLUMNS": "100"}  # the stand-ins are already built there
    env.pop("ARIS_CONFIG", None)
    return env


def _aris() -> str:
    return shutil.which("aris", path=str(Path(sys.executable).parent)) or "aris"


@pytest.fixture(scope="module")
def demo_run(
    tiny_vlm: Path, gguf_270m: Path, test_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    out = tmp_path_factory.mktemp("demo") / "aris-demo"
    proc = subprocess.run(
        [_aris(), "demo", "--out", str(out)],
        env=_env(test_cache),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, out


def test_demo_runs_and_fits_one_screen(demo_run: Any) -> None:
    proc, _ = demo_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(proc.stdout.splitlines()) <= 40, proc.stdout
    out = _flat(proc.stdout)
    for words in ("Chest X-ray", "CT series", "Slide region", "Lab report", "FHIR record"):
        assert words in out
    assert f"STAND-IN: {TEXT_STANDIN}" in out
    assert f"STAND-IN: {IMAGE_STANDIN}" in out
    assert _flat(STANDIN_NOTICE) in out
    assert _flat(NOTICE) in out
    # Nothing else on stderr (library warnings, native logs, progress bars): only the spinner's codes.
    assert re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", proc.stderr).strip() == ""


def test_demo_writes_every_promised_artefact(demo_run: Any) -> None:
    proc, out = demo_run
    for name, size in PNGS.items():
        with Image.open(out / name) as im:
            im.verify()
        with Image.open(out / name) as im:
            assert im.format == "PNG"
            if size is not None:
                assert im.size == size, name
        assert name in _flat(proc.stdout)
    assert "HbA1c" in (out / "fhir.txt").read_text() or "Hemoglobin A1c" in (out / "fhir.txt").read_text()
    assert "[page 1]" in (out / "lab-report.txt").read_text()
    assert len([p for p in (out / "inputs" / "ct-series").iterdir() if p.suffix == ".dcm"]) == 100


def test_the_xray_written_is_the_recipe_applied_to_the_bundled_dicom(demo_run: Any) -> None:
    _, out = demo_run
    ds = pydicom.dcmread(bundled("chest_cr.dcm"))
    # Independent: pydicom's own rescale and window, then MONOCHROME1 shown inverted on 0..32767.
    voi = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    expected = np.round((1 - np.clip(voi, 0, 32767) / 32767) * 255).astype(np.uint8)
    xray = np.asarray(Image.open(out / "chest-xray.png"))
    assert np.array_equal(xray[..., 0], expected)
    square = np.asarray(Image.open(out / "chest-xray-square.png"))
    left = (1024 - 964) // 2
    assert np.array_equal(square[:, left : left + 964], xray)
    assert not square[:, :left].any()


def test_studies_json_records_what_each_study_became(demo_run: Any) -> None:
    _, out = demo_run
    studies = {s["key"]: s for s in json.loads((out / "studies.json").read_text())["studies"]}
    assert list(studies) == ["chest-xray", "ct", "slide", "lab-report", "fhir"]
    ct = studies["ct"]
    assert ct["images"] == 85
    assert ct["labels"][0] == "SLICE 1"
    assert ct["details"]["n_slices"] == 100
    assert ct["tokens"]["image_tokens"] == 85 * 256
    assert ct["artefacts"] == ["ct-contact-sheet.png"]
    assert studies["chest-xray"]["details"]["window"]["inverted"] is True
    assert studies["slide"]["images"] == len(studies["slide"]["details"]["tiles"])
    assert studies["lab-report"]["images"] == 2
    assert studies["fhir"]["images"] == 0
    assert studies["fhir"]["tokens"]["total"] > 0


def test_answers_json_holds_two_real_generations(demo_run: Any) -> None:
    _, out = demo_run
    data = json.loads((out / "answers.json").read_text())
    assert data["standin"] is True
    text, image = data["answers"]
    assert (text["study"], text["task"], text["model"]) == ("fhir", "trends", TEXT_STANDIN)
    assert (image["study"], image["task"], image["model"]) == ("chest-xray", "cxr-report", IMAGE_STANDIN)
    assert text["result"]["engine"] == "llamacpp"
    assert image["result"]["engine"] == "transformers"
    for a in (text, image):
        assert a["result"]["notice"] == NOTICE
        assert a["result"]["demo"] is True
        assert 0 < a["result"]["usage"]["completion_tokens"] <= 32 * a["result"]["usage"]["calls"]
    assert image["result"]["usage"]["images"] == 1
    # The numbers are Aris's, computed from the record: the same values read straight from the bundle.
    bundle = json.loads(bundled("synthetic_patient_bundle_r4.json").read_text())
    hba1c = sorted(
        (r["effectiveDateTime"], r["valueQuantity"]["value"])
        for e in bundle["entry"]
        if (r := e["resource"])["resourceType"] == "Observation"
        and any(c["code"] == HBA1C for c in r["code"]["coding"])
    )
    series = text["result"]["parsed"]["series"]
    assert [v["value"] for v in series[0]["values"]] == [v for _, v in hba1c]


def test_demo_with_a_model_answers_every_study(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from aris.cli import app  # the application with every command registered
    from aris.engines.fake import FakeEngine

    engine = FakeEngine(model_id="scripted-medgemma")
    engine.enqueue(
        "FINDINGS: Clear lungs.\nIMPRESSION: No acute disease.",  # cxr-report
        "No abnormality is seen.",  # ct
        "H&E stained tissue.",  # wsi
        "[]",  # lab-extract, page 1
        "[]",  # lab-extract, page 2
        "HbA1c rose, then fell.",  # trends
    )
    monkeypatch.setattr("aris.engines.load_engine", lambda settings: engine)
    result = CliRunner().invoke(app, ["demo", "--engine", "fake", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "STAND-IN" not in result.output
    answers = json.loads((tmp_path / "out" / "answers.json").read_text())
    assert answers["standin"] is False
    assert [a["task"] for a in answers["answers"]] == ["cxr-report", "ct", "wsi", "lab-extract", "trends"]
    assert all(a["result"]["errors"] == [] for a in answers["answers"])
    assert all(a["model"] == "scripted-medgemma" for a in answers["answers"])
    assert len(engine.prompts) == 6
    assert "SLICE 85" in engine.prompts[1]
    assert "Lab report page text" not in engine.prompts[3]  # a vision engine reads the page images
    assert "6.1" in engine.prompts[5]


def test_demo_with_a_missing_model_says_how_to_get_it(test_cache: Path, tmp_path: Path) -> None:
    env = {**_env(test_cache), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "aris",
            "demo",
            "--model",
            "google/medgemma-1.5-4b-it",
            "--out",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "aris pull google/medgemma-1.5-4b-it" in _flat(proc.stderr + proc.stdout)


CHROMIUM = os.environ.get("ARIS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]


def _open_in_browser(link: str) -> list[str]:
    """The captions the web UI shows for a study opened by its printed link."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(link)
            page.wait_for_selector("#thumbs .thumb >> nth=84", timeout=60_000)
            return page.locator("#thumbs .thumb span").all_inner_texts()
        finally:
            browser.close()


def test_demo_ui_serves_the_studies_through_the_http_api(
    tiny_vlm: Path, test_cache: Path, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [_aris(), "demo", "--ui", "--out", str(tmp_path / "out")],
        env=_env(test_cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        links = [w for line in lines for w in line.split() if "#upload=" in w]
        assert len(links) == 5, "".join(lines)
        base = links[0].split("/ui/")[0]
        expected = {"cxr": 1, "ct": 85, "wsi": 1, "pdf": 2, "fhir": 0}
        with httpx.Client(base_url=base, timeout=60) as client:
            for link in links:
                fields = dict(p.split("=") for p in link.split("#", 1)[1].split("&"))
                prepared = client.post(
                    f"/v1/uploads/{fields['upload']}/prepare", json={"kind": fields["kind"]}
                )
                assert len(prepared.json()["images"]) == expected[fields["kind"]]
                if expected[fields["kind"]]:
                    png = client.get(
                        f"/v1/uploads/{fields['upload']}/images/0001.png", params={"kind": fields["kind"]}
                    )
                    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
            jobs = client.get("/v1/jobs").json()
            assert sorted(j["task"] for j in jobs) == sorted(
                ["cxr-report", "ct", "wsi", "lab-extract", "trends"]
            )
            cxr = next(j for j in jobs if j["task"] == "cxr-report")
            deadline = time.monotonic() + 120
            while (job := client.get(f"/v1/jobs/{cxr['id']}").json())["status"] not in ("done", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert job["status"] == "done", job
            assert job["result"]["notice"] == NOTICE
            assert job["result"]["usage"]["completion_tokens"] <= 32 * job["result"]["usage"]["calls"]
        ct_link = next(link for link in links if link.endswith("kind=ct"))
        assert _open_in_browser(ct_link) == [f"SLICE {i}" for i in range(1, 86)]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
