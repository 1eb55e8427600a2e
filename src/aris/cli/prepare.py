"""``aris prepare``: write exactly what the model will see, so a person can check it before a run.

For one input, the output folder gets the images as lossless PNGs in model order (``0001.png``,
``0002.png`` ...), a ``contact_sheet.png`` with every image and its label, ``manifest.json`` (kind,
what was chosen and why, labels, windows, indices, warnings, token estimate, the model order of
images and text parts) and, when the input has text (FHIR rendering, a PDF's text layer),
``context.txt``. A folder of separate files gets one numbered sub-folder per file plus a top-level
``manifest.json`` listing what was read and what failed; bad files are reported and skipped.

Exit codes: 0 all read; 1 a folder where some files failed; 2 nothing could be read (or bad options).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aris import __version__
from aris.cli.app import app, console, err_console
from aris.errors import ArisError, InputError
from aris.inputs import Failure, PreparedInput, estimate_tokens, kinds, read, read_many
from aris.inputs.parallel import pmap, workers
from aris.inputs.png import write_png
from aris.types import ImagePart, TextPart

MANIFEST = "manifest.json"
SHEET = "contact_sheet.png"
CONTEXT = "context.txt"
_OURS = re.compile(r"^(\d{4}\.png|contact_sheet\.png|manifest\.json|context\.txt)$")
_ITEM_DIR = re.compile(r"^\d{3}_")


def _json_default(o: Any) -> Any:
    """numpy scalars and arrays, paths, dataclasses and tuples in reader provenance -> JSON."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if isinstance(o, set | frozenset):
        return sorted(o)
    return str(o)


