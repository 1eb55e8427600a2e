"""Whole-slide reading against independent answers: tifffile's own pixels, pydicom's frames, layouts we built."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
import tiffslide
from PIL import Image

from aris.errors import ConfigError
from aris.inputs.errors import NoTissueError, UnsupportedFormatError
from aris.inputs.wsi import (
    SlideTooSmallError,
    choose_level,
    open_slide,
    read_wsi,
)
from aris.types import ImagePart

PYRAMID = "wsi/cmu_small_region_pyramid.tiff"
SVS = "wsi/cmu_small_region.svs"


def write_slide(
    path: Path, level0: np.ndarray, mpp: float, levels: int = 3, compression: str = "zlib"
) -> Path:
    """A pyramidal tiled TIFF (levels as SubIFDs, 2x each), the layout tiffslide reads."""
    pyramid = [level0]
    for _ in range(levels - 1):
        pyramid.append(np.asarray(Image.fromarray(pyramid[-1]).reduce(2)))
    opts = {
        "tile": (256, 256),
        "photometric": "rgb",
        "compression": compression,
        "resolutionunit": "CENTIMETER",
    }
    with tifffile.TiffWriter(path) as tw:
        tw.write(pyramid[0], subifds=levels - 1, resolution=(1e4 / mpp, 1e4 / mpp), metadata=None, **opts)
        for i, lv in enumerate(pyramid[1:], 1):
            tw.write(
                lv, subfiletype=1, resolution=(1e4 / mpp / 2**i, 1e4 / mpp / 2**i), metadata=None, **opts
            )
    return path


@pytest.fixture(scope="module")
def tissue(samples) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A real 896x896 H&E patch that is ~90% tissue (level-0 cell (1, 2) of the CMU sample)."""
    level0 = tifffile.imread(samples(SVS))
    return np.ascontiguousarray(level0[1792:2688, 896:1792])


@pytest.fixture(scope="module")
def layout_slide(
    tmp_path_factory: pytest.TempPathFactory, tissue: np.ndarray
) -> tuple[Path, set[tuple[int, int]]]:
    """A 4x3-cell 20X (0.5 um/px) slide of white glass with real tissue in three known cells."""
    cells = {(0, 0), (2, 1), (3, 2)}
    canvas = np.full((3 * 896, 4 * 896, 3), 250, np.uint8)
    for c, r in cells:
        canvas[r * 896 : (r + 1) * 896, c * 896 : (c + 1) * 896] = tissue
    return write_slide(tmp_path_factory.mktemp("wsi") / "layout.tiff", canvas, mpp=0.5), cells


@pytest.fixture
def read_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, tuple[int, int]]]:
    """Records every tiffslide read_region call (level, size) while still reading for real."""
    calls: list[tuple[int, tuple[int, int]]] = []
    real = tiffslide.TiffSlide.read_region

    def recording(self, location, level, size, **kw):  # type: ignore[no-untyped-def]
        calls.append((level, tuple(size)))
        return real(self, location, level, size, **kw)

    monkeypatch.setattr(tiffslide.TiffSlide, "read_region", recording)
    return calls


# --- level choice --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mag", "level", "downsample"), [("5X", 2, 4.0020), ("10X", 1, 2.0003), ("20X", 0, 1.0)]
)
def test_pyramid_level_for_each_magnification(samples, mag: str, level: int, downsample: float) -> None:  # type: ignore[no-untyped-def]
    # 0.499 um/px at level 0 and no objective power: 10X wants 1.0/0.499 = 2.004, level 1 is 2.0003
    slide = open_slide(samples(PYRAMID))
    choice, warnings = choose_level(slide, mag)
    slide.close()
    assert choice.level == level
    assert choice.level_downsample == pytest.approx(downsample, abs=1e-4)
    assert not choice.resampled
    assert choice.region == 896
    assert warnings == []
    assert "um/px" in choice.basis


def test_single_level_svs_is_read_larger_and_downsampled(samples) -> None:  # type: ignore[no-untyped-def]
    slide = open_slide(samples(SVS))
    assert slide.objective_power == 20
    c10, w10 = choose_level(slide, "10X")
    c5, _ = choose_level(slide, "5x")
    c20, w20 = choose_level(slide, 20)
    slide.close()
    # objective power wins over mpp: 20X scan at 10X is exactly 2.0
    assert (c10.level, c10.resampled, c10.scale, c10.region) == (0, True, 2.0, 1792)
    assert (c5.level, c5.region) == (0, 3584)
    assert (c20.level, c20.resampled, c20.region) == (0, False, 896)
    assert "downsampled to 896x896" in w10[0]
    assert w20 == []


