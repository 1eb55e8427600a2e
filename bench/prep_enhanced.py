"""Enhanced multi-frame preparation against the careful script: bench/prep_ct.py with --enhanced.

One Enhanced CT Image Storage object of 340 JPEG 2000 frames (``--modality mri``: Enhanced MR).
Same flags as bench/prep_ct.py.

    python bench/prep_enhanced.py [--slices 340] [--modality ct|mri] [--native]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from prep_ct import main

if __name__ == "__main__":
    raise SystemExit(main(enhanced=True))
