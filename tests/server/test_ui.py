"""The web UI in a real browser (Debian's chromium driven by Playwright) against a real server
with a real engine: upload the sample CT series, see the slice grid, get a streamed result."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aris.server import create_app
from aris.server.settings import ServerSettings

from .conftest import live_server

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = os.environ.get("ARIS_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def ui_server(vlm_engine: Any) -> Iterator[str]:
    with live_server(
        create_app(ServerSettings(api_key="ui-key", model_name="tiny-vlm"), engine=vlm_engine)
    ) as url:
        yield url


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def test_upload_ct_see_slices_and_stream_a_result(ui_server: str, browser, samples) -> None:  # type: ignore[no-untyped-def]
    series = sorted(samples("dicom/ct_series/head_ct2_4slices").iterdir())
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{ui_server}/ui/")
    page.fill("#apikey", "ui-key")
    page.dispatch_event("#apikey", "change")
    page.wait_for_selector("#task option[value='ct']", state="attached")
    assert "tiny-vlm" in page.inner_text("#model")
    assert "not for diagnosis" in page.inner_text("#notice")

    page.select_option("#kind", "ct")
    page.set_input_files("#file", [str(p) for p in series])
    page.wait_for_selector("#grid figure >> nth=3")
    captions = page.locator("#grid figcaption").all_inner_texts()
    assert captions == ["SLICE 1", "SLICE 2", "SLICE 3", "SLICE 4"]
    page.wait_for_function(
        "[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)"
    )

    page.select_option("#task", "ct")
    page.fill("#question", "Is there an intracranial hemorrhage?")
    page.fill("#options", '{"max_new_tokens": 12}')
    page.click("#go")
    page.wait_for_function(
        "document.querySelector('#job-state').textContent === 'done' || "
        "document.querySelector('#job-state').textContent === 'failed'",
        timeout=120_000,
    )
    assert page.inner_text("#job-state") == "done", page.inner_text("#status")
    assert page.inner_text("#answer").strip()
    assert page.locator("#output .notice").inner_text().startswith("Preliminary")
    page.wait_for_selector("#jobs li")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-ct-result.png"), full_page=True)
    assert (ARTIFACTS / "ui-ct-result.png").stat().st_size > 10_000
    page.close()


def test_ui_shows_the_padded_xray_and_needs_the_key(ui_server: str, browser, samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page()
    page.goto(f"{ui_server}/ui/")
    page.wait_for_selector("#status:has-text('cannot reach the server')")  # no key yet: the API refuses
    page.fill("#apikey", "ui-key")
    page.dispatch_event("#apikey", "change")
    page.wait_for_selector("#task option", state="attached")
    cxr = tmp_path / "chest.dcm"
    shutil.copy(samples("dicom/cxr/highdicom_dx_image.dcm"), cxr)
    page.select_option("#kind", "cxr")
    page.set_input_files("#file", str(cxr))
    page.wait_for_selector("#grid figure")
    assert page.locator("#grid figure").count() == 1
    page.close()
