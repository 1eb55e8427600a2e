"""Boxes: validation rules, and the map back to original pixels checked against hand computation."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from PIL import Image

from aris.engines.fake import FakeEngine
from aris.inputs.base import Padding, PreparedInput
from aris.runner import run_task
from aris.tasks import get_task
from aris.tasks.localize import model_view, normalize_box, square_padding, to_pixels
from aris.types import ImagePart, Provenance


def _prepared(img: Image.Image, padding: Padding | None = None) -> PreparedInput:
    return PreparedInput("cxr", [ImagePart(img)], Provenance("cxr", ["film.png"]), padding=padding)


def test_portrait_film_maps_back_by_hand() -> None:
    # 600 wide x 1000 high: S = 1000, pad_left = 200, pad_top = 0
    p = square_padding(600, 1000)
    assert (p.left, p.top, p.size) == (200, 0, 1000)
    box = to_pixels([100, 300, 900, 700], p)
    # x = 300/1000*1000 - 200 = 100; 700 -> 500; y = 100, 900
    assert box is not None
    assert (box.x0, box.y0, box.x1, box.y1) == (100.0, 100.0, 500.0, 900.0)


def test_landscape_film_maps_back_by_hand() -> None:
    # 1955 wide x 1841 high (the RG1 chest CR): S = 1955, pad_top = (1955-1841)//2 = 57
    p = square_padding(1955, 1841)
    assert (p.left, p.top, p.size) == (0, 57, 1955)
    box = to_pixels([250, 100, 750, 500], p)
    assert box is not None
    assert box.x0 == pytest.approx(100 / 1000 * 1955)  # 195.5
    assert box.x1 == pytest.approx(977.5)
    assert box.y0 == pytest.approx(250 / 1000 * 1955 - 57)  # 431.75
    assert box.y1 == pytest.approx(750 / 1000 * 1955 - 57)  # 1409.25


def test_boxes_reaching_into_the_padding_are_clipped_and_boxes_inside_it_rejected() -> None:
    p = square_padding(600, 1000)  # pad_left 200: x < 200 px of the square is padding
    box = to_pixels([0, 100, 1000, 400], p)
    assert box is not None
    assert (box.x0, box.x1, box.y0, box.y1) == (0.0, 200.0, 0.0, 1000.0)
    assert to_pixels([0, 0, 1000, 150], p) is None  # entirely in the left padding


@pytest.mark.parametrize(
    ("raw", "expected", "note"),
    [
        ([100, 200, 300, 400], [100, 200, 300, 400], None),
        ([300, 400, 100, 200], [100, 200, 300, 400], "swapped"),
        ([0.1, 0.2, 0.3, 0.4], [100, 200, 300, 400], "fractions"),
        ([0.0, 0.0, 1.0, 1.0], [0, 0, 1000, 1000], "fractions"),  # floats: the whole square
        ([0, 0, 1, 1], [0, 0, 1, 1], None),  # integers: a 1/1000 box, not fractions
        (["100", "200", "300.5", "400"], [100, 200, 300.5, 400], None),
    ],
)
def test_normalize_box(raw: list[float], expected: list[float], note: str | None) -> None:
    box, notes = normalize_box(raw)
    assert box == pytest.approx(expected)
    assert (note is None and not notes) or any(note in n for n in notes)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ([100, 200, 300], "4 numbers"),
        ([100, 200, 1300, 400], "outside 0..1000"),
        ([-5, 200, 300, 400], "outside 0..1000"),
        ([100, 200, 100, 400], "no area"),
        (["a", 1, 2, 3], "numbers"),
        ("100,200,300,400", "4 numbers"),
        ([float("nan"), 100, 700, 450], "finite"),  # NaN fails every comparison: passed every check
        (["nan", 100, 700, 450], "finite"),
        (["NaN", 100, 700, 450], "finite"),
        ([100, 100, 700, float("inf")], "finite"),
        ([float("-inf"), 100, 700, 450], "finite"),
        (["Infinity", 100, 700, 450], "finite"),
        ([True, 100, 700, 450], "numbers"),  # float(True) is 1.0
    ],
)
def test_normalize_box_rejects(raw: object, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        normalize_box(raw)


def test_task_pads_an_unpadded_input_itself_and_writes_json_and_overlay(tmp_path: Path) -> None:
    film = Image.new("RGB", (400, 200), (90, 90, 90))  # landscape: S 400, pad_top 100
    engine = FakeEngine(
        replies=[
            "The heart is central.\nFinal Answer:\n```json\n"
            '[{"box_2d": [400, 300, 600, 700], "label": "Heart"}, {"box_2d": [0, 0, 50, 50], "label": "tag"},'
            ' {"box_2d": [700, 100, 300, 450], "label": "right lung"}]\n```'
        ]
    )
    result = run_task(
        "cxr-localize",
        [_prepared(film)],
        models=engine,
        options={"labels": "heart, right lung, left lung"},
        files_dir=tmp_path,
    )
    assert result.errors == []
    boxes = {b["label"]: b for b in result.parsed["boxes"]}
    # heart: y = 400/1000*400 - 100 = 60 .. 140; x = 120 .. 280
    assert boxes["heart"]["box_px"] == {"x0": 120.0, "y0": 60.0, "x1": 280.0, "y1": 140.0}
    # right lung: corners swapped back, y 0.3*400-100 = 20 .. 180, x 40 .. 180
    assert boxes["right lung"]["box_px"] == {"x0": 40.0, "y0": 20.0, "x1": 180.0, "y1": 180.0}
    assert "tag" not in boxes  # it lies wholly in the top padding
    assert result.parsed["missing"] == ["left lung"]
    assert any("swapped" in w for w in result.warnings)
    assert any("padding" in w for w in result.warnings)
    # the model saw the padded square
    assert "<start_of_image>" in engine.prompts[0]
    saved = json.loads((tmp_path / "boxes.json").read_text())
    assert saved["image_size"] == [400, 200]
    overlay = Image.open(tmp_path / "overlay.png")
    assert overlay.size == (400, 200)  # drawn on the ORIGINAL film
    # the heart box outline is drawn at its left edge, inside the film
    assert overlay.getpixel((120, 100)) != (90, 90, 90)
    assert overlay.getpixel((200, 100)) == (90, 90, 90)


def test_reader_padding_is_used_and_undone(samples) -> None:  # type: ignore[no-untyped-def]
    from aris.inputs import read

    prepared = read(samples("dicom/cxr/highdicom_dx_image.dcm"), kind="cxr", pad_square=True)
    assert prepared.padding is not None
    view, original, pad = model_view(prepared)
    assert view.width == view.height == pad.size == max(pad.width, pad.height)
    assert original.size == (pad.width, pad.height)
    ds = pydicom.dcmread(samples("dicom/cxr/highdicom_dx_image.dcm"), stop_before_pixels=True)
    assert (pad.width, pad.height) == (ds.Columns, ds.Rows)  # 211 x 169: landscape
    assert (pad.left, pad.top) == (0, (ds.Columns - ds.Rows) // 2)
    assert original.tobytes() == view.crop((0, pad.top, pad.width, pad.top + pad.height)).tobytes()


def test_all_boxes_bad_fails_validation_then_is_repaired() -> None:
    engine = FakeEngine(
        replies=[
            '[{"box_2d": [10, 20, 1500, 40], "label": "heart"}]',
            '[{"box_2d": [10, 20, 500, 400], "label": "heart"}]',
        ]
    )
    result = get_task("cxr-localize").run(engine, [_prepared(Image.new("RGB", (100, 100)))])
    assert result.repaired
    assert result.parsed["boxes"][0]["box_px"] == {"x0": 2.0, "y0": 1.0, "x1": 40.0, "y1": 50.0}
    assert "outside 0..1000" in engine.prompts[1]  # the repair prompt names the problem


def test_a_nan_coordinate_in_the_reply_is_a_parse_error_and_repaired() -> None:
    # JSON NaN / Infinity decode to floats in Python; a box with y0 = nan must never be accepted
    engine = FakeEngine(
        replies=[
            '[{"box_2d": [NaN, 100, 700, 450], "label": "heart"}]',
            '[{"box_2d": [10, 20, 500, 400], "label": "heart"}]',
        ]
    )
    result = get_task("cxr-localize").run(engine, [_prepared(Image.new("RGB", (100, 100)))])
    assert result.repaired
    assert "finite" in engine.prompts[1]
    assert result.parsed["boxes"][0]["box_2d"] == [10.0, 20.0, 500.0, 400.0]


def test_an_infinite_box_beside_a_good_one_is_rejected_with_a_warning() -> None:
    reply = (
        '[{"box_2d": [10, 20, 500, 400], "label": "heart"},'
        ' {"box_2d": [10, 20, Infinity, 400], "label": "right lung"}]'
    )
    out = get_task("cxr-localize").parse(reply, [_prepared(Image.new("RGB", (100, 100)))], {})
    assert [b.label for b in out.boxes] == ["heart"]
    assert any("right lung" in w and "finite" in w for w in out.warnings)
