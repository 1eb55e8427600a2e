"""The repository carries its own samples: each documented, checksummed, and the generated ones rebuilt
byte for byte by the scripts in scripts/data/."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
DEMO = REPO / "src" / "aris" / "demo"


def _manifest_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "aris_sample_manifest", REPO / "scripts" / "data" / "manifest.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


manifest = _manifest_tool()


def _listed(md: Path) -> dict[str, str]:
    return {e.path: e.sha256 for e in manifest.checksums(md.read_text(encoding="utf-8"))}


@pytest.mark.parametrize("md", [DATA / "MANIFEST.md", DEMO / "README.md"], ids=["tests-data", "demo"])
def test_every_sample_is_documented_and_matches_its_checksum(md: Path) -> None:
    assert manifest.check(md) == []


def test_the_checker_names_a_changed_an_unlisted_and_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"one")
    (tmp_path / "b.bin").write_bytes(b"two")
    md = tmp_path / "MANIFEST.md"
    md.write_text("| file | what |\n|---|---|\n| `a.bin` | x |\n| `b.bin` | y |\n\n## Checksums\n```\n```\n")
    manifest.update(md)
    assert manifest.check(md) == []
    (tmp_path / "a.bin").write_bytes(b"ONE")  # same size, other bytes
    (tmp_path / "b.bin").unlink()
    (tmp_path / "c.bin").write_bytes(b"three")
    problems = manifest.check(md)
    assert "a.bin: SHA-256 differs from the manifest" in problems
    assert "b.bin: listed but missing" in problems
    assert "c.bin: no row in the table says where it came from" in problems
    assert "c.bin: not in the checksum list" in problems


def test_data_stays_small() -> None:
    total = manifest.total_bytes(DATA / "MANIFEST.md") + manifest.total_bytes(DEMO / "README.md")
    assert total < 25_000_000


def test_the_demo_copies_are_the_samples_themselves() -> None:
    data, demo = _listed(DATA / "MANIFEST.md"), _listed(DEMO / "README.md")
    assert demo["ct_small.dcm"] == data["dicom/ct/CT_small.dcm"]
    assert demo["cmu_small_region.svs"] == data["wsi/cmu_small_region.svs"]
    assert demo["synthetic_lab_report.pdf"] == data["lab/synthetic_lab_report.pdf"]
    assert demo["synthetic_patient_bundle_r4.json"] == data["fhir/synthetic_patient_bundle_r4.json"]


def _run(*args: str) -> None:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_generated_files_are_rebuilt_by_their_scripts(tmp_path: Path) -> None:
    """Pure-Python outputs come back byte for byte; codec outputs (JPEG in the TIFF, JPEG 2000 in the
    demo radiograph) come back with the same pixels, whatever codec build encodes them."""
    import numpy as np
    import pydicom
    import tifffile

    scripts = REPO / "scripts" / "data"
    _run(str(scripts / "make_fhir_bundle.py"), str(tmp_path))
    _run(str(scripts / "make_lab_report.py"), str(tmp_path))
    tiff = tmp_path / "wsi" / "cmu_small_region_pyramid.tiff"
    _run(str(scripts / "make_pyramid_tiff.py"), str(DATA / "wsi" / "cmu_small_region.svs"), str(tiff))
    chest = tmp_path / "chest_cr.dcm"
    _run(str(scripts / "make_demo_chest.py"), str(DATA / "dicom" / "cxr" / "RG1_UNCR.dcm"), str(chest))
    data = _listed(DATA / "MANIFEST.md")
    for rel in (
        "fhir/synthetic_patient_bundle_r4.json",
        "lab/synthetic_lab_report.pdf",
        "lab/synthetic_lab_report.truth.json",
    ):
        assert manifest.sha256(tmp_path / rel) == data[rel], rel

    with tifffile.TiffFile(tiff) as new, tifffile.TiffFile(DATA / "wsi" / tiff.name) as old:
        new_levels = [lv.asarray().astype(np.int16) for lv in new.series[0].levels]
        old_levels = [lv.asarray().astype(np.int16) for lv in old.series[0].levels]
    assert [a.shape for a in new_levels] == [a.shape for a in old_levels]
    for a, b in zip(new_levels, old_levels, strict=True):
        assert np.abs(a - b).mean() < 0.5  # JPEG q90 from the same pixels: at most rounding apart

    new_ds, old_ds = pydicom.dcmread(chest), pydicom.dcmread(DEMO / "chest_cr.dcm")
    assert np.array_equal(new_ds.pixel_array, old_ds.pixel_array)  # lossless
    del new_ds.PixelData, old_ds.PixelData
    assert new_ds == old_ds


def test_the_demo_radiograph_is_a_human_chest_with_synthetic_identity() -> None:
    import pydicom

    ds = pydicom.dcmread(DEMO / "chest_cr.dcm")
    source = pydicom.dcmread(DATA / "dicom" / "cxr" / "RG1_UNCR.dcm", stop_before_pixels=True)
    assert ds.BodyPartExamined == "CHEST"
    assert ds.Modality == "CR"
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert str(ds.PatientName) == "Demo^Chest"
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert max(ds.Rows, ds.Columns) == 1024
    assert ds.pixel_array.max() < 1 << 15


def test_nothing_reaches_outside_the_repository() -> None:
    # Built from pieces, so this file does not match itself.
    needles = ("../" + "shared", "/work" + "/", "shared" + "/data")
    hits = []
    tops = ("src", "tests", "scripts", "bench", ".ci")
    try:  # what is committed; build outputs (an egg-info copying an old README) are not the repository
        listed = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "--", *tops], capture_output=True, text=True, check=True
        ).stdout.split()
        files = [REPO / f for f in listed]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an sdist)
        files = [p for top in tops for p in (REPO / top).rglob("*")]
    for path in files:
        if not path.is_file() or path.suffix in (".dcm", ".svs", ".tiff", ".pdf", ".gz", ".nii", ".pyc"):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        hits += [f"{path.relative_to(REPO)}: {n}" for n in needles if n in text]
    assert hits == []
