"""Content digests of model files, cached by path and file status so a large checkpoint is hashed once.

Result keys must change when the weights do: a fine-tune saved over the same folder, an adapter
retrained in place, another quantization under the same file name. A name is not enough; the bytes are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

_LOCK = threading.Lock()
CHUNK = 8 << 20
# Files that decide what a model folder computes; logs, READMEs and training state do not.
MODEL_SUFFIXES = (".safetensors", ".bin", ".gguf", ".json", ".model", ".jinja", ".txt", ".pt")


def _cache_file() -> Path:
    from aris.config import ArisSettings

    return ArisSettings().home / "cache" / "digests.json"


def _load(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, remembered for as long as its inode, size, mtime and ctime stay.

    Not mtime alone: ``cp -p``, ``rsync -a`` and ``tar -x`` put other weights of the same size in place
    with the old mtime (a LoRA retrained in place has the same size). No tool can set the ctime.
    """
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"
    cache = _cache_file()
    with _LOCK:
        known = _load(cache).get(key)
    if known:
        return known
    h = hashlib.sha256()
    with p.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    logger.info("hashed a %d-byte model file", st.st_size)
    with _LOCK:
        data = _load(cache)
        data[key] = digest
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(cache)
    return digest


def folder_digest(path: str | os.PathLike[str]) -> str:
    """One digest for a model or adapter folder: its top-level weight, config and tokenizer files.

    Subfolders (training checkpoints, caches) are not what loading reads, so they do not count.
    """
    root = Path(path).resolve()
    if root.is_file():
        return file_digest(root)
    h = hashlib.sha256()
    for f in sorted(root.iterdir()):
        if f.is_file() and f.suffix in MODEL_SUFFIXES and not f.name.startswith("."):
            h.update(f"{f.name}\0{file_digest(f)}\n".encode())
    return h.hexdigest()
