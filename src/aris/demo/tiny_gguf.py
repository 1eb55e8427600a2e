"""Turn the tiny Gemma 3 VLM into a GGUF + mmproj pair with llama.cpp's own converter.

The real llama.cpp vision path (libmtmd behind llama-cpp-python's ``MTMDChatHandler``) needs a
text GGUF and its projector GGUF; the only small Gemma 3 GGUF on PyPI is text-only. llama.cpp's
``convert_hf_to_gguf.py`` is not on PyPI either: it ships inside llama-cpp-python's source
tarball (``vendor/llama.cpp``), which ``scripts/install.sh`` downloads to build the wheel. The
converter, its ``conversion`` package and the ``gguf-py`` beside it are extracted into a cache
folder and run in a subprocess, so no llama.cpp code becomes part of Aris.

Two gaps between the checkpoint transformers 5 writes and what the converter expects are bridged
on a copy: vision weights are renamed ``vision_tower.*`` -> ``vision_tower.vision_model.*`` (the
long form real MedGemma checkpoints use), and a SentencePiece ``tokenizer.model`` is rebuilt from
the Gemma 3 270M GGUF's vocabulary (the converter reads Gemma's vocabulary only from that file).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aris.demo.tiny import TINY_VLM_NAME, _cache_root, build_tiny_vlm, gemma3_270m_gguf
from aris.errors import EngineError

logger = logging.getLogger(__name__)

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
TINY_GGUF_NAME = f"{TINY_VLM_NAME}-f32.gguf"
TINY_MMPROJ_NAME = f"mmproj-{TINY_VLM_NAME}-f32.gguf"
_BUILD_VERSION = "2"
USER_DEFINED = 4  # GGUF / SentencePiece token type
IMAGE_SOFT_TOKEN_ID = 262144  # MedGemma's <image_soft_token>; the text-only 270M vocabulary lacks it
_SDIST_NAME = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
_VENDOR = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
_CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def sdist_path() -> Path:
    """Where llama-cpp-python's source tarball is: ``ARIS_LLAMA_CPP_SDIST`` or the install script's cache."""
    env = os.environ.get("ARIS_LLAMA_CPP_SDIST")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / ".cache" / "sdist" / _SDIST_NAME


def converter_dir(home: Path | None = None) -> Path:
    """Folder holding llama.cpp's ``convert_hf_to_gguf.py``, extracted from the sdist once."""
    out = _cache_root(home) / f"llama-cpp-{LLAMA_CPP_PYTHON_VERSION}-converter"
    stamp = out / ".aris-extracted"
    if stamp.exists():
        return out
    tarball = sdist_path()
    if not tarball.is_file():
        raise EngineError(
            f"{tarball}: llama-cpp-python's source tarball is missing; it carries llama.cpp's "
            "HF-to-GGUF converter. scripts/install.sh downloads it (pip download --no-deps "
            f"--no-binary :all: llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} -d .cache/sdist); "
            "or point ARIS_LLAMA_CPP_SDIST at a copy"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent))
    with tarfile.open(tarball) as tar:
        members = []
        for member in tar:
            rel = member.name.removeprefix(_VENDOR)
            if (
                rel != member.name
                and rel.startswith(_CONVERTER_PARTS)
                and (member.isfile() or member.isdir())
            ):
                member.name = rel
                members.append(member)
        if not any(m.name == "convert_hf_to_gguf.py" for m in members):
            raise EngineError(f"{tarball}: no vendor/llama.cpp/convert_hf_to_gguf.py inside")
        tar.extractall(tmp, members=members, filter="data")
    (tmp / ".aris-extracted").write_text(LLAMA_CPP_PYTHON_VERSION)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def build_tiny_gguf(home: Path | None = None, *, force: bool = False) -> tuple[Path, Path]:
    """``(model.gguf, mmproj.gguf)`` of the tiny VLM in f32, converted once and cached beside it.

    f32 keeps the conversion lossless, so llama.cpp's greedy tokens can be checked against
    transformers' on the same weights.
    """
    vlm = build_tiny_vlm(home)
    return convert_vlm(vlm, vlm.parent / TINY_GGUF_NAME, vlm.parent / TINY_MMPROJ_NAME, home, force=force)


def convert_vlm(
    vlm: Path, model: Path, mmproj: Path, home: Path | None = None, *, force: bool = False
) -> tuple[Path, Path]:
    """A Gemma 3 VLM checkpoint with the tiny VLM's tokenizer -> ``(model, mmproj)`` GGUFs in f32.

    Cached: converted again only when the checkpoint's weights change.
    """
    stamp = model.parent / f".{model.name}.aris-build"
    # Tied to the checkpoint it came from: a rebuilt checkpoint means a new conversion.
    version = f"{_BUILD_VERSION}:{(vlm / 'model.safetensors').stat().st_mtime_ns}"
    if not force and stamp.exists() and stamp.read_text() == version and model.exists() and mmproj.exists():
        return model, mmproj

    t0 = time.perf_counter()
    convert = converter_dir(home) / "convert_hf_to_gguf.py"
    with tempfile.TemporaryDirectory(dir=model.parent) as tmp_name:
        tmp = Path(tmp_name)
        checkpoint = tmp / "hf"
        _prepare_checkpoint(vlm, checkpoint, gemma3_270m_gguf(home))
        _convert(convert, checkpoint, tmp / model.name)
        _convert(convert, checkpoint, tmp / mmproj.name, "--mmproj")
        (tmp / model.name).replace(model)
        (tmp / mmproj.name).replace(mmproj)
    stamp.write_text(version)
    logger.info("converted %s to GGUF + mmproj in %.1fs", vlm.name, time.perf_counter() - t0)
    return model, mmproj


