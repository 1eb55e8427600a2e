"""MedASR's loading and transcription on a tiny random ``LasrForCTC`` saved to a folder and loaded back
through transformers' real path (``AutoConfig``/``AutoModelForCTC``/``AutoProcessor``), on espeak-ng clips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aris.config import ArisSettings
from aris.digests import folder_digest
from aris.errors import ConfigError, ModelNotFoundError
from aris.speech import Transcriber, load_transcriber
from aris.speech.audio import load_audio
from aris.speech.chunking import n_frames
from aris.speech.formatting import format_words


def test_loads_from_settings_and_matches_transformers_own_decoding(
    tiny_asr: Path, clips: dict[str, Path]
) -> None:
    """One window: our frames-to-words against transformers' ``generate`` + ``batch_decode``."""
    from transformers import AutoModelForCTC, AutoProcessor

    t = load_transcriber(ArisSettings(asr_model=str(tiny_asr), device="cpu"))
    assert isinstance(t, Transcriber)
    try:
        transcript = t.transcribe(clips["short"])
    finally:
        t.close()
    processor = AutoProcessor.from_pretrained(tiny_asr, local_files_only=True)
    model = AutoModelForCTC.from_pretrained(tiny_asr, local_files_only=True).eval()
    samples = load_audio(clips["short"]).samples
    ids = model.generate(**processor(samples, sampling_rate=16000, return_tensors="pt"))
    reference = processor.batch_decode(ids, skip_special_tokens=True)[0]
    assert transcript.raw_text
    assert transcript.raw_text == " ".join(reference.split())
    assert transcript.text == format_words(reference.split())
    assert transcript.decoder == "greedy"
    assert transcript.duration == pytest.approx(len(samples) / 16000, abs=1e-3)


def test_long_recording_in_windows(transcriber, clips: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    events = []
    transcript = transcriber.transcribe(clips["long"], on_progress=events.append)
    assert len(transcript.chunks) == 4
    assert [round(e.seconds_done, 1) for e in events] == [20.0, 36.0, 52.0, round(transcript.duration, 1)]
    assert [e.done for e in events] == [False, False, False, True]
    assert "".join(e.delta for e in events) == transcript.text
    assert transcript.text == format_words([w.text for w in transcript.words])
    starts = [w.start for w in transcript.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start < w.end <= transcript.duration + 0.05 for w in transcript.words)
    assert all(0 < w.confidence <= 1 for w in transcript.words)


def test_frame_arithmetic_matches_the_model(transcriber) -> None:  # type: ignore[no-untyped-def]
    geometry = {"hop": 160, "win": 400, "kernel": 5, "stride": 2}
    rng = np.random.default_rng(0)
    for n in (2320, 16000, 16000 * 7 + 123, 16000 * 20):
        assert transcriber.logprobs(rng.normal(0, 0.1, n).astype(np.float32)).shape[0] == n_frames(
            n, **geometry
        )
    assert transcriber.logprobs(np.zeros(100, np.float32)).shape[0] == 1  # padded to one frame


def test_identity_names_the_weights(transcriber, tiny_asr: Path) -> None:  # type: ignore[no-untyped-def]
    ident = transcriber.identity()
    assert ident["model"] == str(tiny_asr)
    assert ident["weights"] == folder_digest(tiny_asr)
    assert ident["lm"] is None
    assert ident["decoder"] == "greedy"
    assert (ident["chunk_s"], ident["stride_s"]) == (20.0, 2.0)


def test_medasr_absent_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFoundError) as e:
        load_transcriber(ArisSettings())
    message = str(e.value)
    assert message.startswith("ASR model 'google/medasr' is not on this machine")
    assert "`aris pull google/medasr`" in message
    assert "--asr-model" in message


def test_a_folder_of_another_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(ConfigError, match="not MedASR"):
        load_transcriber(ArisSettings(asr_model=str(tmp_path)))


def test_lm_auto_without_the_file(tiny_asr: Path) -> None:
    with pytest.raises(ConfigError, match=r"no lm_6\.kenlm beside the ASR model"):
        load_transcriber(ArisSettings(asr_model=str(tiny_asr), asr_lm="auto"))


def test_importing_the_package_loads_no_torch() -> None:
    code = "import sys, aris.speech, aris.speech.audio, aris.speech.formatting; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