def test_magnification_above_the_scan_and_bad_values_are_refused(samples) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnsupportedFormatError, match=r"cmu_small_region\.svs: 40X asked for.*about 20X"):
        read_wsi(samples(SVS), magnification="40X")
    with pytest.raises(ConfigError, match="magnification 'ten'"):
        read_wsi(samples(SVS), magnification="ten")


# --- tiles: grid, pixels, reads ------------------------------------------------------------------


def test_tiles_at_20x_are_the_slide_pixels_on_the_grid(samples) -> None:  # type: ignore[no-untyped-def]
    path = samples(PYRAMID)
    p = read_wsi(path, magnification="20X")
    level0 = tifffile.TiffFile(path).series[0].levels[0].asarray()
    tiles = p.provenance.details["tiles"]
    assert p.kind == "wsi"
    assert len(p.images) == len(tiles) >= 2
    # the recipe has no per-patch text: the parts are the tiles alone, coordinates only as display labels
    assert all(isinstance(part, ImagePart) and part.label.startswith("TILE ") for part in p.parts)
    for t, img in zip(tiles, p.images, strict=True):
        assert t["x"] % 896 == 0
        assert t["y"] % 896 == 0
        assert t["size"] == 896
        assert img.size == (896, 896)
        assert img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img), level0[t["y"] : t["y"] + 896, t["x"] : t["x"] + 896])
    keys = [(t["y"], t["x"]) for t in tiles]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


def test_tiles_at_10x_come_from_level_1_exactly(samples, read_calls) -> None:  # type: ignore[no-untyped-def]
    path = samples(PYRAMID)
    p = read_wsi(path, magnification="10X")
    d = p.provenance.details
    assert (d["level"], d["resampled"], d["grid"]) == (1, False, [1, 1])  # 1110x1483 at 10X: one whole tile
    level1 = tifffile.TiffFile(path).series[0].levels[1].asarray()
    np.testing.assert_array_equal(np.asarray(p.images[0]), level1[:896, :896])
    # the mask is the lowest level read once; then one tile-sized read per tile at level 1, nothing else
    assert read_calls == [(3, (277, 370))] + [(1, (896, 896))] * len(p.images)


def test_no_full_resolution_read_of_a_single_level_slide(samples, read_calls) -> None:  # type: ignore[no-untyped-def]
    p = read_wsi(samples(SVS), magnification="10X", pad_edges=True)
    assert len(p.images) == 2
    # one level of 2220x2967: the mask reads it in 2046 px chunks (a multiple of the 3x reduction),
    # then each 10X tile is one 1792 px region (the padded edge tile only its 1175 rows on the slide)
    assert read_calls == [
        (0, (2046, 2046)),
        (0, (174, 2046)),
        (0, (2046, 921)),
        (0, (174, 921)),
        (0, (1792, 1792)),
        (0, (1792, 1175)),
    ]


def test_resampled_tile_matches_a_2x_block_mean(samples) -> None:  # type: ignore[no-untyped-def]
    path = samples(SVS)
    p = read_wsi(path, magnification="10X")
    (t,) = p.provenance.details["tiles"]
    assert (t["x"], t["y"], t["size"]) == (0, 0, 1792)
    region = tifffile.imread(path)[:1792, :1792].astype(np.float32)
    block_mean = region.reshape(896, 2, 896, 2, 3).mean(axis=(1, 3))
    diff = np.abs(np.asarray(p.images[0], np.float32) - block_mean)
    assert diff.mean() < 4  # Lanczos vs box filter: same picture, slightly different sharpening
    assert "downsampled" in p.provenance.warnings[0]


def test_small_slide_edges_excluded_by_default_padded_white_on_request(samples) -> None:  # type: ignore[no-untyped-def]
    path = samples(SVS)
    whole = read_wsi(path, magnification="10X")
    padded = read_wsi(path, magnification="10X", pad_edges=True)
    assert whole.provenance.details["grid"] == [1, 1]
    assert len(whole.images) == 1
    assert padded.provenance.details["grid"] == [2, 2]
    assert len(padded.images) == 2
    # the second tile is row 1: level-0 y 1792..3584 but the slide ends at 2967 -> output rows >= 588 are glass
    t = padded.provenance.details["tiles"][1]
    assert (t["col"], t["row"]) == (0, 1)
    arr = np.asarray(padded.images[1])
    assert (arr[590:] == 255).all()
    assert (arr[:580] < 250).any()
    assert any("padded with white" in w for w in padded.provenance.warnings)


