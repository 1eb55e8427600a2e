"""Speech fixtures: a tiny random MedASR (``LasrForCTC``) saved and loaded through transformers, and
clips spoken by espeak-ng and converted with sox (Debian packages; ``scripts/test.sh`` installs them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

CHARS = "abcdefghijklmnopqrstuvwxyz'"
PHRASES = (
    "findings colon the lungs are clear period",
    "no pleural effusion comma no pneumothorax period",
    "new paragraph impression colon no acute findings period",
    "next line heart size is normal period",
)


def build_tiny_asr(root: Path) -> Path:
    """A tiny random MedASR: MedASR's architecture (Conformer + CTC head) at toy size, a character
    vocabulary laid out like MedASR's (``<pad>`` blank 0, ``</s>``, ``<unk>``, ``▁``, then pieces), and
    the real feature extractor (128 mel bins, 25 ms / 10 ms)."""
    folder = root / "tiny-lasr-ctc-v1"
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    from transformers import (
        LasrCTCConfig,
        LasrEncoderConfig,
        LasrFeatureExtractor,
        LasrForCTC,
        LasrProcessor,
        LasrTokenizer,
    )

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [(c, -3.0) for c in CHARS]
    tokenizer = LasrTokenizer(vocab=vocab, extra_ids=0)
    encoder = LasrEncoderConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        subsampling_conv_channels=16,
        conv_kernel_size=9,
    )
    torch.manual_seed(0)
    model = LasrForCTC(LasrCTCConfig(vocab_size=len(tokenizer), encoder_config=encoder.to_dict()))
    with torch.no_grad():  # a wide head so the most likely token changes from frame to frame
        model.ctc_head.weight.normal_(0.0, 2.0)
    tmp = root / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    LasrProcessor(LasrFeatureExtractor(), tokenizer).save_pretrained(tmp)
    tmp.rename(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_asr(test_cache: Path) -> Path:
    return build_tiny_asr(test_cache)


@pytest.fixture(scope="session")
def transcriber(tiny_asr: Path):  # type: ignore[no-untyped-def]
    from aris.speech.model import MedAsrTranscriber

    t = MedAsrTranscriber(str(tiny_asr), device="cpu")
    yield t
    t.close()


@pytest.fixture(scope="session")
def heard(transcriber, clips: dict[str, Path]):  # type: ignore[no-untyped-def]
    """What the tiny model hears in a clip, by name: computed once a session (the reference the CLI,
    server and task results are compared with)."""
    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            cache[name] = transcriber.transcribe(clips[name])
        return cache[name]

    return get


def _need(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        pytest.fail(f"{tool} is not installed (Debian package; bash scripts/test.sh installs it)")
    return exe


def speak(text: str, out: Path, *options: str, effects: tuple[str, ...] = ()) -> Path:
    """``text`` spoken by espeak-ng (22.05 kHz mono WAV), converted by sox to ``out`` with output
    ``options`` (e.g. ``-r 44100 -c 2``) and ``effects`` (``pad 0 1.5``); the format follows the suffix."""
    raw = out.with_name(out.stem + ".espeak.wav")
    subprocess.run([_need("espeak-ng"), "-v", "en-us", "-s", "165", "-w", str(raw), text], check=True)
    subprocess.run([_need("sox"), str(raw), *options, str(out), *effects], check=True)
    return out


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Spoken clips: ``short`` (WAV as espeak writes it, 22.05 kHz), ``stereo`` (FLAC 44.1 kHz stereo),
    ``ogg`` (Vorbis 48 kHz), ``long`` (the phrases with pauses, about 55 s: four MedASR windows)."""
    d = tmp_path_factory.mktemp("clips")
    out = {
        "short": speak(PHRASES[0], d / "short.wav"),
        "stereo": speak(PHRASES[1], d / "stereo.flac", "-r", "44100", "-c", "2"),
        "ogg": speak(PHRASES[3], d / "clip.ogg", "-r", "48000"),
    }
    parts = [
        speak(p, d / f"part{i}.wav", "-r", "16000", effects=("pad", "0", "1.5"))
        for i, p in enumerate(PHRASES)
    ]
    # Three rounds of the four phrases: past two window boundaries (16 s and 32 s).
    subprocess.run([_need("sox"), *map(str, parts * 3), str(d / "long.wav")], check=True)
    out["long"] = d / "long.wav"
    return out
