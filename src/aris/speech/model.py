"""MedASR on transformers: ``LasrForCTC`` and ``LasrProcessor`` loaded from this machine only.

The model is found the way the MedGemma engines find theirs (a local folder, ``$ARIS_HOME/models``
where ``aris pull`` puts it, or the Hugging Face cache) and never downloaded here. A recording is cut
into Google's 20 s windows with 2 s of context each side (:mod:`aris.speech.chunking`), each window is
one forward pass, and its frames are decoded greedily or by beam search with the KenLM model
(:mod:`aris.speech.lm`).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from aris.errors import ConfigError, ModelNotFoundError
from aris.notice import HAI_DEF_TERMS
from aris.speech.audio import SAMPLE_RATE, as_audio
from aris.speech.chunking import (
    CHUNK_S,
    STRIDE_S,
    FrameClock,
    TokenSpan,
    greedy_spans,
    min_samples,
    plan_windows,
    transcribe_windows,
)
from aris.speech.lm import BEAM_WIDTH, LM_FILE, LmDecoder
from aris.speech.types import Progress, Transcript

logger = logging.getLogger(__name__)

MEDASR = "google/medasr"


def not_found(model: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"ASR model {model!r} is not on this machine and Aris never downloads silently. Get it with "
        f"`aris pull {model}` (needs network and a Hugging Face token, HF_TOKEN, after accepting the terms "
        f"on the model's page), or pass a local MedASR folder with --asr-model. {HAI_DEF_TERMS}"
    )


def resolve_asr_model(model: str) -> Path:
    """The folder holding ``model`` on this machine (folder, ``aris pull`` target or HF cache)."""
    from aris.engines.transformers import resolve_model

    try:
        return resolve_model(model)
    except ModelNotFoundError:
        if Path(model).expanduser().exists():
            raise
        raise not_found(model) from None


def resolve_lm(lm: str | None, folder: Path) -> Path | None:
    """``None``: greedy. ``"auto"``: ``lm_6.kenlm`` beside the weights. Otherwise a KenLM file."""
    if lm is None or lm == "" or lm.lower() == "none":
        return None
    if lm.lower() == "auto":
        path = folder / LM_FILE
        if not path.is_file():
            raise ConfigError(
                f"--asr-lm auto: no {LM_FILE} beside the ASR model (google/medasr ships one; "
                "`aris pull google/medasr` fetches it), or pass a KenLM file"
            )
        return path
    path = Path(lm).expanduser()
    if not path.is_file():
        raise ConfigError(f"{lm}: no such language model file (a KenLM .kenlm/.arpa/.bin file)")
    return path


def _device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class MedAsrTranscriber:
    """A loaded MedASR model: ``transcribe(audio) -> Transcript``; see :class:`aris.speech.Transcriber`."""

    def __init__(
        self,
        model: str = MEDASR,
        *,
        lm: str | None = None,
        beam_width: int = BEAM_WIDTH,
        device: str = "auto",
        chunk_s: float = CHUNK_S,
        stride_s: float = STRIDE_S,
        max_seconds: float | None = None,
    ) -> None:
        if chunk_s <= 2 * stride_s:
            raise ConfigError(f"chunk length {chunk_s} s must exceed twice the stride {stride_s} s")
        self.model_id = model
        self.folder = resolve_asr_model(model)
        self.lm_path = resolve_lm(lm, self.folder)
        self.beam_width = beam_width
        self.chunk_s, self.stride_s = chunk_s, stride_s
        self.max_seconds = max_seconds
        self.device = _device(device)
        t0 = time.perf_counter()
        import torch
        from transformers import AutoConfig, AutoModelForCTC, AutoProcessor

        config = AutoConfig.from_pretrained(self.folder, local_files_only=True)
        if getattr(config, "model_type", None) != "lasr_ctc":
            raise ConfigError(
                f"{model}: a {getattr(config, 'model_type', 'unknown')!r} model, not MedASR "
                "(transformers LasrForCTC, model_type lasr_ctc)"
            )
        try:
            self.processor = AutoProcessor.from_pretrained(self.folder, local_files_only=True)
            self.model = AutoModelForCTC.from_pretrained(self.folder, local_files_only=True)
        except OSError as e:
            raise ModelNotFoundError(f"{model}: the model folder is incomplete: {e}") from None
        self.model.to(self.device).eval()
        self._torch = torch
        self._lock = threading.Lock()
        fe = self.processor.feature_extractor
        enc = config.encoder_config
        geometry = {
            "hop": fe.hop_length,
            "win": fe.win_length,
            "kernel": enc.subsampling_conv_kernel_size,
            "stride": enc.subsampling_conv_stride,
        }
        self.clock = FrameClock.for_model(sample_rate=fe.sampling_rate, **geometry)
        self._min_samples = min_samples(**geometry)
        tokenizer = self.processor.tokenizer
        vocab = int(config.vocab_size)
        tokens = tokenizer.convert_ids_to_tokens(list(range(vocab)))
        self.pieces = [t if t is not None else f"<id_{i}>" for i, t in enumerate(tokens)]
        self.blank = int(config.pad_token_id or 0)
        self._decode: Callable[[np.ndarray], list[TokenSpan]] = self._greedy
        if self.lm_path is not None:
            self._decode = LmDecoder(self.pieces, self.lm_path, beam_width=beam_width, blank=self.blank)
        logger.info(
            "MedASR loaded: %d parameters, vocab %d, %s, %s decoding, %.1fs",
            sum(p.numel() for p in self.model.parameters()),
            vocab,
            self.device,
            self.decoder,
            time.perf_counter() - t0,
        )

    @classmethod
    def from_settings(cls, settings: Any) -> MedAsrTranscriber:
        return cls(
            settings.asr_model,
            lm=settings.asr_lm,
            beam_width=settings.asr_beam_width,
            device=settings.device,
            max_seconds=settings.asr_max_seconds,
        )

    @property
    def decoder(self) -> str:
        return "greedy" if self.lm_path is None else "beam+lm"

    def _greedy(self, logprobs: np.ndarray) -> list[TokenSpan]:
        return greedy_spans(logprobs, self.pieces, self.blank)

    def logprobs(self, samples: np.ndarray) -> np.ndarray:
        """Per-frame log-probabilities ``(frames, vocab)`` of one window of 16 kHz samples."""
        if len(samples) < self._min_samples:  # too short for one frame: silence after it changes nothing
            samples = np.pad(samples, (0, self._min_samples - len(samples)))
        fe = self.processor.feature_extractor
        feats = fe([samples], sampling_rate=SAMPLE_RATE, return_tensors="pt")
        torch = self._torch
        with self._lock, torch.inference_mode():
            logits = self.model(input_features=feats["input_features"].to(self.device)).logits[0]
            out: np.ndarray = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
        return out

    def transcribe(self, audio: Any, on_progress: Callable[[Progress], None] | None = None) -> Transcript:
        """Transcribe a recording (path, :class:`~aris.speech.audio.Audio`, prepared input or samples).

        ``on_progress`` gets a :class:`~aris.speech.types.Progress` after each 20 s window; its ``delta``
        pieces add up to the final text. It may raise to stop (a cancelled request).
        """
        a = as_audio(audio, max_seconds=self.max_seconds)
        samples = a.samples
        t0 = time.perf_counter()
        windows = plan_windows(len(samples), SAMPLE_RATE, self.chunk_s, self.stride_s)
        words, chunks, text = transcribe_windows(
            len(samples),
            windows,
            lambda w: self.logprobs(samples[w.start : w.end]),
            self._decode,
            self.clock,
            on_progress,
        )
        elapsed = time.perf_counter() - t0
        logger.info(
            "transcribed %.1fs of audio (%s) in %d window(s), %d words, %.2fs (RTF %.3f)",
            a.duration,
            a.sha256[:12],
            len(windows),
            len(words),
            elapsed,
            elapsed / max(a.duration, 1e-9),
        )
        return Transcript(
            text=text,
            raw_text=" ".join(w.text for w in words),
            words=words,
            chunks=chunks,
            duration=round(a.duration, 3),
            decoder=self.decoder,
            model={"id": self.model_id, "decoder": self.decoder, "audio_sha256": a.sha256},
        )

    def identity(self) -> dict[str, Any]:
        """Everything that can change a transcript: the weights, the LM and how they are decoded."""
        from aris.digests import file_digest, folder_digest

        return {
            "model": self.model_id,
            "weights": folder_digest(self.folder),
            "lm": file_digest(self.lm_path) if self.lm_path is not None else None,
            "decoder": self.decoder,
            "beam_width": self.beam_width if self.lm_path is not None else None,
            "chunk_s": self.chunk_s,
            "stride_s": self.stride_s,
        }

    def close(self) -> None:
        self.model = None
        gc.collect()
