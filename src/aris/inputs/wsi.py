"""Whole-slide images (SVS, tiled TIFF, DICOM-SM) as MedGemma's pathology patches.

The recipe (MedGemma 1.5 report, Google's education notebook): one magnification per slide (10X
by default; training drew 5X, 10X and 20X), a tissue mask at low magnification, non-overlapping
896x896 tissue patches, at most 126 of them sampled at random without replacement but kept in
spatial order. The prompt carries no per-patch label, so the parts are the tiles alone; each tile's
level-0 coordinates go into ``ImagePart.label`` for display and into the provenance.

Memory stays bounded whatever the slide size: the mask is built from the lowest-resolution level,
read in chunks and box-reduced to about ``MASK_SIDE`` pixels, and only the chosen tiles are ever read
at the working magnification (one ``read_region`` call each).

Edge tiles: only whole tiles are cut by default (a partial tile at the right or bottom edge would be
mostly padding, which the model never saw in training). ``pad_edges=True`` also takes partial edge
tiles that hold enough tissue, padded with white (the colour of empty glass), which helps small
regions such as the 2220x2967 CMU sample, where only one whole 10X tile fits.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from aris.errors import ConfigError
from aris.inputs.base import PreparedInput
from aris.inputs.errors import CorruptFileError, NoTissueError, UnsupportedFormatError
from aris.types import ImagePart, Provenance

logger = logging.getLogger(__name__)

TILE = 896  # the SigLIP input side: one tile is one image the model sees unresized
MAX_TILES = 126  # the 1.5 report's limit (the notebook used 125)
MAGNIFICATIONS = {"5X": 5.0, "10X": 10.0, "20X": 20.0, "40X": 40.0}
MPP_AT_10X = 10.0  # microns per pixel x objective power: 10X ~ 1.0 um/px, 20X ~ 0.5, 5X ~ 2.0
LEVEL_TOLERANCE = 0.10
"""A level whose downsample is within 10% of the wanted one counts as that magnification.

Scanners write nominal powers and rounded mpp (Aperio 20X = 0.499 um/px, Leica 40X = 0.263), so an
exact match never happens; 10% keeps a real 2x pyramid level from being resampled for a 0.2% error.
"""
MASK_SIDE = 1024  # longest side of the tissue mask, pixels
MASK_CHUNK = 2048  # longest side of one read while building the mask
MIN_SATURATION = 0.05
"""Floor of the Otsu threshold. Glass, blank slides and black scan borders sit below it, stained
tissue above it; without the floor Otsu splits a blank slide's noise into 'tissue'."""
MIN_TISSUE = 0.25
"""Share of a tile the tissue mask must cover. A quarter, not a half: the mask is coarse (about
8-16 level-0 pixels a mask pixel) and tissue borders are part of what a pathologist describes."""
WHITE = 255


class SlideTooSmallError(NoTissueError):
    """The slide at the chosen magnification is smaller than one tile, so no tissue tile can be cut."""


@dataclass(frozen=True)
class Tile:
    """One patch: grid cell, level-0 box, and where it was read."""

    col: int
    row: int
    x: int  # level-0 left
    y: int  # level-0 top
    size: int  # level-0 side of the footprint
    tissue: float  # mask coverage, 0..1
    width: int  # pixels read at the reading level (less than the region side for a padded edge tile)
    height: int


@dataclass(frozen=True)
class LevelChoice:
    """Where tiles come from, and why."""

    magnification: str
    wanted_downsample: float  # level-0 pixels per output pixel the magnification asks for
    level: int  # pyramid level read
    level_downsample: float
    resampled: bool  # True when no level matched and regions are read larger and downsampled
    scale: float  # level-0 pixels per output pixel actually used
    region: int  # side of the region read at `level` for one tile
    basis: str  # what the magnification was computed from


# --- slide backends ------------------------------------------------------------------------------


