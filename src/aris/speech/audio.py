"""Audio files into what MedASR hears: 16 kHz mono float32 samples, plus the file's digest.

WAV, FLAC and Ogg (Vorbis/Opus) are read with soundfile (libsndfile) in blocks and resampled on the fly
with soxr, so a long recording at 48 kHz stereo never sits in memory at its own rate. Other formats
(MP3, M4A, WebM from a browser's recorder) go through the ``ffmpeg`` program when it is installed.
Every problem is one line naming the file: empty, not audio, too long, a rate too low for speech.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aris.errors import InputError

if TYPE_CHECKING:
    import numpy as np

    from aris.inputs.base import PreparedInput

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
MIN_RATE = 8_000  # below this the band MedASR listens to (125 Hz - 7.5 kHz) is mostly gone
MAX_SECONDS = 3600.0  # a dictation is minutes long; an hour-long file is a wrong file or a meeting
BLOCK = 1 << 16  # frames read at a time

# Magic bytes of what soundfile reads and of what ffmpeg can read.
_SNDFILE = ("wav", "flac", "ogg")


def sniff_format(head: bytes) -> str | None:
    """The container of an audio file from its first bytes, or None when it is not audio we know."""
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:3] == b"ID3" or (
        len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06
    ):
        return "mp3"
    if head[4:8] == b"ftyp" and head[8:11] in (b"M4A", b"M4B", b"mp4", b"iso", b"3gp", b"qt "):
        return "m4a"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:6] == b"#!AMR\n":
        return "amr"
    return None


def sniff_audio(path: Path) -> bool:
    """Whether ``path`` is an audio file (the ``audio`` reader's claim in :func:`aris.inputs.read`)."""
    if not path.is_file():
        return False
    with path.open("rb") as f:
        head = f.read(16)
    fmt = sniff_format(head)
    if fmt != "mp3":
        return fmt is not None
    # An MPEG frame sync is two bytes and could begin another binary file: trust the name too.
    return head[:3] == b"ID3" or path.suffix.lower() == ".mp3"


@dataclass
class Audio:
    """A recording as MedASR hears it, and what it was."""

    samples: np.ndarray  # float32, mono, SAMPLE_RATE
    sha256: str  # of the file's bytes
    source_rate: int
    channels: int
    format: str

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def load_audio(path: str | Path, *, max_seconds: float | None = None) -> Audio:
    """Read an audio file into 16 kHz mono float32 samples.

    Raises
    ------
    InputError
        Naming the file: empty, not audio, unreadable, longer than ``max_seconds`` (default one hour),
        a sample rate below 8 kHz, silence-free garbage (NaN samples), or a format that needs ffmpeg
        when ffmpeg is not installed.
    """
    path = Path(path)
    limit = MAX_SECONDS if max_seconds is None else float(max_seconds)
    if not path.is_file():
        raise InputError(path, "no such file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "the file is empty (0 bytes); nothing to transcribe")
    with path.open("rb") as f:
        head = f.read(16)
    fmt = sniff_format(head)
    if fmt is None:
        raise InputError(
            path, "not an audio file this reader knows (WAV, FLAC, Ogg; MP3, M4A, WebM with ffmpeg)"
        )
    digest = file_sha256(path)
    if fmt in _SNDFILE:
        samples, rate, channels = _read_sndfile(path, fmt, limit)
    else:
        samples, rate, channels = _read_ffmpeg(path, fmt, limit)
    if len(samples) == 0:
        raise InputError(path, f"the {fmt} file holds no audio samples")
    import numpy as np

    if not np.isfinite(samples).all():
        raise InputError(path, "the audio holds invalid (NaN or infinite) samples")
    logger.info(
        "audio %s: %s %d Hz x%d -> %.1fs at 16 kHz", digest[:12], fmt, rate, channels, len(samples) / 16000
    )
    return Audio(samples, digest, rate, channels, fmt)


def _check_rate(path: Path, rate: int) -> None:
    if rate < MIN_RATE:
        raise InputError(
            path, f"sample rate {rate} Hz is too low for speech recognition (at least {MIN_RATE} Hz needed)"
        )


def _check_length(path: Path, seconds: float, limit: float) -> None:
    if seconds > limit:
        raise InputError(
            path,
            f"the recording is {_span(seconds)} long; the limit is {_span(limit)} "
            "(split it, or raise --asr-max-seconds)",
        )


def _read_sndfile(path: Path, fmt: str, limit: float) -> tuple[np.ndarray, int, int]:
    import numpy as np
    import soundfile as sf
    import soxr

    try:
        with sf.SoundFile(str(path)) as f:
            rate, channels, frames = f.samplerate, f.channels, f.frames
            _check_rate(path, rate)
            if frames > 0:
                _check_length(path, frames / rate, limit)
            # Ogg streams may not know their length up front: count as we go.
            max_frames = int(limit * rate) + 1
            stream = (
                None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
            )
            parts: list[np.ndarray] = []
            read = 0
            while True:
                block = f.read(BLOCK, dtype="float32", always_2d=True)
                last = len(block) < BLOCK
                read += len(block)
                if read > max_frames:
                    _check_length(path, read / rate, limit)
                mono = block.mean(axis=1, dtype=np.float32) if channels > 1 else block[:, 0]
                parts.append(stream.resample_chunk(mono, last=last) if stream is not None else mono.copy())
                if last:
                    break
    except InputError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as e:
        raise InputError(path, f"cannot read the {fmt} audio: {_short(e)}") from None
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return samples.astype(np.float32, copy=False), rate, channels


def _read_ffmpeg(path: Path, fmt: str, limit: float) -> tuple[np.ndarray, int, int]:
    """Decode with the ffmpeg program straight to 16 kHz mono float32 (it resamples and downmixes)."""
    import numpy as np

    exe = shutil.which("ffmpeg")
    if exe is None:
        raise InputError(
            path,
            f"{fmt} audio needs the ffmpeg program, which is not installed (apt-get install ffmpeg, or "
            "convert the file to WAV or FLAC first)",
        )
    # One second past the limit tells "too long" from "exactly at the limit" without decoding hours.
    cmd = [exe, "-nostdin", "-v", "error", "-i", str(path), "-t", f"{limit + 1:.3f}"]
    cmd += ["-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False, timeout=max(120.0, limit / 4))
    except subprocess.TimeoutExpired:
        raise InputError(path, "ffmpeg took too long to decode the audio") from None
    if proc.returncode != 0:
        problem = proc.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(
            path, f"ffmpeg cannot decode the {fmt} audio: {problem[-1] if problem else 'unknown error'}"
        )
    samples = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    _check_length(path, len(samples) / SAMPLE_RATE, limit)
    return samples, SAMPLE_RATE, 1


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[-1] if text else type(e).__name__


def read_audio(path: Path | list[Path], *, max_seconds: float | None = None) -> PreparedInput:
    """The ``audio`` input kind: samples in ``extra``, the file's digest in the provenance, no images."""
    from aris.inputs.base import PreparedInput
    from aris.types import Provenance

    if isinstance(path, list):
        raise InputError(path[0] if path else None, "an audio input is one file, not a list of files")
    audio = load_audio(path, max_seconds=max_seconds)
    details: dict[str, Any] = {
        "format": audio.format,
        "duration_s": round(audio.duration, 3),
        "source_sample_rate": audio.source_rate,
        "channels": audio.channels,
        "sample_rate": SAMPLE_RATE,
        "sha256": audio.sha256,
    }
    warnings = []
    import numpy as np

    if float(np.abs(audio.samples).max(initial=0.0)) < 1e-4:
        warnings.append("the recording is silent")
    return PreparedInput(
        kind="audio",
        parts=[],
        provenance=Provenance(kind="audio", sources=[str(path)], details=details, warnings=warnings),
        extra={"audio": audio},
    )


def as_audio(source: Any, *, max_seconds: float | None = None) -> Audio:
    """What a transcriber accepts: an :class:`Audio`, a prepared ``audio`` input, a path, or samples.

    Bare samples must already be 16 kHz mono; their digest is computed from the float32 bytes.
    """
    import numpy as np

    from aris.inputs.base import PreparedInput

    if isinstance(source, Audio):
        return source
    if isinstance(source, PreparedInput):
        audio = source.extra.get("audio")
        if not isinstance(audio, Audio):
            src = source.provenance.sources[0] if source.provenance.sources else None
            raise InputError(src, f"read as {source.kind!r}, not as audio")
        return audio
    if isinstance(source, str | Path):
        return load_audio(source, max_seconds=max_seconds)
    if isinstance(source, np.ndarray):
        samples = np.asarray(source, dtype=np.float32)
        if samples.ndim != 1:
            raise InputError(None, f"samples must be mono (one dimension), not shape {samples.shape}")
        if len(samples) == 0:
            raise InputError(None, "no audio samples")
        return Audio(samples, hashlib.sha256(samples.tobytes()).hexdigest(), SAMPLE_RATE, 1, "samples")
    raise TypeError(f"cannot transcribe a {type(source).__name__}")
