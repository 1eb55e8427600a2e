"""The web UI in a real browser (Debian's chromium driven by Playwright) against a real server with a real
engine (the tiny random Gemma 3 VLM): the viewer shows the study's original values, scrolls, windows and
switches to what the model sees; tasks stream; jobs reopen with their own images; every control is
reachable from the keyboard. Screenshots of each view go to test-artifacts/.

The tests share one server and one browser and run in order: later ones reopen earlier jobs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from aris.server import create_app
from aris.server.settings import ServerSettings

from .conftest import live_server
from .uikit import canvas_size, chromium, open_study, open_ui, pixels, run_task, shot, wait_shown

KEY = "ui-key"
H = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def ui_server(vlm_engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from aris.config import ArisSettings

    home = tmp_path_factory.mktemp("home")
    app = create_app(
        ServerSettings(api_key=KEY, model_name="tiny-vlm"),
        engine=vlm_engine,
        aris_settings=ArisSettings(home=home),
    )
    with live_server(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def page(browser: Any, ui_server: str) -> Iterator[Any]:
    p = open_ui(browser, ui_server, KEY)
    yield p
    assert not p.js_errors, p.js_errors
    p.close()


@pytest.fixture(scope="module")
def jobs() -> dict[str, str]:
    return {}


def _slice(url: str, base: str, i: int, rows: int, cols: int, dtype: str) -> np.ndarray:
    raw = httpx.get(f"{url}{base}/slice-{i + 1:05d}.bin", headers=H).content
    return np.frombuffer(raw, "<i2" if dtype == "int16" else "<f4").reshape(rows, cols).astype(np.float64)


def _view(page: Any) -> dict[str, Any]:
    return page.evaluate("window.aris.manifest.view")  # type: ignore[no-any-return]


def _one_to_one_points(page: Any, w: int, h: int) -> list[tuple[float, float, int, int]]:
    """Canvas points near the centre and the image pixel each shows at 1:1 zoom (centre kept)."""
    cw, ch = canvas_size(page)
    out = []
    for dx, dy in ((0, 0), (-40, -40), (45, 30), (-70, 55), (90, -60)):
        px, py = cw / 2 + dx, ch / 2 + dy
        out.append((px, py, int(w / 2 + (int(px) + 0.5 - cw / 2)), int(h / 2 + (int(py) + 0.5 - ch / 2))))
    return out


def _grey_matches(got: list[int], expected: np.ndarray, x: int, y: int) -> bool:
    """The shown grey is the expected value of that image pixel or a neighbour (half-pixel placement), +-1."""
    near = expected[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].ravel()
    return got[0] == got[1] == got[2] and bool(np.any(np.abs(near - got[0]) <= 1))


def _windowed(values: np.ndarray, center: float, width: float) -> np.ndarray:
    return np.clip(np.floor((values - (center - width / 2)) / width * 255 + 0.5), 0, 255)


def test_without_a_key_the_error_shows_and_a_correct_key_clears_it(browser: Any, ui_server: str) -> None:
    p = browser.new_page()
    p.goto(f"{ui_server}/ui/")
    p.wait_for_selector("#status.error:has-text('missing or invalid API key')")
    assert not p.is_visible("#run")  # nothing to run before a study is open
    p.fill("#apikey", KEY)
    p.dispatch_event("#apikey", "change")
    p.wait_for_selector("#task option[value='ct']", state="attached")
    p.wait_for_function("document.querySelector('#status').textContent === ''")
    assert "error" not in (p.get_attribute("#status", "class") or "")
    assert p.inner_text("#model") == "tiny-vlm"
    # The record button and the search panel show exactly when the server has their routes.
    paths = httpx.get(f"{ui_server}/openapi.json").json()["paths"]
    has = [
        name
        for name, path in (("dictation", "/v1/audio/transcriptions"), ("search", "/v1/index/search"))
        if path in paths
    ]
    p.wait_for_selector(f"body[data-capabilities='{' '.join(has) or 'none'}']")
    assert p.eval_on_selector("#dictate", "e => !e.hidden") == ("dictation" in has)  # in the Run form
    assert p.is_visible("#search") == ("search" in has)
    assert "not for diagnosis" in p.inner_text("#notice")
    p.close()


def test_ct_scrolls_windows_on_hu_and_shows_what_the_model_sees(page: Any, ui_server: str, samples) -> None:  # type: ignore[no-untyped-def]
    open_study(page, "ct", [samples("dicom/ct/eCT_Supplemental.dcm")])
    wait_shown(page, "series:0:values")
    view = _view(page)
    rows, cols = view["rows"], view["columns"]
    assert (view["n"], rows, cols) == (2, 512, 512)
    hu = [_slice(ui_server, view["base_url"], i, rows, cols, view["dtypes"][i]) for i in range(2)]
    assert page.locator("#thumbs .thumb").count() == 2
    assert page.get_attribute("#thumbs .thumb >> nth=0", "aria-current") == "true"
    assert page.input_value("#wl-center") == "40"  # the recipe's soft-tissue window (G) to start
    assert page.input_value("#wl-width") == "350"
    shot(page, "ui-ct.png")

    page.click("#zoom-1")
    points = _one_to_one_points(page, cols, rows)
    first = pixels(page, [(x, y) for x, y, _, _ in points])
    expected = _windowed(hu[0], 40, 350)
    for got, (_, _, x, y) in zip(first, points, strict=True):
        assert _grey_matches(got, expected, x, y), (got, x, y)

    # The wheel moves to the next slice: other pixels, those of slice 2's HU.
    cw, ch = canvas_size(page)
    page.mouse.move(cw / 2 + 250, ch / 2 + 100)
    page.mouse.wheel(0, 120)
    wait_shown(page, "series:1:values")
    assert page.get_attribute("#thumbs .thumb >> nth=1", "aria-current") == "true"
    second = pixels(page, [(x, y) for x, y, _, _ in points])
    assert second != first
    expected = _windowed(hu[1], 40, 350)
    for got, (_, _, x, y) in zip(second, points, strict=True):
        assert _grey_matches(got, expected, x, y), (got, x, y)
    assert "Slice 2 / 2" in page.inner_text("#slice-info")

    # A W/L drag changes the window, and the pixels follow the new window on the same HU.
    box = page.locator("#viewport").bounding_box()
    page.mouse.move(box["x"] + cw / 2, box["y"] + ch / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + cw / 2 + 150, box["y"] + ch / 2 + 80, steps=5)
    page.mouse.up()
    center, width = float(page.input_value("#wl-center")), float(page.input_value("#wl-width"))
    assert (center, width) != (40.0, 350.0)
    dragged = pixels(page, [(x, y) for x, y, _, _ in points])
    assert dragged != second
    expected = _windowed(hu[1], center, width)
    for got, (_, _, x, y) in zip(dragged, points, strict=True):
        assert _grey_matches(got, expected, x, y), (got, x, y, center, width)

    # The model's red channel alone: the recipe's wide window [-1024, 1024] of the same HU.
    page.select_option("#display", "r")
    wait_shown(page, "series:1:r")
    from aris.inputs.volume import window_ct

    red = window_ct(hu[1]).astype(np.float64)[..., 0]
    for got, (_, _, x, y) in zip(pixels(page, [(x, y) for x, y, _, _ in points]), points, strict=True):
        assert _grey_matches(got, red, x, y), (got, x, y)
    page.select_option("#display", "model")
    wait_shown(page, "series:1:model")
    colour = pixels(page, [(x, y) for x, y, _, _ in points])
    assert any(len({c[0], c[1], c[2]}) > 1 for c in colour)  # the RGB composite is not grey
    shot(page, "ui-ct-model-rgb.png")
    page.select_option("#display", "values")
    page.click("#zoom-fit")


def test_a_task_streams_and_its_job_keeps_its_images(page: Any, jobs: dict[str, str]) -> None:
    state = run_task(page, "ct", "Is there an intracranial hemorrhage?", '{"max_new_tokens": 6}')
    assert state in ("done", "failed validation"), page.inner_text("#status")
    assert page.inner_text("#answer").strip()
    assert page.locator("#output .notice").inner_text().startswith("Preliminary")
    first = page.locator("#jobs li").first
    jobs["ct"] = first.get_attribute("data-job")
    urls = page.eval_on_selector_all("#thumbs .thumb", "bs => bs.map(b => b.dataset.url)")
    assert urls == [f"/v1/jobs/{jobs['ct']}/images/0001.png", f"/v1/jobs/{jobs['ct']}/images/0002.png"]
    shot(page, "ui-ct-job.png")


def test_every_control_is_reached_and_named_from_the_keyboard(page: Any) -> None:
    controls = page.evaluate(
        """() => {
          const sel = 'a[href], button, input, select, textarea, summary, [tabindex]';
          const shown = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
          const all = [...document.querySelectorAll(sel)].filter((e) => !e.disabled && e.tabIndex >= 0 && shown(e));
          return all.map((e, i) => {
            e.dataset.kbd = e.type === 'radio' ? `radio:${e.name}` : `c${i}`;
            const name = e.getAttribute('aria-label') || (e.labels && e.labels.length ? e.labels[0].textContent : '') ||
              (['BUTTON', 'SUMMARY', 'A'].includes(e.tagName) ? e.textContent : '');
            return [e.dataset.kbd, e.tagName + (e.id ? '#' + e.id : ''), name.trim()];
          });
        }"""
    )
    unnamed = [c for c in controls if not c[2]]
    assert not unnamed, unnamed
    wanted = {c[0] for c in controls}
    assert len(wanted) >= 20
    page.focus("body")
    reached: set[str] = set()
    for _ in range(len(controls) * 2 + 10):
        page.keyboard.press("Tab")
        k = page.evaluate("document.activeElement && document.activeElement.dataset.kbd")
        if k:
            reached.add(k)
        if reached >= wanted:
            break
    missing = [c for c in controls if c[0] not in reached]
    assert not missing, missing
    # The viewer itself answers keys: arrows change the slice, + zooms.
    page.focus("#viewport")
    page.keyboard.press("Home")
    wait_shown(page, "series:0:values")
    page.keyboard.press("ArrowDown")
    wait_shown(page, "series:1:values")
    zoom = page.inner_text("#corner-br")
    page.keyboard.press("+")
    assert page.inner_text("#corner-br") != zoom


def test_xray_padding_and_a_reply_that_fails_validation(page: Any, samples, jobs: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    open_study(page, "cxr", [samples("dicom/cxr/highdicom_dx_image.dcm")])
    wait_shown(page, "image:0:values")
    view = _view(page)
    assert view["inverted"] is True  # MONOCHROME1: shown with bone white, as the model sees it
    page.check("#show-padding")
    shot(page, "ui-xray-padding.png")
    state = run_task(page, "cxr-localize", "", '{"max_new_tokens": 8}')
    assert state == "failed validation", page.inner_text("#structured")
    assert "did not validate" in page.inner_text("#structured")
    jobs["xray"] = page.locator("#jobs li").first.get_attribute("data-job")
    assert page.locator("#jobs li").first.locator(".badge").inner_text() == "failed validation"


def test_reopening_an_older_job_shows_its_own_images(page: Any, ui_server: str, jobs: dict[str, str]) -> None:
    page.click(f'#jobs li[data-job="{jobs["ct"]}"] .job-open')
    wait_shown(page, "series:0:values")
    urls = page.eval_on_selector_all("#thumbs .thumb", "bs => bs.map(b => b.dataset.url)")
    assert urls == [f"/v1/jobs/{jobs['ct']}/images/0001.png", f"/v1/jobs/{jobs['ct']}/images/0002.png"]
    page.wait_for_function(
        "[...document.querySelectorAll('#thumbs img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    view = _view(page)
    assert view["base_url"].startswith(f"/v1/viewer/jobs/{jobs['ct']}/")
    page.click("#zoom-1")
    points = _one_to_one_points(page, 512, 512)
    expected = _windowed(_slice(ui_server, view["base_url"], 0, 512, 512, view["dtypes"][0]), 40, 350)
    for got, (_, _, x, y) in zip(pixels(page, [(x, y) for x, y, _, _ in points]), points, strict=True):
        assert _grey_matches(got, expected, x, y), (got, x, y)
    assert page.inner_text("#answer").strip()
    shot(page, "ui-ct-reopened.png")


def test_trends_charts_one_series_per_analyte(page: Any, ui_server: str, samples) -> None:  # type: ignore[no-untyped-def]
    path = samples("fhir/synthetic_patient_bundle_r4.json")
    open_study(page, "fhir", [path])
    page.wait_for_selector("#charts figure")
    analytes = set()
    for e in json.loads(path.read_text())["entry"]:
        r = e["resource"]
        if r["resourceType"] == "Observation" and r.get("effectiveDateTime"):
            for obj in [r, *r.get("component", [])]:
                q = obj.get("valueQuantity")
                if q and isinstance(q.get("value"), int | float):
                    code = next(c["code"] for c in obj["code"]["coding"] if c["system"] == "http://loinc.org")
                    analytes.add((code, q.get("code") or q.get("unit")))

    def series() -> list[tuple[str, str]]:
        return [
            tuple(x)
            for x in page.eval_on_selector_all(
                "#charts path.series", "ps => ps.map(p => [p.dataset.analyte, p.dataset.unit])"
            )
        ]

    assert sorted(series()) == sorted(analytes)
    assert page.locator("#timeline rect.ev").count() > 0
    state = run_task(page, "trends", "", '{"max_new_tokens": 12}')
    job = page.locator("#jobs li").first.get_attribute("data-job")
    result = httpx.get(f"{ui_server}/v1/jobs/{job}", headers=H).json()["result"]
    if state == "done":  # the charts are then the job's own table
        assert "from this job's result" in page.inner_text("#charts-note")
        assert sorted(series()) == sorted((s["code"], s["unit"]) for s in result["parsed"]["series"])
    assert sorted(series()) == sorted(analytes)
    shot(page, "ui-fhir.png")
