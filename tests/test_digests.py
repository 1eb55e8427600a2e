"""Weight digests are cached, but never outlive the bytes they were taken of."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from aris.digests import file_digest


def test_other_bytes_of_the_same_size_and_mtime_get_their_own_digest(tmp_path: Path, aris_home: Path) -> None:
    # cp -p / rsync -a / tar -x put a retrained adapter of the same size in place with the old mtime
    weights = tmp_path / "adapter_model.safetensors"
    weights.write_bytes(b"A" * 4096)
    st = weights.stat()
    first = file_digest(weights)
    replacement = tmp_path / "new.safetensors"
    replacement.write_bytes(b"B" * 4096)
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
    replacement.replace(weights)
    assert weights.stat().st_size == st.st_size
    assert weights.stat().st_mtime_ns == st.st_mtime_ns
    assert file_digest(weights) == hashlib.sha256(b"B" * 4096).hexdigest() != first
