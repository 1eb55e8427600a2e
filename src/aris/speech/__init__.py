"""MedASR: a radiologist's dictation into text, and (task ``dictation-report``) into a report draft.

=================  ==============================================================================
module             concern
=================  ==============================================================================
``audio``          files into 16 kHz mono samples (soundfile + soxr; ffmpeg for other formats)
``model``          ``google/medasr`` (transformers ``LasrForCTC``) loaded from this machine only
``chunking``       20 s windows with 2 s context, CTC frames into timed words, merging at the seams
``formatting``     dictated punctuation and layout ("period", "comma", "new paragraph", "next line")
``lm``             optional beam search with MedASR's KenLM model (pyctcdecode + kenlm)
``dictation``      the ``dictation-report`` task: transcript (+ study images) into findings/impression
=================  ==============================================================================

Importing this package imports neither torch nor transformers: the model role ``transcriber``
(:data:`aris.context.MODEL_ROLES`) loads through :func:`load_transcriber` only when a task needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aris.speech.types import Chunk, Progress, Transcript, Word

if TYPE_CHECKING:
    from aris.config import ArisSettings


@runtime_checkable
class Transcriber(Protocol):
    """A loaded speech recogniser (the ``transcriber`` model role)."""

    def transcribe(self, audio: Any, on_progress: Callable[[Progress], None] | None = None) -> Transcript:
        """Text, timed words and chunks of a recording (a path, an ``audio`` input or 16 kHz samples)."""

    def identity(self) -> dict[str, Any]:
        """What identifies the model for result keys: id, weights digest, LM digest, decoding."""

    def close(self) -> None:
        """Free the model."""


def load_transcriber(settings: ArisSettings) -> Transcriber:
    """MedASR from ``settings.asr_model`` (default ``google/medasr``), found on this machine only.

    Raises ``ModelNotFoundError`` saying how to get the model when it is absent.
    """
    from aris.speech.model import MedAsrTranscriber

    return MedAsrTranscriber.from_settings(settings)


__all__ = ["Chunk", "Progress", "Transcriber", "Transcript", "Word", "load_transcriber"]
