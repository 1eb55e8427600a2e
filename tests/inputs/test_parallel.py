"""Decoding on every core: the GIL-free JPEG 2000 path equals pydicom's, slices go to several threads,
the result does not depend on the thread count, and reading a series imports only its reader (issue 17)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels.decoders.base import get_decoder

from aris.inputs import dicom, read
from aris.inputs.parallel import pmap, workers
from aris.inputs.series import read_series
from aris.inputs.volume import window_ct

REPO = Path(__file__).resolve().parents[2]


def _pydicom_frames(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    arr, _ = get_decoder(ds.file_meta.TransferSyntaxUID).as_array(ds)
    return arr


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_jp2klossless.dcm",
        "MR2_J2KR.dcm",
        "693_J2KR.dcm",
        "RG1_J2KR.dcm",
        "J2K_pixelrep_mismatch.dcm",
    ],
)
def test_lossless_j2k_decode_equals_pydicoms(name: str) -> None:
    path = get_testdata_file(name, download=False)
    if path is None:  # 693_J2KR and RG1_J2KR come with pydicom-data (a dev dependency)
        pytest.skip(f"{name} needs pydicom-data")
    ds = dicom.read_header(path)
    assert np.array_equal(dicom.decode(ds, path), _pydicom_frames(Path(str(path))))


def test_the_fast_path_declines_what_pydicom_must_correct() -> None:
    # The codestream is unsigned while the header says signed: pydicom reinterprets it, so imagecodecs
    # must not be trusted with it.
    path = get_testdata_file("J2K_pixelrep_mismatch.dcm", download=False)
    ds = pydicom.dcmread(path)
    assert dicom._j2k_frame(ds, None) is None
    ok = get_testdata_file("MR_small_jp2klossless.dcm", download=False)
    assert dicom._j2k_frame(pydicom.dcmread(ok), None) is not None


def test_enhanced_j2k_frames_decode_one_by_one(samples: Any) -> None:
    path = samples("dicom/compressed/emri_small_jpeg_2k_lossless.dcm")
    ds = dicom.read_header(path)
    whole = _pydicom_frames(path)
    assert dicom.j2k_frames_from_file(ds)
    for i in range(whole.shape[0]):
        assert np.array_equal(dicom.decode(ds, path, i), whole[i])
    # each frame's fragments were read from the file: the whole pixel data never was
    assert ds.get_item("PixelData", keep_deferred=True).value is None
    loaded = pydicom.dcmread(path)
    assert not dicom.j2k_frames_from_file(loaded)
    for i in range(whole.shape[0]):
        assert np.array_equal(dicom.decode(loaded, path, i), whole[i])


def test_pmap_keeps_order_and_raises_the_first_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARIS_THREADS", "3")
    assert workers(100) == min(3, len(__import__("os").sched_getaffinity(0)))
    assert pmap(lambda x: x * x, range(50)) == [x * x for x in range(50)]

    def boom(x: int) -> int:
        if x == 7:
            raise ValueError("seven")
        return x

    with pytest.raises(ValueError, match="seven"):
        pmap(boom, range(20))
    monkeypatch.setenv("ARIS_THREADS", "1")
    assert workers(100) == 1


def test_series_slices_decode_on_several_threads_with_the_same_result(
    mv: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = mv.make_series(tmp_path, mv.SeriesSpec(n_slices=12, size=32, compression="j2k"))
    seen: list[str] = []
    real = dicom.decode_j2k_grey
    started = threading.Barrier(2, timeout=10)

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread().name)
        if len(seen) <= 2:
            started.wait()  # the first two slices are in flight together: two threads at once
        return real(*args, **kwargs)

    monkeypatch.setattr(dicom, "decode_j2k_grey", recording)
    monkeypatch.setenv("ARIS_THREADS", "2")
    parallel = read_series(tmp_path)
    assert len(seen) == 12  # every slice took the GIL-free path
    assert len(set(seen)) == 2
    monkeypatch.setenv("ARIS_THREADS", "1")
    serial = read_series(tmp_path)
    for k, (a, b) in enumerate(zip(parallel.images, serial.images, strict=True)):
        assert a.tobytes() == b.tobytes()
        assert np.array_equal(np.asarray(a), window_ct(built.hu(k)))


def test_enhanced_j2k_object_reads_like_its_truth(mv: Any, tmp_path: Path) -> None:
    built = mv.make_enhanced(tmp_path, mv.SeriesSpec(n_slices=9, size=32, compression="j2k"))
    prepared = read(built.files[0])
    assert prepared.kind == "ct"
    for k, img in enumerate(prepared.images):
        assert np.array_equal(np.asarray(img), window_ct(built.hu(k))), k


def test_reading_a_series_imports_only_its_reader(build: Any) -> None:
    series = build("imports", n_slices=6)
    code = (
        "import sys; from aris.inputs import read; "
        f"read({str(series.folder)!r}, kind='ct', series_uid=None); "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('aris', 'aris_')))))"
    )
    env = {"PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert "aris.inputs.series" in out
    for other in (
        "aris.inputs.wsi",
        "aris.inputs.pdf",
        "aris.inputs.fhir",
        "aris.inputs.nifti",
        "aris.tasks",
    ):
        assert other not in out
    assert not [m for m in out if m.startswith("aris_")]  # no plugin module imported to check options
