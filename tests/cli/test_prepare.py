"""``aris prepare`` writes exactly the images read() gives, a contact sheet and a manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from aris.cli import app
from aris.cli.prepare import write_prepared
from aris.inputs import estimate_tokens, read
from aris.inputs.sheet import CELL, GAP, LABEL_H, contact_sheet_array

runner = CliRunner()


def prepare(*args: str | Path) -> Any:
    return runner.invoke(app, ["prepare", *map(str, args)])


def check_written(out: Path, prepared: Any) -> dict[str, Any]:
    """PNG count = image count, PNG pixels = the prepared images exactly, manifest consistent."""
    manifest = json.loads((out / "manifest.json").read_text())
    pngs = sorted(p.name for p in out.glob("[0-9][0-9][0-9][0-9].png"))
    assert pngs == [f"{i:04d}.png" for i in range(1, len(prepared.images) + 1)]
    for name, img in zip(pngs, prepared.images, strict=True):
        with Image.open(out / name) as png:
            assert png.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(png), np.asarray(img.convert("RGB")))
    assert manifest["kind"] == prepared.kind
    assert manifest["labels"] == prepared.labels
    assert [i["file"] for i in manifest["images"]] == pngs
    assert manifest["tokens"] == estimate_tokens(prepared)
    assert manifest["warnings"] == prepared.provenance.warnings
    assert len([o for o in manifest["model_order"] if "image" in o]) == len(pngs)
    if prepared.arrays:
        with Image.open(out / "contact_sheet.png") as sheet:
            np.testing.assert_array_equal(np.asarray(sheet), contact_sheet_array(prepared))
    return manifest


@pytest.mark.parametrize(
    ("rel", "args"),
    [
        ("dicom/cxr/highdicom_dx_image.dcm", []),
        ("dicom/ct_series/head_ct2_4slices", ["--kind", "ct"]),
        ("dicom/mr_series/mra_mr700_7slices", []),
        ("nifti/anatomical.nii", ["--kind", "mri"]),
        ("wsi/cmu_small_region_pyramid.tiff", ["--magnification", "20X"]),
        ("lab/synthetic_lab_report.pdf", ["--kind", "pdf"]),
    ],
)
def test_prepare_every_image_kind(samples, tmp_path: Path, rel: str, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    src = samples(rel)
    out = tmp_path / "out"
    result = prepare(src, "--out", out, *args)
    assert result.exit_code == 0, result.output
    opts = {"magnification": "20X"} if "--magnification" in args else {}
    kind = args[args.index("--kind") + 1] if "--kind" in args else "auto"
    prepared = read(src, kind, **opts)
    manifest = check_written(out, prepared)
    assert manifest["input"] == str(src)
    if prepared.kind in ("ct", "mri"):
        assert next(o for o in manifest["model_order"] if "text" in o) == {"text": "SLICE 1"}
    if prepared.kind == "pdf":
        assert (out / "context.txt").read_text() == prepared.text + "\n"
    assert prepared.kind in result.output


def test_prepare_fhir_writes_context_and_manifest(samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = samples("fhir/synthetic_patient_bundle_r4.json")
    out = tmp_path / "out"
    result = prepare(src, "--out", out)
    assert result.exit_code == 0, result.output
    prepared = read(src)
    assert (out / "context.txt").read_text() == prepared.text + "\n"
    manifest = check_written(out, prepared)
    assert manifest["record"]["resource_types"]["Observation"]["count"] == 56
    assert not (out / "contact_sheet.png").exists()
    assert not list(out.glob("*.png"))


def test_contact_sheet_grid_and_labels(samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    assert prepare(samples("dicom/ct_series/head_ct2_4slices"), "--out", out).exit_code == 0
    with Image.open(out / "contact_sheet.png") as sheet:
        arr = np.asarray(sheet.convert("RGB"))
    # 4 slices -> a 2x2 grid of 256 px cells with a label strip under each
    assert arr.shape == (2 * (CELL + LABEL_H) + 3 * GAP, 2 * CELL + 3 * GAP, 3)
    strip = arr[GAP + CELL : GAP + CELL + LABEL_H, GAP : GAP + CELL]
    assert (strip > 200).any()  # the label "SLICE 1" is drawn in light text on the dark strip
    empty_strip = arr[GAP + CELL : GAP + CELL + LABEL_H, GAP + 100 : GAP + CELL]
    assert not (empty_strip > 200).any()  # ...and only at its start


def test_options_pad_square_and_series(samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pydicom

    src = samples("dicom/cxr/highdicom_dx_image.dcm")
    result = prepare(src, "--out", tmp_path / "sq", "--pad-square")
    assert result.exit_code == 0, result.output
    manifest = check_written(tmp_path / "sq", read(src, pad_square=True))
    assert manifest["padding"]["size"] == max(manifest["padding"]["width"], manifest["padding"]["height"])
    folder = samples("dicom/ct_series")
    uid = pydicom.dcmread(
        next((folder / "head_ct2_4slices").iterdir()), stop_before_pixels=True
    ).SeriesInstanceUID
    result = prepare(folder, "--out", tmp_path / "series", "--series", uid)
    assert result.exit_code == 0, result.output
    check_written(tmp_path / "series", read(folder, series_uid=uid))


def test_folder_of_files_continues_past_bad_ones(samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "inbox"
    folder.mkdir()
    shutil.copy(samples("dicom/cxr/highdicom_dx_image.dcm"), folder / "a_chest.dcm")
    (folder / "b_empty.dcm").write_bytes(b"")
    shutil.copy(samples("lab/synthetic_lab_report.pdf"), folder / "c_labs.pdf")
    (folder / "d_junk.txt").write_text("hello")
    out = tmp_path / "out"
    result = prepare(folder, "--out", out)
    assert result.exit_code == 1, result.output  # some failed
    manifest = json.loads((out / "manifest.json").read_text())
    assert [i["dir"] for i in manifest["items"]] == ["001_a_chest", "003_c_labs"]
    assert [i["kind"] for i in manifest["items"]] == ["cxr", "pdf"]
    assert [f["source"] for f in manifest["failures"]] == [
        str(folder / "b_empty.dcm"),
        str(folder / "d_junk.txt"),
    ]
    assert "empty file" in manifest["failures"][0]["error"]
    check_written(out / "001_a_chest", read(folder / "a_chest.dcm"))
    check_written(out / "003_c_labs", read(folder / "c_labs.pdf"))
    assert "b_empty.dcm" in result.output
    assert "2 of 4 inputs could not be read" in result.output


def test_bad_input_exits_nonzero_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.7 nothing")
    result = prepare(bad, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "broken.pdf" in result.output
    assert "not a readable PDF" in result.output
    assert prepare(tmp_path / "missing.dcm", "--out", tmp_path / "o2").exit_code == 2
    assert prepare(bad, "--out", tmp_path / "o3", "--kind", "xray").exit_code == 2


def test_out_must_be_empty_unless_force_which_replaces_only_our_files(samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    assert prepare(samples("dicom/ct_series/head_ct2_4slices"), "--out", out).exit_code == 0
    (out / "notes.txt").write_text("mine")
    result = prepare(samples("dicom/cxr/highdicom_dx_image.dcm"), "--out", out)
    assert result.exit_code == 2
    assert "--force" in result.output
    result = prepare(samples("dicom/cxr/highdicom_dx_image.dcm"), "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.png")) == ["0001.png", "contact_sheet.png"]  # stale slices gone
    assert (out / "notes.txt").read_text() == "mine"


def test_empty_folder_is_an_error_not_zero_inputs(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = prepare(tmp_path / "empty", "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "empty folder, nothing to prepare" in result.output
    assert "prepared 0" not in result.output


def test_folder_where_every_file_fails_says_nothing_was_prepared(tmp_path: Path) -> None:
    src = tmp_path / "bad"
    src.mkdir()
    (src / "a.dcm").write_bytes(b"")
    (src / "b.txt").write_text("hello\n")
    (src / "c.pdf").write_bytes(b"%PDF-1.4\n%broken")
    result = prepare(src, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "prepared 3" not in result.output
    assert "nothing prepared: 3 of 3 inputs could not be read" in result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["items"] == []
    assert sorted(Path(f["source"]).name for f in manifest["failures"]) == ["a.dcm", "b.txt", "c.pdf"]


def test_series_manifest_lists_every_skipped_file(samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "series"
    shutil.copytree(samples("dicom/ct_series/head_ct2_4slices"), src)
    for i in range(12):
        (src / f"z{i:02d}.txt").write_text("not a slice\n" * 20)
    result = prepare(src, "--out", tmp_path / "out", "--kind", "ct")
    assert result.exit_code == 0, result.output
    details = json.loads((tmp_path / "out" / "manifest.json").read_text())["details"]
    assert [s["file"] for s in details["skipped"]] == [f"z{i:02d}.txt" for i in range(12)]
    assert all(s["reason"] for s in details["skipped"])


def test_writing_lets_each_image_go_and_keeps_the_text(samples, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """write_prepared consumes the images (a volume is not held as slices and a sheet at once)."""
    src = samples("dicom/ct_series/head_ct2_4slices")
    prepared = read(src, "ct")
    texts = [p for p in prepared.parts if not hasattr(p, "pixels")]
    manifest = write_prepared(prepared, tmp_path / "out", src)
    assert prepared.arrays == []
    assert prepared.parts == texts
    assert manifest["tokens"] == estimate_tokens(read(src, "ct"))
    check_written(tmp_path / "out", read(src, "ct"))


def test_images_written_before_and_alongside_the_sheet_are_all_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enough large images that some are written while the slices are thumbnailed and the rest alongside
    the sheet's encoding (two threads): every PNG and the sheet still match the input."""
    from aris.cli.prepare import _held_back
    from aris.inputs.base import PreparedInput
    from aris.types import ImagePart, Provenance, TextPart

    monkeypatch.setenv("ARIS_THREADS", "2")
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (512, 384, 3), dtype=np.uint8) for _ in range(30)]

    def made() -> PreparedInput:
        parts: list[Any] = []
        for i, a in enumerate(arrays, 1):
            parts += [ImagePart(a, label=f"SLICE {i}"), TextPart(f"SLICE {i}")]
        return PreparedInput("ct", parts, Provenance("ct", ["synthetic"]))

    held = _held_back([a.shape[0] * a.shape[1] for a in arrays])
    assert 0 < held < len(arrays)
    prepared = made()
    write_prepared(prepared, tmp_path / "out", tmp_path / "in")
    assert prepared.arrays == []
    check_written(tmp_path / "out", made())
