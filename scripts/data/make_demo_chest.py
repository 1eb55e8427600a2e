#!/usr/bin/env python3
"""Build the chest radiograph ``aris demo`` bundles from NEMA WG04's RG1 chest CR.

Input : tests/data/dicom/cxr/RG1_UNCR.dcm (pydicom-data 1.0.0, MIT; NEMA WG04 compression test set):
        a PA chest CR, 1955x1841, MONOCHROME1, 15 bits stored, header window 15000/30000.
Output: src/aris/demo/chest_cr.dcm: the same radiograph downsampled to 1024 px on the long side
        (Lanczos, on the stored values), stored as JPEG 2000 lossless (pylibjpeg-openjpeg).
        MONOCHROME1, the 15-bit range and the header window are kept, so the chest X-ray recipe
        (Modality LUT, VOI window, MONOCHROME1 inversion, 8-bit RGB) has real work to do.
        Identifying attributes are replaced with obviously synthetic values; UIDs are new and fixed
        (pydicom's root, fixed entropy), so the output is the same bytes on every run.

Usage: python scripts/data/make_demo_chest.py [SRC.dcm] [OUT.dcm]
Needs: pydicom>=3, numpy, pillow, pylibjpeg-openjpeg (JPEG 2000 encoder).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless, generate_uid

REPO = Path(__file__).resolve().parents[2]
SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "tests" / "data" / "dicom" / "cxr" / "RG1_UNCR.dcm"
OUT = Path(sys.argv[2]) if len(sys.argv) > 2 else REPO / "src" / "aris" / "demo" / "chest_cr.dcm"
LONG_SIDE = 1024
UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's root: demo data, not a patient


def _uid(what: str) -> str:
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=["aris-demo-chest-cr", what])


def main() -> None:
    ds = pydicom.dcmread(SRC)
    stored = ds.pixel_array
    rows, cols = stored.shape
    scale = LONG_SIDE / max(rows, cols)
    size = (round(cols * scale), round(rows * scale))
    small = Image.fromarray(stored.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
    top = (1 << int(ds.BitsStored)) - 1
    pixels = np.clip(np.rint(np.asarray(small)), 0, top).astype(np.uint16)

    source = Dataset()
    source.ReferencedSOPClassUID = ds.SOPClassUID
    source.ReferencedSOPInstanceUID = ds.SOPInstanceUID

    for keyword in (
        "OtherPatientIDs",
        "InstitutionName",
        "InstitutionalDepartmentName",
        "StationName",
        "DeviceSerialNumber",
        "PixelSpacing",  # 0\0 in the source: no spacing is known
        "InstanceCreatorUID",
    ):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PatientName = "Demo^Chest"
    ds.PatientID = "ARIS-DEMO-CXR"
    ds.PatientBirthDate = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = "DEMO"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.StudyInstanceUID = _uid("study")
    ds.SeriesInstanceUID = _uid("series")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid("instance")
    ds.SourceImageSequence = Sequence([source])
    ds.DerivationDescription = (
        f"NEMA WG04 RG1 chest CR downsampled from {cols}x{rows} to {size[0]}x{size[1]} (Lanczos); "
        "JPEG 2000 lossless"
    )
    ds.ImageComments = "Aris demo image (NEMA WG04 RG1 test radiograph). Not for clinical use."
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.Rows, ds.Columns = pixels.shape
    ds.compress(JPEG2000Lossless, pixels, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(OUT, enforce_file_format=True)
    print(OUT, f"{ds.Columns}x{ds.Rows}", OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