class Slide(Protocol):
    backend: str
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    mpp: float | None
    objective_power: float | None

    def read(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """RGB uint8 array of a region: (x, y) are pixel coordinates AT ``level``."""

    def close(self) -> None: ...


class _TiffSlide:
    """SVS and tiled TIFF through tiffslide (pure Python over tifffile/zarr)."""

    backend = "tiffslide"

    def __init__(self, path: Path) -> None:
        import tiffslide

        try:
            self._s = tiffslide.TiffSlide(path)
        except Exception as e:  # tifffile raises several types for non-TIFF or damaged files
            raise CorruptFileError(path, f"not a readable TIFF/SVS slide ({type(e).__name__}: {e})") from e
        props = self._s.properties
        self.level_dimensions: list[tuple[int, int]] = [(int(w), int(h)) for w, h in self._s.level_dimensions]
        self.level_downsamples: list[float] = [float(d) for d in self._s.level_downsamples]
        mpp = props.get("tiffslide.mpp-x")
        self.mpp: float | None = float(mpp) if mpp else None
        power = props.get("tiffslide.objective-power") or props.get("aperio.AppMag")
        self.objective_power: float | None = float(power) if power else None

    def read(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        ds = self.level_downsamples[level]
        # tiffslide takes level-0 coordinates and truncates x0 / downsample; the ceiling makes that
        # land exactly on level pixel x (for downsample > 1; x itself when it is 1).
        loc = (math.ceil(x * ds - 1e-6), math.ceil(y * ds - 1e-6))
        arr = np.asarray(self._s.read_region(loc, level, (width, height), as_array=True))
        return _rgb(arr)

    def close(self) -> None:
        self._s.close()


class _DicomSlide:
    """DICOM VL Whole Slide Microscopy (one file, a list, or a folder) through wsidicom."""

    backend = "wsidicom"

    def __init__(self, source: Path | list[Path]) -> None:
        from wsidicom import WsiDicom

        try:
            self._s = WsiDicom.open(source)
        except Exception as e:  # wsidicom raises its own and pydicom's errors
            raise CorruptFileError(
                source if isinstance(source, Path) else source[0],
                f"not a readable DICOM whole-slide image ({type(e).__name__}: {e})",
            ) from e
        self._levels = list(self._s.levels)
        base = self._levels[0].size
        self.level_dimensions: list[tuple[int, int]] = [
            (int(lv.size.width), int(lv.size.height)) for lv in self._levels
        ]
        self.level_downsamples: list[float] = [base.width / lv.size.width for lv in self._levels]
        mpp = self._s.mpp
        self.mpp: float | None = float(mpp.width) if mpp is not None else None
        self.objective_power: float | None = None  # not reliably present; the mpp decides

    def read(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        # wsidicom's `level` is the pyramid's scale power and its location is in that level's pixels
        img = self._s.read_region((x, y), self._levels[level].level, (width, height))
        return _rgb(np.asarray(img))

    def close(self) -> None:
        self._s.close()


def _rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[..., :3].astype(np.uint8, copy=False))


def open_slide(path: str | Path | Sequence[str | Path]) -> Slide:
    """Open a slide with the backend its content calls for (DICOM-SM -> wsidicom, else tiffslide)."""
    if isinstance(path, str | Path):
        p = Path(path)
        if p.is_dir():
            return _DicomSlide(p)
        if _is_dicom(p):
            return _DicomSlide([p])
        return _TiffSlide(p)
    return _DicomSlide([Path(x) for x in path])


def _is_dicom(p: Path) -> bool:
    try:
        with p.open("rb") as f:
            head = f.read(132)
    except OSError as e:
        raise CorruptFileError(p, f"cannot be read ({e.strerror or type(e).__name__})") from e
    return head[128:132] == b"DICM"


# --- magnification and level ---------------------------------------------------------------------


def parse_magnification(value: str | float) -> float:
    """'10X', '10x', '10' or 10.0 -> 10.0."""
    if isinstance(value, int | float):
        power = float(value)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*[xX]?\s*", value)
        if not m:
            raise ConfigError(f"magnification {value!r}: expected one of {', '.join(MAGNIFICATIONS)}")
        power = float(m.group(1))
    if power <= 0:
        raise ConfigError(f"magnification {value!r} must be positive")
    return power


def choose_level(slide: Slide, magnification: str | float, tile: int = TILE) -> tuple[LevelChoice, list[str]]:
    """Pick the pyramid level for a magnification; return the choice and any warnings.

    The wanted downsample comes from the objective power when the slide states it (20X scan at 10X
    -> 2.0), else from microns per pixel (10X ~ 1.0 um/px). A level within ``LEVEL_TOLERANCE`` of
    it is read as is; otherwise the next higher-resolution level is read over a larger region and
    each tile is downsampled to ``tile`` pixels.
    """
    power = parse_magnification(magnification)
    label = f"{power:g}X"
    warnings: list[str] = []
    if slide.objective_power:
        wanted = slide.objective_power / power
        basis = f"objective power {slide.objective_power:g}X"
    elif slide.mpp:
        wanted = (MPP_AT_10X / power) / slide.mpp
        basis = f"{slide.mpp:g} um/px at level 0 (10X ~ 1.0 um/px)"
    else:
        wanted = 20.0 / power
        basis = "no objective power or pixel spacing in the file: level 0 assumed to be 20X"
        warnings.append(
            f"slide states neither objective power nor pixel spacing; level 0 assumed 20X for {label}"
        )
    if wanted < 1 - LEVEL_TOLERANCE:
        raise ValueError(
            f"{label} asked for, but the slide's highest magnification is about {power * wanted:.3g}X"
        )
    downsamples = list(slide.level_downsamples)
    close = [i for i, d in enumerate(downsamples) if abs(d / wanted - 1) <= LEVEL_TOLERANCE]
    if close:
        level = min(close, key=lambda i: abs(downsamples[i] / wanted - 1))
        ds = downsamples[level]
        choice = LevelChoice(label, wanted, level, ds, False, ds, tile, basis)
    else:
        finer = [i for i, d in enumerate(downsamples) if d < wanted]
        level = max(finer, key=lambda i: downsamples[i])
        ds = downsamples[level]
        region = round(tile * wanted / ds)
        choice = LevelChoice(label, wanted, level, ds, True, wanted, region, basis)
        warnings.append(
            f"no pyramid level at {label}: tiles read from level {level} (downsample {ds:.3g}) as "
            f"{region}x{region} regions and downsampled to {tile}x{tile}"
        )
    return choice, warnings


# --- tissue mask ---------------------------------------------------------------------------------


@dataclass
class TissueMask:
    mask: np.ndarray  # bool, mask pixels
    level: int  # slide level it was read from
    scale: float  # level-0 pixels per mask pixel
    threshold: float  # saturation threshold used


def low_res_image(slide: Slide) -> tuple[np.ndarray, int, float]:
    """The lowest-resolution level, box-reduced to at most ``MASK_SIDE`` and read in bounded chunks.

    Returns the RGB array, the level read and level-0 pixels per output pixel.
    """
    level = len(slide.level_dimensions) - 1
    w, h = slide.level_dimensions[level]
    f = max(1, math.ceil(max(w, h) / MASK_SIDE))
    chunk = f * max(1, MASK_CHUNK // f)  # a multiple of f so reduced chunks tile the output exactly
    out = np.empty((math.ceil(h / f), math.ceil(w / f), 3), np.uint8)
    for y in range(0, h, chunk):
        for x in range(0, w, chunk):
            cw, ch = min(chunk, w - x), min(chunk, h - y)
            part = slide.read(level, x, y, cw, ch)
            if f > 1:
                part = np.asarray(Image.fromarray(part).reduce(f))
            out[y // f : y // f + part.shape[0], x // f : x // f + part.shape[1]] = part
    return out, level, slide.level_downsamples[level] * f


def tissue_mask(rgb: np.ndarray, min_object: int = 16) -> tuple[np.ndarray, float]:
    """Otsu on HSV saturation (stain is coloured, glass is not), then small specks and holes cleaned.

    Returns the boolean mask and the threshold used (floored at ``MIN_SATURATION``).
    """
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_holes, remove_small_objects

    # HSV saturation, (max - min) / max, computed directly: skimage's rgb2hsv is 10x slower here
    mx = rgb.max(axis=2).astype(np.float32)
    sat = np.divide(mx - rgb.min(axis=2), mx, out=np.zeros_like(mx), where=mx > 0)
    otsu = float(threshold_otsu(sat)) if np.ptp(sat) > 1e-6 else 1.0
    thr = max(otsu, MIN_SATURATION)
    mask = sat > thr
    if mask.any():
        mask = remove_small_objects(mask, max_size=min_object)
        mask = remove_small_holes(mask, max_size=min_object)
    return mask, thr


def build_mask(slide: Slide, tile_footprint: float) -> TissueMask:
    rgb, level, scale = low_res_image(slide)
    # Specks under 1/64 of a tile's area are dust or debris, not a tissue fragment worth a tile.
    min_object = max(4, int((tile_footprint / scale) ** 2 / 64))
    mask, thr = tissue_mask(rgb, min_object)
    return TissueMask(mask, level, scale, thr)


# --- grid, sampling, reading ---------------------------------------------------------------------


def grid_tiles(
    slide: Slide,
    choice: LevelChoice,
    mask: TissueMask,
    *,
    min_tissue: float = MIN_TISSUE,
    pad_edges: bool = False,
) -> tuple[list[Tile], tuple[int, int]]:
    """Every tile of the magnification's grid with enough tissue, row-major; and the grid (cols, rows).

    The grid lives in the reading level's pixels (cell side ``choice.region``), so tiles never
    overlap and never straddle a cell; level-0 coordinates are derived from it.
    """
    lw, lh = slide.level_dimensions[choice.level]
    r = choice.region
    cols, rows = (math.ceil(lw / r), math.ceil(lh / r)) if pad_edges else (lw // r, lh // r)
    ds = choice.level_downsample
    size0 = round(r * ds)
    tiles: list[Tile] = []
    mh, mw = mask.mask.shape
    for row in range(rows):
        for col in range(cols):
            w, h = min(r, lw - col * r), min(r, lh - row * r)
            x0, y0 = round(col * r * ds), round(row * r * ds)
            # mask box covering the part of the tile that lies on the slide
            mx0, my0 = int(x0 / mask.scale), int(y0 / mask.scale)
            mx1 = min(mw, max(mx0 + 1, math.ceil((x0 + w * ds) / mask.scale)))
            my1 = min(mh, max(my0 + 1, math.ceil((y0 + h * ds) / mask.scale)))
            covered = float(mask.mask[my0:my1, mx0:mx1].mean()) if mx1 > mx0 and my1 > my0 else 0.0
            tissue = covered * (w * h) / (r * r)  # an edge tile's missing part counts as glass
            if tissue >= min_tissue:
                tiles.append(Tile(col, row, x0, y0, size0, round(tissue, 4), w, h))
    return tiles, (cols, rows)


def sample_tiles(tiles: Sequence[Tile], max_tiles: int, seed: int) -> list[Tile]:
    """At most ``max_tiles`` tiles drawn at random without replacement, returned in row-major order.

    The order matters: MedGemma saw a slide's patches in spatial order, so the sample is re-sorted.
    """
    if len(tiles) <= max_tiles:
        return list(tiles)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(tiles), size=max_tiles, replace=False))
    return [tiles[i] for i in keep]


def read_tile(slide: Slide, choice: LevelChoice, t: Tile, tile: int = TILE) -> Image.Image:
    """One tile at the chosen magnification, ``tile`` x ``tile`` RGB (white beyond the slide's edge)."""
    r = choice.region
    arr = slide.read(choice.level, t.col * r, t.row * r, t.width, t.height)
    img = Image.fromarray(arr, "RGB")
    if (t.width, t.height) != (r, r):
        canvas = Image.new("RGB", (r, r), (WHITE, WHITE, WHITE))
        canvas.paste(img, (0, 0))
        img = canvas
    if r != tile:
        img = img.resize(
            (tile, tile), Image.Resampling.LANCZOS
        )  # antialiased: a plain decimation aliases nuclei
    return img


def read_wsi(
    path: str | Path | Sequence[str | Path],
    *,
    magnification: str | float = "10X",
    max_tiles: int = MAX_TILES,
    seed: int = 0,
    tile: int = TILE,
    min_tissue: float = MIN_TISSUE,
    pad_edges: bool = False,
) -> PreparedInput:
    """Read a whole-slide image into at most ``max_tiles`` tissue tiles at one magnification.

    Parameters
    ----------
    path
        An SVS or tiled TIFF file, a DICOM-SM file, or a folder/list of a DICOM-SM pyramid's files.
    magnification
        "5X", "10X" (the notebook's default) or "20X" (training drew all three); "40X" where scanned.
    max_tiles
        126 in the MedGemma 1.5 report. Tiles beyond it are sampled out at random (``seed``).
    tile
        Output side in pixels. 896 is what SigLIP takes, so the processor does not resize.
    min_tissue
        Share of a tile the low-resolution tissue mask must cover.
    pad_edges
        Also take partial right/bottom edge tiles, padded with white.

    Raises
    ------
    SlideTooSmallError
        The slide at that magnification is smaller than one tile.
    NoTissueError
        The tissue mask is empty, or no tile holds enough tissue.
    CorruptFileError
        Not a readable slide.
    """
    sources = [str(path)] if isinstance(path, str | Path) else [str(p) for p in path]
    name = Path(sources[0])
    if max_tiles < 1:
        raise ValueError("max_tiles must be at least 1")
    slide = open_slide(path)
    try:
        try:
            choice, warnings = choose_level(slide, magnification, tile)
        except ValueError as e:
            raise UnsupportedFormatError(name, str(e)) from None
        lw, lh = slide.level_dimensions[choice.level]
        if (lw < choice.region or lh < choice.region) and not pad_edges:
            out_w, out_h = (
                round(lw * choice.level_downsample / choice.scale),
                round(lh * choice.level_downsample / choice.scale),
            )
            raise SlideTooSmallError(
                name,
                f"slide is {out_w}x{out_h} px at {choice.magnification}, smaller than one {tile}x{tile} tile; "
                "use a higher magnification or pad_edges=True (aris prepare --pad-edges)",
            )
        mask = build_mask(slide, choice.region * choice.level_downsample)
        if not mask.mask.any():
            raise NoTissueError(name, "no tissue found (the low-resolution tissue mask is empty)")
        candidates, (cols, rows) = grid_tiles(slide, choice, mask, min_tissue=min_tissue, pad_edges=pad_edges)
        if not candidates:
            raise NoTissueError(
                name,
                f"no {tile}x{tile} tile at {choice.magnification} is at least {min_tissue:.0%} tissue "
                f"({cols}x{rows} grid); try a higher magnification or a lower min_tissue",
            )
        chosen = sample_tiles(candidates, max_tiles, seed)
        images = [read_tile(slide, choice, t, tile) for t in chosen]
    finally:
        slide.close()
    if len(candidates) > max_tiles:
        warnings.append(
            f"{len(candidates)} tissue tiles; {max_tiles} sampled at random (seed {seed}), kept in spatial order"
        )
    if any((t.width, t.height) != (choice.region, choice.region) for t in chosen):
        warnings.append("some edge tiles are partial and padded with white")
    parts = [
        ImagePart(img, label=f"TILE {i} @ ({t.x}, {t.y})")
        for i, (img, t) in enumerate(zip(images, chosen, strict=True), 1)
    ]
    details: dict[str, Any] = {
        "backend": slide.backend,
        "level_dimensions": [list(d) for d in slide.level_dimensions],
        "level_downsamples": [round(d, 4) for d in slide.level_downsamples],
        "mpp": slide.mpp,
        "objective_power": slide.objective_power,
        "magnification": choice.magnification,
        "magnification_basis": choice.basis,
        "wanted_downsample": round(choice.wanted_downsample, 4),
        "level": choice.level,
        "level_downsample": round(choice.level_downsample, 4),
        "resampled": choice.resampled,
        "region_at_level": choice.region,
        "tile": tile,
        "tile_size_level0": round(choice.region * choice.level_downsample),
        "grid": [cols, rows],
        "edge_tiles": "padded with white" if pad_edges else "excluded (only whole tiles)",
        "mask": {
            "level": mask.level,
            "shape": list(mask.mask.shape),
            "level0_per_pixel": round(mask.scale, 4),
            "saturation_threshold": round(mask.threshold, 4),
            "tissue_fraction": round(float(mask.mask.mean()), 4),
        },
        "min_tissue": min_tissue,
        "candidates": len(candidates),
        "max_tiles": max_tiles,
        "seed": seed,
        "tiles": [
            {k: v for k, v in asdict(t).items() if k in ("x", "y", "size", "col", "row", "tissue")}
            for t in chosen
        ],
    }
    logger.info(
        "wsi: %d levels, level %d at %s, %d candidates -> %d tiles",
        len(slide.level_dimensions),
        choice.level,
        choice.magnification,
        len(candidates),
        len(chosen),
    )
    return PreparedInput(
        kind="wsi",
        parts=list(parts),
        provenance=Provenance(kind="wsi", sources=sources, details=details, warnings=warnings),
    )
