"""The web UI's drawing of results, against a real server whose generator replays scripted replies.

What is checked here sits above the generator: where the viewer draws a box it was given, how an
extracted lab row is found on its page, how two answers are compared, how a slide's tiles open. A
scripted reply makes the geometry known in advance (the tiny random model never writes a valid box); the
same UI with the real generator is tested in test_ui.py. Dictation and image search run on the real
small models (tiny MedASR, tiny SigLIP over a small indexed archive).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aris.server import create_app
from aris.server.settings import ServerSettings

from .conftest import live_server
from .uikit import (
    FAKE_MICROPHONE,
    canvas_size,
    chromium,
    fit,
    open_study,
    open_ui,
    pixels,
    run_task,
    shot,
    wait_shown,
)

KEY = "k"


def _archive(settings: Any, folder: Path, samples: Any) -> None:
    """A small image archive indexed for search with the tiny SigLIP (as ``aris index add`` would)."""
    from aris.embed.index import ImageIndex
    from aris.embed.local import TransformersEmbedder
    from aris.embed.store import EmbeddingStore
    from aris.inputs import read

    folder.mkdir()
    for name, kind in (
        ("dicom/cxr/highdicom_dx_image.dcm", "cxr"),
        ("dicom/ct/CT_small.dcm", "ct"),
        ("dicom/mr/MR_small.dcm", "mri"),
    ):
        read(samples(name), kind=kind).images[0].save(
            folder / f"{Path(name).stem}.png"
        )  # as the model sees it
    embedder = TransformersEmbedder(settings.embed_model, device="cpu")
    store, index = EmbeddingStore.open(settings), ImageIndex.open(settings)
    try:
        index.add([folder], embedder, store)
    finally:
        index.close()
        store.close()
        embedder.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, test_cache: Path, samples) -> Iterator[tuple[str, Any]]:  # type: ignore[no-untyped-def]
    from aris.config import ArisSettings
    from aris.embed.tiny import build_tiny_siglip
    from aris.engines.fake import FakeEngine
    from tests.speech.conftest import build_tiny_asr

    engine = FakeEngine(model_id="/models/medgemma-1.5-4b-it")  # a local folder: named, never shown as a path
    home = tmp_path_factory.mktemp("home")
    settings = ArisSettings(
        home=home,
        asr_model=str(build_tiny_asr(test_cache)),
        embed_model=str(build_tiny_siglip(test_cache)),
        device="cpu",
    )
    _archive(settings, home.parent / "archive", samples)
    app = create_app(ServerSettings(api_key=KEY), engine=engine, aris_settings=settings)
    with live_server(app) as url:
        yield url, engine


@pytest.fixture(scope="module")
def page(server: tuple[str, Any]) -> Iterator[Any]:
    with chromium(FAKE_MICROPHONE) as b:
        p = open_ui(b, server[0], KEY)
        yield p
        assert not p.js_errors, p.js_errors


def _near(page: Any, x: float, y: float, want: tuple[int, int, int], tol: int = 40) -> bool:
    """Whether a pixel within 1 px of (x, y) has about this colour."""
    pts = [(x + dx, y + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
    return any(all(abs(p[i] - want[i]) <= tol for i in range(3)) for p in pixels(page, pts))


RED = (255, 59, 48)
YELLOW = (255, 204, 0)


def test_boxes_are_drawn_on_the_original_pixels_with_and_without_the_padding(
    page: Any, server, samples
) -> None:  # type: ignore[no-untyped-def]
    _, engine = server
    open_study(page, "cxr", [samples("dicom/cxr/highdicom_dx_image.dcm")])
    wait_shown(page, "image:0:values")
    engine.enqueue('```json\n[{"box_2d": [200, 100, 700, 600], "label": "heart"}]\n```')
    assert run_task(page, "cxr-localize") == "done"
    wait_shown(page, "image:0:values")
    w, h, side, top = 211, 169, 211, 21  # the film, and the square the model saw (21 px above and below)
    x0, y0, x1, y1 = 100 / 1000 * side, 200 / 1000 * side - top, 600 / 1000 * side, 700 / 1000 * side - top
    assert "(21, 21) – (127, 127) px · model [200, 100, 700, 600]" in page.inner_text("#boxes")
    cw, ch = canvas_size(page)
    s, ox, oy = fit(cw, ch, 0, 0, w, h)
    left, mid = ox + x0 * s, oy + (y0 + y1) / 2 * s
    assert _near(page, left, mid, RED)
    assert _near(page, ox + x1 * s, mid, RED)
    assert not _near(page, (ox + left) / 2 + (x1 - x0) * s / 2, mid, RED)  # inside: the film, not the box
    shot(page, "ui-xray-boxes.png")

    page.check("#show-padding")  # fit now takes the whole square; the box stays on the same film pixels
    s, ox, oy = fit(cw, ch, 0, -top, side, side)
    assert _near(page, ox + x0 * s, oy + (y0 + y1) / 2 * s, RED)
    assert _near(page, ox + (x0 + x1) / 2 * s, oy + y0 * s, RED)
    shot(page, "ui-xray-boxes-padding.png")

    page.uncheck("#boxes input[data-box='0']")
    assert not _near(page, ox + x0 * s, oy + (y0 + y1) / 2 * s, RED)
    page.check("#boxes input[data-box='0']")
    page.uncheck("#show-padding")

    structured = page.inner_text("#structured")  # 100/1000*211 is 21.099999999999998 in floating point
    assert "x0 21.1 · y0 21.2 · x1 126.6 · y1 126.7" in structured
    assert "0999" not in structured
    page.select_option("#display", "overlay")  # the overlay the task saved, beside the viewer's drawing
    wait_shown(page, "image:0:overlay")
    page.select_option("#display", "values")


def test_the_header_names_the_model_and_details_fold(page: Any, samples) -> None:  # type: ignore[no-untyped-def]
    assert page.inner_text("#model") == "medgemma-1.5-4b-it"
    open_study(page, "ct", sorted(samples("dicom/ct_series/head_ct2_4slices").iterdir()))
    assert page.is_visible("#warnings li")  # warnings stay in view
    assert not page.is_visible("#details")  # the details fold away
    page.click("#details-box summary")
    details = page.inner_text("#details")
    for fact in (
        "modality",
        "CT",
        "photometric",
        "MONOCHROME2",
        "rescale",
        "pixel spacing mm",
        "chosen because",
    ):
        assert fact in details


def test_dictation_streams_into_the_question_and_search_finds_the_archive(page: Any, server, samples) -> None:  # type: ignore[no-untyped-def]
    url, _ = server
    assert page.get_attribute("body", "data-capabilities") == "dictation search"
    page.fill("#question", "Findings:")
    page.click("#record")  # the fake microphone plays a tone; the tiny random MedASR transcribes it
    page.wait_for_selector("#record[aria-pressed='true']")
    page.wait_for_timeout(600)
    page.click("#record")
    page.wait_for_function(
        "/^transcri(bed|ption failed)/.test(document.querySelector('#record-state').textContent)"
    )
    assert page.inner_text("#record-state").startswith("transcribed"), page.inner_text("#record-state")
    wav = bytes(
        page.evaluate("async () => Array.from(new Uint8Array(await window.aris.lastDictation.arrayBuffer()))")
    )
    assert wav[:4] == b"RIFF"
    assert wav[8:12] == b"WAVE"
    assert len(wav) > 44 + 16000  # half a second of 16-bit samples at any usual rate
    heard = httpx.post(
        f"{url}/v1/audio/transcriptions",
        files={"file": ("a.wav", wav, "audio/wav")},
        headers={"Authorization": f"Bearer {KEY}"},
    ).json()["text"]
    assert page.input_value("#question") == f"Findings: {heard}"

    # Image search over the indexed archive: by text, and by the study open (its nearest is its own image).
    page.fill("#search-text", "cardiomegaly")
    page.click("#search-form button[type=submit]")
    page.wait_for_selector("#search-results li .score")
    shown = page.locator("#search-results li").all_inner_texts()
    assert len(shown) == 3
    assert all(len(line.split()[0].lstrip("-0.")) <= 3 for line in shown)  # 3 significant digits
    assert {line.split()[1] for line in shown} == {
        "archive/highdicom_dx_image.png",
        "archive/CT_small.png",
        "archive/MR_small.png",
    }
    open_study(page, "cxr", [samples("dicom/cxr/highdicom_dx_image.dcm")])
    page.click("#search-upload")
    page.wait_for_selector("#search-results li:has-text('searching')", state="detached")
    top = page.locator("#search-results li").first.inner_text().split()
    assert top[1] == "archive/highdicom_dx_image.png"
    assert float(top[0]) == pytest.approx(1.0, abs=1e-3)  # the same pixels the archive holds


def test_lab_rows_out_of_range_are_marked_and_found_on_their_page(page: Any, server, samples) -> None:  # type: ignore[no-untyped-def]
    _, engine = server
    truth = {t["name"]: t for t in json.loads(samples("lab/synthetic_lab_report.truth.json").read_text())}
    page1 = [truth[n] for n in ("Hemoglobin", "Platelet Count", "Sodium")]
    page2 = [truth[n] for n in ("HbA1c", "TSH")]
    open_study(page, "pdf", [samples("lab/synthetic_lab_report.pdf")])
    wait_shown(page, "pdf:0:model")
    engine.enqueue(json.dumps(page1), json.dumps(page2))
    assert run_task(page, "lab-extract") == "done"
    rows = page.locator("#lab-table tbody tr")
    assert rows.count() == 5
    flags = {
        rows.nth(i).locator("button").inner_text(): rows.nth(i).locator("td").first.inner_text()
        for i in range(5)
    }
    assert flags == {"Hemoglobin": "▼ L", "Platelet Count": "", "Sodium": "", "HbA1c": "▲ H", "TSH": ""}

    page.click("#lab-table button:has-text('HbA1c')")
    wait_shown(page, "pdf:1:model")
    assert "selected" in (rows.nth(3).get_attribute("class") or "")
    view = page.evaluate("window.aris.manifest.view")
    line = next(ln for ln in view["pages"][1]["lines"] if "HbA1c" in ln["text"])
    pw, ph = view["pages"][1]["size_px"]
    cw, ch = canvas_size(page)
    s, ox, oy = fit(cw, ch, 0, 0, pw, ph)
    bx0, by0, bx1, by1 = line["box"]
    assert _near(page, ox + (bx0 - 3) * s, oy + (by0 + by1) / 2 * s, YELLOW)
    assert _near(page, ox + (bx0 + bx1) / 2 * s, oy + (by1 + 3) * s, YELLOW)
    shot(page, "ui-pdf-lab.png")


def test_two_runs_side_by_side_mark_their_differences(page: Any, server, samples) -> None:  # type: ignore[no-untyped-def]
    _, engine = server
    open_study(page, "ct", sorted(samples("dicom/ct_series/head_ct2_4slices").iterdir()))
    engine.enqueue("No hemorrhage. Small infarct in the left frontal lobe.")
    assert run_task(page, "ct", "Findings?") == "done"
    # The server removed the upload after its job; the UI sends the same files again for the next run.
    engine.enqueue("No hemorrhage. Large infarct in the left frontal lobe.")
    assert run_task(page, "ct", "Any findings?") == "done"  # the same question again would reuse the result
    for i in (0, 1):
        page.check(f"#jobs li >> nth={i} >> .job-pick")
    page.click("#compare-go")
    page.wait_for_selector("#compare:not([hidden])")
    assert page.locator("#compare-cols mark.ins").inner_text().strip() == "Small"
    assert page.locator("#compare-cols mark.del").inner_text().strip() == "Large"
    differs = page.locator("#compare-table tr.differs th").all_inner_texts()
    assert differs == ["answer"]
    assert "1 of" in page.inner_text("#compare-table")
    page.wait_for_function(
        "[...document.querySelectorAll('.cmp-images img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    shot(page, "ui-compare.png")
    page.click("#compare-close")
    assert page.is_visible("#viewport")


def test_slide_tiles_outlined_and_opened_at_full_size(page: Any, samples) -> None:  # type: ignore[no-untyped-def]
    open_study(page, "wsi", [samples("wsi/cmu_small_region.svs")])
    wait_shown(page, "slide:0:slide")
    view = page.evaluate("window.aris.manifest.view")
    k = view["thumb"]["level0_per_pixel"]
    tile = view["tiles"][0]
    cw, ch = canvas_size(page)
    s, ox, oy = fit(cw, ch, 0, 0, view["thumb"]["width"], view["thumb"]["height"])
    tx, ty, ts = tile["x"] / k, tile["y"] / k, tile["size"] / k
    assert _near(page, ox + tx * s + 1, oy + (ty + ts / 2) * s, (79, 179, 217), tol=30)
    page.check("#show-mask")
    shot(page, "ui-slide.png")
    page.mouse.click(
        page.locator("#viewport").bounding_box()["x"] + ox + (tx + ts / 2) * s,
        page.locator("#viewport").bounding_box()["y"] + oy + (ty + ts / 2) * s,
    )
    wait_shown(page, "slide:0:slide:tile0")
    assert "Tile 1 /" in page.inner_text("#corner-tl")
    shot(page, "ui-slide-tile.png")
    page.click("#back-to-slide")
    wait_shown(page, "slide:0:slide")


def test_mri_volume_scrolls_all_slices_and_marks_the_models(page: Any, samples) -> None:  # type: ignore[no-untyped-def]
    open_study(page, "mri", [samples("nifti/mricron_ch2_colin27_t1.nii.gz")])
    view = page.evaluate("window.aris.manifest.view")
    assert view["n"] == 181
    assert len(view["sampled"]) == 85
    assert page.locator("#thumbs .thumb").count() == 85
    mid = view["sampled"][42]
    wait_shown(page, f"series:{mid}:values")
    page.fill("#slice", str(mid + 2))  # one the model did not see
    page.dispatch_event("#slice", "input")
    wait_shown(page, f"series:{mid + 1}:values")
    assert "not shown to the model" in page.inner_text("#slice-info")
    page.select_option("#display", "model")
    wait_shown(page, f"series:{mid + 1}:model")
    assert page.is_visible("#viewer-banner")
    page.select_option("#display", "values")
    shot(page, "ui-mri.png")


def test_numbers_and_printed_ranges_as_the_page_reads_them(page: Any) -> None:
    got = page.evaluate(
        """async () => {
          const f = await import('/ui/format.js');
          return {
            fmt: [0.10000000000000142, 21.099999999999998, 1234.5678, -0.000123456, 7, 3.0].map((v) => f.fmt(v)),
            range: [['11.2', '12.0 - 15.5'], ['16', '12.0 - 15.5'], ['13', '12.0 - 15.5'], ['220', '< 200'],
                    ['200', '< 200'], ['200', '<= 200'], ['35', '>=40'], ['40', '> 40'], ['6,9', '4,0 - 5,6'],
                    ['negative', 'negative'], ['5', ''], ['-3', '-5 - 5']].map(([r, g]) => f.outOfRange(r, g)),
            diff: f.wordDiff('a b c', 'a x c').map((d) => `${d.op}:${d.text}`),
          };
        }"""
    )
    assert got["fmt"] == ["0.1", "21.1", "1234.57", "-0.0001235", "7", "3"]
    assert got["range"] == ["L", "H", None, "H", "H", None, "L", "L", "H", None, None, None]
    assert got["diff"] == ["same:a ", "del:b", "ins:x", "same: c"]