def _prepare_checkpoint(vlm: Path, dst: Path, tokenizer_gguf: Path) -> None:
    """A copy of the tiny checkpoint in the layout the converter reads."""
    from safetensors.torch import load_file, save_file

    dst.mkdir(parents=True)
    for src in vlm.iterdir():
        if src.is_file() and src.suffix in (".json", ".jinja"):
            shutil.copy2(src, dst / src.name)
    tensors = load_file(vlm / "model.safetensors")
    renamed = {
        ("vision_tower.vision_model." + k.removeprefix("vision_tower.") if _short_vision_key(k) else k): v
        for k, v in tensors.items()
    }
    save_file(renamed, dst / "model.safetensors", metadata={"format": "pt"})
    vocab = GgufVocab.read(tokenizer_gguf)
    (dst / "tokenizer.model").write_bytes(vocab.sentencepiece_model())
    # The converter maps SentencePiece pieces to normal/control/unused/byte only; user-defined
    # tokens ("\n\n", space runs, <start_of_image>) keep their type only through
    # added_tokens_decoder, as in Google's own tokenizer_config.json. Without it llama.cpp would
    # split <start_of_image> into "<", "start", ... and tokenize differently from transformers.
    config_path = dst / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    decoder = {str(i): {"content": vocab.tokens[i], "special": False} for i in vocab.user_defined}
    decoder[str(IMAGE_SOFT_TOKEN_ID)] = {"content": "<image_soft_token>", "special": True}
    config["added_tokens_decoder"] = {**decoder, **config.get("added_tokens_decoder", {})}
    config_path.write_text(json.dumps(config, indent=2))


def _short_vision_key(key: str) -> bool:
    return key.startswith("vision_tower.") and not key.startswith("vision_tower.vision_model.")


@dataclass
class GgufVocab:
    """A llama-style (SentencePiece) vocabulary as a GGUF stores it."""

    tokens: list[str]
    scores: list[float]
    types: list[
        int
    ]  # SentencePiece's numbering: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
    special_ids: dict[str, int]

    @classmethod
    def read(cls, path: Path) -> GgufVocab:
        from gguf import GGUFReader

        fields = GGUFReader(path).fields  # parses every field in Python: ~20 s for 262k tokens
        if fields["tokenizer.ggml.model"].contents() != "llama":
            raise EngineError(f"{path}: not a SentencePiece (llama-style) vocabulary")
        return cls(
            tokens=list(fields["tokenizer.ggml.tokens"].contents()),
            scores=[float(s) for s in fields["tokenizer.ggml.scores"].contents()],
            types=[int(t) for t in fields["tokenizer.ggml.token_type"].contents()],
            special_ids={
                name: int(fields[f"tokenizer.ggml.{name}_token_id"].contents())
                for name in ("unknown", "bos", "eos", "padding")
            },
        )

    @property
    def user_defined(self) -> list[int]:
        return [i for i, t in enumerate(self.types) if t == USER_DEFINED]

    def sentencepiece_model(self) -> bytes:
        """The vocabulary as a serialized SentencePiece model (BPE with byte fallback, as Gemma's)."""
        from sentencepiece import sentencepiece_model_pb2

        sp: Any = sentencepiece_model_pb2  # generated protobuf code: mypy sees no attributes
        proto = sp.ModelProto()
        proto.trainer_spec.model_type = sp.TrainerSpec.BPE
        proto.trainer_spec.vocab_size = len(self.tokens)
        proto.trainer_spec.byte_fallback = True
        proto.trainer_spec.unk_id = self.special_ids["unknown"]
        proto.trainer_spec.bos_id = self.special_ids["bos"]
        proto.trainer_spec.eos_id = self.special_ids["eos"]
        proto.trainer_spec.pad_id = self.special_ids["padding"]
        proto.normalizer_spec.name = "identity"
        proto.normalizer_spec.add_dummy_prefix = False
        proto.normalizer_spec.remove_extra_whitespaces = False
        for token, score, kind in zip(self.tokens, self.scores, self.types, strict=True):
            piece = proto.pieces.add()
            piece.piece = token
            piece.score = score
            piece.type = kind
        return bytes(proto.SerializeToString())


def _convert(script: Path, checkpoint: Path, outfile: Path, *extra: str) -> None:
    """Run llama.cpp's converter with its own gguf-py first on the path, as llama.cpp does."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(script.parent / "gguf-py"), str(script.parent), env.get("PYTHONPATH")) if p
    )
    cmd = [
        sys.executable,
        str(script),
        str(checkpoint),
        "--outtype",
        "f32",
        "--outfile",
        str(outfile),
        *extra,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not outfile.exists():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise EngineError(
            f"llama.cpp's convert_hf_to_gguf.py failed ({' '.join(extra) or 'text model'}):\n{tail}"
        )
