"""MRI preparation against the careful single-threaded script: bench/prep_ct.py with --modality mri.

MRI decodes every slice (min-max over the whole volume), so this measures the parallel decode of all
of them. Same flags as bench/prep_ct.py.

    python bench/prep_mri.py [--slices 340] [--size 512] [--native]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from prep_ct import main

if __name__ == "__main__":
    raise SystemExit(main(modality="mri"))