def _dump(data: Any, path: Path) -> None:
    path.write_text(
        json.dumps(data, indent=2, default=_json_default, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def write_prepared(
    prepared: PreparedInput, out: Path, source: Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Write one prepared input's PNGs, contact sheet, context and manifest into ``out``.

    Consumes the images: each leaves ``prepared`` once its PNG and thumbnail are made (its ``parts``
    keep only the text), so a volume is never held twice, as slices and as a contact sheet; the
    sheet is composed from the thumbnails after the last slice went. Returns the manifest written,
    which says what the images were.
    """
    from aris.inputs.sheet import compose, thumbnail

    out.mkdir(parents=True, exist_ok=True)
    labels = prepared.labels
    tokens = estimate_tokens(prepared)
    pending: list[ImagePart | None] = []
    images: list[dict[str, Any]] = []
    order: list[dict[str, str]] = []
    for part in prepared.parts:
        if isinstance(part, ImagePart):
            name = f"{len(images) + 1:04d}.png"
            pending.append(part)
            width, height = part.size
            images.append({"file": name, "label": labels[len(images)], "width": width, "height": height})
            order.append({"image": name})
        elif isinstance(part, TextPart):
            order.append(
                {"text": part.text if len(part.text) <= 200 else f"<{len(part.text)} characters: {CONTEXT}>"}
            )
    prepared.parts = [p for p in prepared.parts if not isinstance(p, ImagePart)]
    task = progress.add_task("writing images", total=len(pending)) if progress and pending else None
    thumbs: list[np.ndarray | None] = [None] * len(pending)
    # The sheet needs every thumbnail, and its encoding runs on one core: the last `held` slices
    # are written alongside it, on the other cores, so none idles and the rest go before it is drawn.
    held = _held_back([i["width"] * i["height"] for i in images])

    def write(i: int) -> None:
        part, pending[i] = pending[i], None
        assert part is not None
        write_png(part.pixels, out / images[i]["file"])
        if task is not None and progress is not None:
            progress.advance(task)

    def thumb_then_write(i: int) -> None:
        part = pending[i]
        assert part is not None
        thumbs[i] = thumbnail(part.pixels)
        if i < len(pending) - held:
            write(i)

    def sheet_or_write(i: int | None) -> None:
        if i is not None:
            write(i)
            return
        sheet = compose((t for t in thumbs if t is not None), labels)
        thumbs.clear()
        write_png(sheet, out / SHEET)

    # libpng and Pillow's resize release the GIL, so this runs a thread per core
    pmap(thumb_then_write, range(len(pending)))
    if pending:
        pmap(sheet_or_write, [None, *range(len(pending) - held, len(pending))])
    if task is not None and progress is not None:
        progress.remove_task(task)
    if prepared.text:
        (out / CONTEXT).write_text(prepared.text + "\n", encoding="utf-8")
    manifest: dict[str, Any] = {
        "aris_version": __version__,
        "input": str(source),
        "kind": prepared.kind,
        "sources": prepared.provenance.sources,
        "images": images,
        "labels": labels,
        "model_order": order,
        "contact_sheet": SHEET if images else None,
        "context": CONTEXT if prepared.text else None,
        "padding": dataclasses.asdict(prepared.padding) if prepared.padding else None,
        "details": prepared.provenance.details,
        "warnings": prepared.provenance.warnings,
        "tokens": tokens,
    }
    if "manifest" in prepared.extra:
        manifest["record"] = prepared.extra["manifest"]
    _dump(manifest, out / MANIFEST)
    return manifest


def _held_back(pixels: list[int]) -> int:
    """How many of the last images (of these pixel counts) to write while the contact sheet is
    encoded: as many as the other threads can encode in that time (PNG time goes with pixels)."""
    from aris.inputs.sheet import sheet_pixels

    if not pixels:
        return 0
    per_image = max(1, sum(pixels) // len(pixels))
    return min(len(pixels), math.ceil((workers(len(pixels)) - 1) * sheet_pixels(len(pixels)) / per_image))


def _clear(out: Path) -> None:
    """Remove what an earlier ``aris prepare`` wrote here, and nothing else."""
    for p in out.iterdir():
        if p.is_file() and _OURS.match(p.name):
            p.unlink()
        elif p.is_dir() and _ITEM_DIR.match(p.name) and (p / MANIFEST).is_file():
            _clear(p)
            if not any(p.iterdir()):
                p.rmdir()


def _one_input(path: Path, kind: str) -> bool:
    """Whether a folder is one input (a DICOM series or pyramid, a FHIR export) or a batch of files."""
    if not path.is_dir():
        return True
    if kind in ("ct", "mri", "wsi", "fhir"):
        return True
    if kind != "auto":
        return False
    from aris.inputs.detect import detect_kind

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # read() records library warnings; this is only a probe
            detect_kind(path)
    except InputError:
        return False  # not one recognisable input: read it file by file, reporting the bad ones
    return True


def _safe_stem(p: Path) -> str:
    stem = p.name.split(".")[0] or p.name
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem)[:40] or "item"


def _summary_row(table: Table, name: str, manifest: dict[str, Any]) -> None:
    tokens = manifest["tokens"]
    table.add_row(
        escape(name),
        manifest["kind"],
        str(tokens["images"]),
        f"{tokens['total']:,}",
        escape("; ".join(manifest["warnings"])),
    )


def _table(title: str) -> Table:
    table = Table(title=title)
    for col in ("input", "kind", "images", "tokens", "warnings"):
        table.add_column(col, overflow="fold")
    return table


@app.command("prepare")
def prepare_cmd(
    input_path: Annotated[
        Path, typer.Argument(metavar="INPUT", help="File, folder (one series, or many files) or zip.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the images and manifest to.")],
    kind: Annotated[str, typer.Option(help="auto | cxr | image | ct | mri | wsi | pdf | fhir.")] = "auto",
    series: Annotated[
        str | None, typer.Option("--series", help="SeriesInstanceUID to take from a multi-series folder.")
    ] = None,
    magnification: Annotated[
        str | None, typer.Option(help="Whole-slide magnification: 5X | 10X (default) | 20X.")
    ] = None,
    max_tiles: Annotated[int | None, typer.Option(help="Whole-slide tile limit (default 126).")] = None,
    seed: Annotated[int | None, typer.Option(help="Whole-slide tile sampling seed (default 0).")] = None,
    pad_edges: Annotated[
        bool, typer.Option("--pad-edges", help="Whole-slide: also take partial edge tiles, padded white.")
    ] = False,
    pad_square: Annotated[
        bool, typer.Option("--pad-square", help="Pad 2D images to a square (the localization recipe).")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace what an earlier prepare wrote in --out.")
    ] = False,
) -> None:
    """Write the exact images MedGemma will see (PNGs in model order), a contact sheet and a manifest."""
    if kind not in kinds():
        err_console.print(f"[bold red]error:[/] unknown kind {kind!r}; choose one of {', '.join(kinds())}")
        raise typer.Exit(2)
    if not input_path.exists():
        err_console.print(
            f"[bold red]error:[/] {escape(str(input_path))}: no such file or folder",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    if out.exists() and any(out.iterdir()):
        if not force:
            err_console.print(
                f"[bold red]error:[/] {escape(str(out))} is not empty; use --force to replace an earlier "
                "prepare's files",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2)
        _clear(out)
    options: dict[str, Any] = {
        k: v
        for k, v in {
            "series_uid": series,
            "magnification": magnification,
            "max_tiles": max_tiles,
            "seed": seed,
        }.items()
        if v is not None
    }
    if pad_square:
        options["pad_square"] = True
    if pad_edges:
        options["pad_edges"] = True

    if _one_input(input_path, kind):
        try:
            with err_console.status(f"reading {input_path.name}…"):
                prepared = read(input_path, kind, **options)
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=err_console,
                transient=True,
            ) as progress:
                manifest = write_prepared(prepared, out, input_path, progress)
        except ArisError as e:
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        table = _table(f"prepared into {escape(str(out))}")
        _summary_row(table, input_path.name, manifest)
        console.print(table)
        for w in prepared.provenance.warnings:
            err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
        return

    items = sorted(p for p in input_path.iterdir() if not p.name.startswith((".", "__MACOSX")))
    if not items:
        err_console.print(
            f"[bold red]error:[/] {escape(str(input_path))}: empty folder, nothing to prepare",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    table = _table("")
    entries: list[dict[str, Any]] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        overall = progress.add_task("preparing", total=len(items))

        def done(i: int, path: Path, result: PreparedInput | Failure) -> None:
            if isinstance(result, Failure):
                entries.append({"source": str(path), "error": result.error, "type": result.type})
                err_console.print(f"[red]skipped:[/] {escape(result.error)}", highlight=False, soft_wrap=True)
            else:
                sub = f"{i + 1:03d}_{_safe_stem(path)}"
                try:
                    m = write_prepared(result, out / sub, path, progress)
                except OSError as e:
                    entries.append(
                        {
                            "source": str(path),
                            "error": f"{path}: cannot write output ({e})",
                            "type": "OSError",
                        }
                    )
                else:
                    entries.append(
                        {
                            "source": str(path),
                            "dir": sub,
                            "kind": result.kind,
                            "images": len(m["images"]),
                            "tokens": m["tokens"]["total"],
                            "warnings": m["warnings"],
                        }
                    )
                    _summary_row(table, path.name, m)
            progress.advance(overall)

        try:
            read_many(items, kind, on_progress=done, keep=False, **options)
        except ArisError as e:
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    out.mkdir(parents=True, exist_ok=True)
    failed = [e for e in entries if "error" in e]
    _dump(
        {
            "aris_version": __version__,
            "input": str(input_path),
            "items": [e for e in entries if "error" not in e],
            "failures": failed,
        },
        out / MANIFEST,
    )
    prepared_n = len(entries) - len(failed)
    if prepared_n:
        table.title = f"prepared {prepared_n} of {len(items)} inputs into {escape(str(out))}"
        console.print(table)
    if failed:
        head = "nothing prepared: " if not prepared_n else ""
        err_console.print(f"[bold red]{head}{len(failed)} of {len(items)} inputs could not be read:[/]")
        for entry in failed:
            err_console.print(f"  {entry['error']}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2 if len(failed) == len(items) else 1)
