"""Audio files into 16 kHz mono samples, through ``aris.inputs.read`` too; every bad file is one line."""

from __future__ import annotations

import hashlib
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aris.errors import InputError
from aris.inputs import read
from aris.speech.audio import load_audio, sniff_audio

from .conftest import _need


def sox_info(path: Path, flag: str) -> float:
    return float(
        subprocess.run([_need("soxi"), flag, str(path)], capture_output=True, text=True, check=True).stdout
    )


@pytest.mark.parametrize("name", ["short", "stereo", "ogg"])
def test_formats_and_rates_become_16k_mono(clips: dict[str, Path], name: str) -> None:
    path = clips[name]
    audio = load_audio(path)
    assert audio.samples.dtype == np.float32
    assert audio.samples.ndim == 1
    assert audio.source_rate == int(sox_info(path, "-r"))
    assert audio.channels == int(sox_info(path, "-c"))
    # Duration by sox, an independent reader; resampling keeps it to within a millisecond.
    assert audio.duration == pytest.approx(sox_info(path, "-D"), abs=2e-3)
    assert audio.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert 0.01 < float(np.abs(audio.samples).max()) <= 1.0


def test_resampled_speech_matches_sox_resampling(clips: dict[str, Path], tmp_path: Path) -> None:
    """soxr's 22.05 -> 16 kHz against sox's own: the same signal, not just the same length."""
    ref = tmp_path / "ref.wav"
    subprocess.run(
        [_need("sox"), str(clips["short"]), "-r", "16000", "-e", "float", "-b", "32", str(ref)], check=True
    )
    theirs, _ = sf.read(ref, dtype="float32")
    ours = load_audio(clips["short"]).samples
    n = min(len(ours), len(theirs))
    assert abs(len(ours) - len(theirs)) <= 2
    corr = np.corrcoef(ours[:n], theirs[:n])[0, 1]
    assert corr > 0.99


def test_read_detects_audio_and_keeps_samples_and_digest(clips: dict[str, Path]) -> None:
    prepared = read(clips["stereo"])
    assert prepared.kind == "audio"
    assert prepared.images == []
    assert prepared.parts == []
    details = prepared.provenance.details
    assert details["sha256"] == hashlib.sha256(clips["stereo"].read_bytes()).hexdigest()
    assert details["format"] == "flac"
    assert details["source_sample_rate"] == 44100
    assert details["channels"] == 2
    assert len(prepared.extra["audio"].samples) == pytest.approx(details["duration_s"] * 16000, abs=16)


def test_sniffing_by_content_not_name(clips: dict[str, Path], tmp_path: Path, samples) -> None:  # type: ignore[no-untyped-def]
    renamed = tmp_path / "dictation.dat"
    renamed.write_bytes(clips["ogg"].read_bytes())
    assert sniff_audio(renamed)
    assert read(renamed).kind == "audio"
    assert not sniff_audio(samples("dicom/cxr/RG1_UNCR.dcm"))
    assert read(samples("dicom/cxr/RG1_UNCR.dcm")).kind != "audio"


def one_line(e: pytest.ExceptionInfo[InputError], path: Path) -> str:
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(InputError) as e:
        load_audio(path)
    assert "empty" in one_line(e, path)


def test_corrupt_wav(tmp_path: Path, clips: dict[str, Path]) -> None:
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40)
    with pytest.raises(InputError) as e:
        read(path)
    assert "cannot read the wav audio" in one_line(e, path)
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(clips["stereo"].read_bytes()[:60])
    with pytest.raises(InputError) as e:
        load_audio(truncated)
    one_line(e, truncated)


def test_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("findings colon normal")
    with pytest.raises(InputError) as e:
        load_audio(path)
    assert "not an audio file" in one_line(e, path)


def test_rate_too_low_for_speech(tmp_path: Path) -> None:
    path = tmp_path / "phone.wav"
    sf.write(path, np.zeros(4000, dtype=np.float32), 4000)
    with pytest.raises(InputError) as e:
        load_audio(path)
    assert "sample rate 4000 Hz is too low" in one_line(e, path)


def flac_header(seconds: int, rate: int = 16000) -> bytes:
    """A FLAC file's first 42 bytes: ``fLaC`` and a STREAMINFO block saying how many samples follow."""
    info = struct.pack(">HH", 4096, 4096) + bytes(6)
    info += ((rate << 44) | (0 << 41) | (15 << 36) | (rate * seconds)).to_bytes(8, "big") + bytes(16)
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info


def test_hours_long_recording_is_refused_before_decoding(tmp_path: Path) -> None:
    """The header says two hours: refused at once, without decoding (this file holds no audio at all)."""
    path = tmp_path / "meeting.flac"
    path.write_bytes(flac_header(7200))
    with pytest.raises(InputError) as e:
        load_audio(path)
    assert "the recording is 2.0 h long; the limit is 1.0 h" in one_line(e, path)


def test_the_length_limit_is_a_setting(clips: dict[str, Path]) -> None:
    with pytest.raises(InputError) as e:
        read(clips["ogg"], max_seconds=1.5)  # Ogg: counted while decoding
    assert "long; the limit is 1.5 s (split it, or raise --asr-max-seconds)" in one_line(e, clips["ogg"])
    assert load_audio(clips["ogg"], max_seconds=3.0).duration < 3.0


def test_nan_samples(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    x = np.zeros(16000, dtype=np.float32)
    x[100] = np.nan
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(InputError) as e:
        load_audio(path)
    assert "invalid (NaN or infinite) samples" in one_line(e, path)


def test_silence_is_read_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16000, dtype=np.float32), 16000)
    assert read(path).provenance.warnings == ["the recording is silent"]


def test_other_formats_need_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An MP3 on a machine without ffmpeg: one line saying what to install or convert to."""
    path = tmp_path / "dictation.mp3"
    path.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + struct.pack(">I", 0) + b"\xff\xfb\x90\x00" * 64)
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg on this PATH
    assert sniff_audio(path)
    with pytest.raises(InputError) as e:
        read(path)
    assert "mp3 audio needs the ffmpeg program, which is not installed" in one_line(e, path)
