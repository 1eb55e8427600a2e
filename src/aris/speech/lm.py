"""Optional beam search with MedASR's 6-gram KenLM model (``lm_6.kenlm``), through pyctcdecode.

Google's recipe (MedASR quick-start notebook): the language model is over MedASR's SentencePiece pieces,
not words. Each piece becomes its own pyctcdecode "word" by writing its ``▁`` as ``#`` and prefixing a
``▁``; the blank (``<pad>``, id 0) is the empty label; beam width 8. Google reports 6.6% WER greedy and
4.6% with the LM on radiology dictation.

pyctcdecode reports word frames only roughly, so the best beam's tokens are aligned to the frames again
by CTC forced alignment (Viterbi), which gives each token the frames it was emitted on.

pyctcdecode 0.5.0 declares ``numpy<2`` but runs on numpy 2; it is installed without its dependencies
(scripts/install.sh). Neither it nor kenlm is required: without them decoding is greedy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aris.errors import ConfigError
from aris.speech.chunking import TokenSpan, is_special

logger = logging.getLogger(__name__)

BEAM_WIDTH = 8  # Google's decoder_kwargs=dict(beam_width=8)
LM_FILE = "lm_6.kenlm"  # shipped in the google/medasr repository


def lm_labels(pieces: Sequence[str], blank: int = 0) -> list[str]:
    """pyctcdecode labels for MedASR's pieces: every piece a word, ``▁`` written ``#`` (Google's recipe).

    Special pieces (``</s>``, ``<unk>``) are words of their own too, so they can be dropped after decoding
    instead of gluing onto a neighbour.
    """
    labels = []
    for i, piece in enumerate(pieces):
        if i == blank:
            labels.append("")
        elif is_special(piece):
            labels.append("▁" + piece)
        else:
            labels.append("▁" + piece.replace("▁", "#"))
    return labels


def available() -> bool:
    try:
        import kenlm  # noqa: F401
        import pyctcdecode  # noqa: F401
    except ImportError:
        return False
    return True


class LmDecoder:
    """Beam search over one window's log-probabilities with a KenLM model; returns timed tokens."""

    def __init__(
        self,
        pieces: Sequence[str],
        lm_path: str | Path,
        *,
        beam_width: int = BEAM_WIDTH,
        blank: int = 0,
        alpha: float | None = None,
        beta: float | None = None,
    ) -> None:
        path = Path(lm_path)
        if not path.is_file():
            raise ConfigError(f"{lm_path}: no such language model file (a KenLM .kenlm/.arpa/.bin file)")
        try:
            import pyctcdecode
        except ImportError:
            raise ConfigError(
                "LM beam search needs pyctcdecode and kenlm, which are not installed "
                "(pip install --no-deps pyctcdecode==0.5.0 pygtrie kenlm); leave the LM unset for greedy decoding"
            ) from None
        try:
            import kenlm  # noqa: F401
        except ImportError:
            raise ConfigError(
                "LM beam search needs the kenlm module, which is not installed (pip install kenlm: it builds "
                "from source); leave the LM unset for greedy decoding"
            ) from None
        self.pieces = list(pieces)
        self.blank = blank
        self.beam_width = beam_width
        self._ids = {label: i for i, label in enumerate(lm_labels(pieces, blank)) if label}
        kwargs: dict[str, Any] = {k: v for k, v in {"alpha": alpha, "beta": beta}.items() if v is not None}
        try:
            self._decoder = pyctcdecode.build_ctcdecoder(  # type: ignore[attr-defined]
                lm_labels(pieces, blank), str(path), **kwargs
            )
        except (OSError, RuntimeError, ValueError) as e:
            raise ConfigError(f"{lm_path}: cannot load the language model: {e}") from None
        logger.info("LM decoder: %d labels, beam %d", len(self.pieces), beam_width)

    def __call__(self, logprobs: np.ndarray) -> list[TokenSpan]:
        if logprobs.shape[0] == 0:
            return []
        beams = self._decoder.decode_beams(logprobs.astype(np.float32), beam_width=self.beam_width)
        if not beams:
            return []
        ids = [self._ids["▁" + w] for w in beams[0][0].split()]
        frames = align(logprobs, ids, self.blank)
        return [
            TokenSpan(self.pieces[i], a, b, float(np.exp(logprobs[a : b + 1, i]).mean()))
            for i, (a, b) in zip(ids, frames, strict=True)
        ]


def align(logprobs: np.ndarray, ids: Sequence[int], blank: int = 0) -> list[tuple[int, int]]:
    """CTC forced alignment: the first and last frame of each token on the most likely path.

    The path runs through ``blank, id1, blank, id2, ..., blank`` (a blank may be skipped between two
    different tokens); Viterbi over ``(frames, 2 * len(ids) + 1)`` states.
    """
    n_frames, n_ids = logprobs.shape[0], len(ids)
    if n_ids == 0:
        return []
    ext = np.full(2 * n_ids + 1, blank, dtype=np.int64)
    ext[1::2] = ids
    n_states = len(ext)
    can_skip = np.zeros(n_states, dtype=bool)
    can_skip[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
    neg = -np.inf
    score = np.full(n_states, neg)
    score[0] = logprobs[0, ext[0]]
    score[1] = logprobs[0, ext[1]]
    back = np.zeros((n_frames, n_states), dtype=np.int8)
    for t in range(1, n_frames):
        prev1 = np.concatenate(([neg], score[:-1]))
        prev2 = np.where(can_skip, np.concatenate(([neg, neg], score[:-2])), neg)
        options = np.stack([score, prev1, prev2])
        back[t] = options.argmax(axis=0)
        score = options.max(axis=0) + logprobs[t, ext]
    end = n_states - 1 if score[-1] >= score[-2] else n_states - 2
    if not np.isfinite(score[end]):
        raise ValueError(f"{n_ids} tokens do not fit in {n_frames} frames")
    states = np.empty(n_frames, dtype=np.int64)
    s = end
    for t in range(n_frames - 1, -1, -1):
        states[t] = s
        s -= int(back[t, s])
    spans: list[tuple[int, int]] = []
    for k in range(n_ids):
        where = np.flatnonzero(states == 2 * k + 1)
        spans.append((int(where[0]), int(where[-1])))
    return spans
