"""Beam search with a KenLM model (pyctcdecode + kenlm), Google's piece-level recipe, and the forced
alignment that times its tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aris.config import ArisSettings
from aris.digests import file_digest
from aris.speech import load_transcriber
from aris.speech.audio import load_audio
from aris.speech.chunking import greedy_spans
from aris.speech.lm import LmDecoder, align, lm_labels

PIECES = ["<pad>", "</s>", "<unk>", "▁", "a", "c", "k", "u", "t", "e"]
ID = {p: i for i, p in enumerate(PIECES)}

# A bigram model over pyctcdecode's "words" (each piece, "▁" written "#"): after "a" comes "c", not "k".
ARPA = """\\data\\
ngram 1=10
ngram 2=7

\\1-grams:
-2.0\t<unk>\t0
-99\t<s>\t-0.5
-1.0\t</s>\t0
-0.7\t#\t-0.3
-0.9\ta\t-0.3
-0.9\tc\t-0.3
-3.0\tk\t-0.3
-0.9\tu\t-0.3
-0.9\tt\t-0.3
-0.9\te\t-0.3

\\2-grams:
-0.1\t<s> #
-0.1\t# a
-0.1\ta c
-0.1\tc u
-0.1\tu t
-0.1\tt e
-0.1\te </s>

\\end\\
"""


@pytest.fixture
def arpa(tmp_path: Path) -> Path:
    path = tmp_path / "pieces.arpa"
    path.write_text(ARPA)
    return path


def frames(seq: list[str | dict[str, float]]) -> np.ndarray:
    """Log-probabilities: a piece name is that piece at 0.9; a dict spreads a frame over pieces."""
    out = np.full((len(seq), len(PIECES)), np.log(1e-3), dtype=np.float32)
    for t, item in enumerate(seq):
        for piece, p in ({item: 0.9} if isinstance(item, str) else item).items():
            out[t, ID[piece]] = np.log(p)
    return out


def test_labels_follow_googles_recipe() -> None:
    assert lm_labels(["<pad>", "</s>", "▁no", "rm", "▁"]) == ["", "▁</s>", "▁#no", "▁rm", "▁#"]


def test_the_language_model_overrules_an_unsure_frame(arpa: Path) -> None:
    """Acoustically "k" edges out "c"; the LM knows "acute"."""
    lp = frames(["▁", "<pad>", "a", "<pad>", {"k": 0.5, "c": 0.45}, "<pad>", "u", "t", "<pad>", "e", "<pad>"])
    greedy = "".join(s.piece for s in greedy_spans(lp, PIECES))
    assert greedy == "▁akute"
    spans = LmDecoder(PIECES, arpa, beam_width=8)(lp)
    assert [s.piece for s in spans] == ["▁", "a", "c", "u", "t", "e"]
    assert [(s.first, s.last) for s in spans] == [(0, 0), (2, 2), (4, 4), (6, 6), (7, 7), (9, 9)]


def test_alignment_finds_the_frames_of_each_token() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        seq = rng.integers(0, len(PIECES), size=60)
        lp = frames([PIECES[i] for i in seq])
        spans = greedy_spans(lp, PIECES)
        assert align(lp, [ID[s.piece] for s in spans]) == [(s.first, s.last) for s in spans]
    with pytest.raises(ValueError, match="do not fit"):
        align(frames(["a", "a"]), [ID["a"], ID["a"]])  # a repeat needs a blank between


def test_transcriber_with_an_lm(tiny_asr: Path, arpa: Path, clips: dict[str, Path]) -> None:
    t = load_transcriber(
        ArisSettings(asr_model=str(tiny_asr), asr_lm=str(arpa), asr_beam_width=4, device="cpu")
    )
    try:
        # One second: a random model's frames are nearly uniform, the slowest case for a beam search.
        transcript = t.transcribe(load_audio(clips["short"]).samples[:16000])
        ident = t.identity()
    finally:
        t.close()
    assert transcript.decoder == "beam+lm"
    assert ident["lm"] == file_digest(arpa)
    assert ident["beam_width"] == 4
    assert all(w.start < w.end for w in transcript.words)
