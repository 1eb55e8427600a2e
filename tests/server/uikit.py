"""Driving the web UI in Debian's chromium (Playwright): launch flags that work here, and small helpers
that read what the viewer's canvas really shows."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

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
VIEWPORT = {"width": 1280, "height": 800}


# A fake microphone (a tone) that needs no permission prompt, for dictation.
FAKE_MICROPHONE = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


@contextmanager
def chromium(extra_args: list[str] | None = None) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS + (extra_args or []))
        try:
            yield b
        finally:
            b.close()


def open_ui(browser: Any, url: str, key: str) -> Any:
    """A page of the UI at 1280x800 with the key entered and the task list loaded."""
    page = browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.js_errors = errors
    page.goto(f"{url}/ui/")
    page.fill("#apikey", key)
    page.dispatch_event("#apikey", "change")
    page.wait_for_selector("#task option", state="attached")
    return page


def open_study(page: Any, kind: str, files: list[Path]) -> None:
    # The kind is set without its change event: that event re-reads the study already open as this kind.
    page.eval_on_selector("#kind", "(s, k) => { s.value = k; }", kind)
    page.evaluate("document.querySelector('#status').textContent = ''")
    page.set_input_files("#file", [str(f) for f in files])
    page.wait_for_function(
        "document.querySelector('#status').textContent.startsWith('ready') || "
        "document.querySelector('#status').classList.contains('error')",
        timeout=60_000,
    )
    assert page.inner_text("#status").startswith("ready"), page.inner_text("#status")


def wait_shown(page: Any, shown: str) -> None:
    """Until the viewer shows exactly this ("series:1:values", "image:0:model", ...)."""
    page.wait_for_selector(f'#viewport[data-shown="{shown}"]', timeout=30_000)


def canvas_size(page: Any) -> tuple[float, float]:
    box = page.eval_on_selector("#viewport", "c => [c.clientWidth, c.clientHeight]")
    return float(box[0]), float(box[1])


def pixels(page: Any, points: list[tuple[float, float]]) -> list[list[int]]:
    """RGBA of the canvas at CSS-pixel points."""
    return page.eval_on_selector(  # type: ignore[no-any-return]
        "#viewport",
        """(c, pts) => { const ctx = c.getContext('2d'); const d = window.devicePixelRatio || 1;
            return pts.map(([x, y]) => Array.from(ctx.getImageData(Math.floor(x * d), Math.floor(y * d), 1, 1).data)); }""",
        [list(p) for p in points],
    )


def run_task(page: Any, task: str, question: str = "", options: str = "", timeout_ms: int = 120_000) -> str:
    """Run the task on the open study; returns the job state shown when it ends."""
    page.select_option("#task", task)
    page.fill("#question", question)
    page.fill("#options", options)
    page.click("#go")
    page.wait_for_function("!document.querySelector('#go').disabled", timeout=timeout_ms)
    return str(page.inner_text("#job-state"))


def fit(cw: float, ch: float, x: float, y: float, w: float, h: float) -> tuple[float, float, float]:
    """Where "fit" puts an extent (x, y, w, h) of image pixels: scale and canvas offsets of image (0, 0)."""
    s = min(cw / w, ch / h)
    return s, (cw - w * s) / 2 - x * s, (ch - h * s) / 2 - y * s


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path