def test_known_tissue_layout_is_found_exactly(layout_slide) -> None:  # type: ignore[no-untyped-def]
    path, cells = layout_slide
    p = read_wsi(path, magnification="20X")
    got = {(t["col"], t["row"]) for t in p.provenance.details["tiles"]}
    assert got == cells
    assert [(t["row"], t["col"]) for t in p.provenance.details["tiles"]] == sorted((r, c) for c, r in cells)
    # at 10X a cell is 2x2 of those: the grid is 2x1 (row 1 would be half off the slide) and each cell
    # holds one tissue quarter, so each is ~22% tissue: below the 25% default, kept at 20%
    with pytest.raises(NoTissueError, match="at least 25% tissue"):
        read_wsi(path, magnification="10X")
    p10 = read_wsi(path, magnification="10X", min_tissue=0.2)
    tiles10 = p10.provenance.details["tiles"]
    assert [(t["col"], t["row"]) for t in tiles10] == [(0, 0), (1, 0)]
    assert all(0.2 <= t["tissue"] <= 0.25 for t in tiles10)
    assert [(t["x"], t["y"], t["size"]) for t in tiles10] == [(0, 0, 1792), (1792, 0, 1792)]


# --- sampling ------------------------------------------------------------------------------------


def test_seeded_sampling_is_deterministic_without_replacement_and_spatial(samples) -> None:  # type: ignore[no-untyped-def]
    path = samples(PYRAMID)
    # 64 px tiles give a ~1000-cell grid on the real slide: many more tissue tiles than 126
    every = read_wsi(path, magnification="20X", tile=64, max_tiles=100_000)
    n = every.provenance.details["candidates"]
    assert n > 300
    a = read_wsi(path, magnification="20X", tile=64, seed=7)
    b = read_wsi(path, magnification="20X", tile=64, seed=7)
    c = read_wsi(path, magnification="20X", tile=64, seed=8)
    coords = [(t["y"], t["x"]) for t in a.provenance.details["tiles"]]
    assert len(a.images) == 126
    assert len(set(coords)) == 126
    assert coords == sorted(coords)  # spatial, row-major
    assert coords == [(t["y"], t["x"]) for t in b.provenance.details["tiles"]]
    assert coords != [(t["y"], t["x"]) for t in c.provenance.details["tiles"]]
    assert set(coords) <= {(t["y"], t["x"]) for t in every.provenance.details["tiles"]}
    assert any("sampled at random (seed 7)" in w for w in a.provenance.warnings)
    for img_a, img_b in zip(a.images, b.images, strict=True):
        assert img_a.tobytes() == img_b.tobytes()


# --- refusals ------------------------------------------------------------------------------------


def test_blank_slide_is_no_tissue_naming_the_file(tmp_path: Path) -> None:
    glass = np.full((2048, 2048, 3), 243, np.uint8)
    glass += np.random.default_rng(0).integers(0, 4, glass.shape, dtype=np.uint8)  # sensor noise
    path = write_slide(tmp_path / "blank.tiff", glass, mpp=0.5, compression="jpeg")
    with pytest.raises(NoTissueError, match=r"blank\.tiff: no tissue found"):
        read_wsi(path)


def test_dicom_sm_sample_is_too_small_not_a_crash(samples) -> None:  # type: ignore[no-untyped-def]
    path = samples("dicom/sm/sm_image.dcm")
    with pytest.raises(
        SlideTooSmallError, match=r"sm_image\.dcm: slide is 25x25 px at 10X, smaller than one 896x896"
    ):
        read_wsi(path)
    with pytest.raises(NoTissueError, match=r"sm_image\.dcm: no 896x896 tile"):
        read_wsi(path, pad_edges=True)


def test_dicom_sm_backend_reads_the_frames_pydicom_decodes(samples) -> None:  # type: ignore[no-untyped-def]
    path = samples("dicom/sm/sm_image.dcm")
    slide = open_slide(path)
    assert slide.backend == "wsidicom"
    assert slide.level_dimensions[0] == (50, 50)
    assert slide.mpp == pytest.approx(0.499)
    got = slide.read(0, 0, 0, 50, 50)
    slide.close()
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array  # 25 frames of 10x10, TILED_FULL: row-major over a 5x5 grid
    expected = frames.reshape(5, 5, 10, 10, 3).transpose(0, 2, 1, 3, 4).reshape(50, 50, 3)
    np.testing.assert_array_equal(got, expected)
