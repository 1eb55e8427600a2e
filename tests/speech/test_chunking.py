"""Windows, CTC frames into words, and merging at the seams, on CTC outputs built by hand.

A random model's words are noise, so the seams are tested on a long synthetic "recording" whose true
words and times are known: each window sees its slice of the frames, words cut by its edges arrive as
fragments, and each window hears the words a frame earlier or later than its neighbour does.
"""

from __future__ import annotations

import numpy as np
import pytest

from aris.speech.chunking import (
    FrameClock,
    Merger,
    TokenSpan,
    Window,
    choose_cut,
    greedy_spans,
    min_samples,
    n_frames,
    plan_windows,
    spans_to_words,
    transcribe_windows,
)
from aris.speech.formatting import format_words
from aris.speech.types import Word

GEOMETRY = {"hop": 160, "win": 400, "kernel": 5, "stride": 2}  # MedASR's
CLOCK = FrameClock.for_model(sample_rate=16000, **GEOMETRY)
PIECES = ["<pad>", "</s>", "<unk>", "▁"]
WORDS = {  # word -> its pieces
    "no": ["▁no"],
    "acute": ["▁ac", "ute"],
    "findings": ["▁find", "ings"],
    "period": ["▁period"],
    "the": ["▁the"],
    "lungs": ["▁lung", "s"],
    "are": ["▁are"],
    "clear": ["▁cl", "ear"],
    "pleural": ["▁pl", "eur", "al"],
    "effusion": ["▁eff", "usion"],
    "comma": ["▁comma"],
    "stable": ["▁st", "able"],
    "colon": ["▁colon"],
    "new": ["▁new"],
    "paragraph": ["▁para", "graph"],
}
for _pieces in WORDS.values():
    PIECES += [p for p in _pieces if p not in PIECES]
ID = {p: i for i, p in enumerate(PIECES)}


def test_frame_clock_is_medasrs() -> None:
    assert CLOCK.step == pytest.approx(0.04)
    assert CLOCK.at(0) == pytest.approx((160 * 6 + 200) / 16000)  # feature frame 6's centre
    assert n_frames(16000 * 20, **GEOMETRY) == 497
    assert n_frames(min_samples(**GEOMETRY), **GEOMETRY) == 1
    assert n_frames(min_samples(**GEOMETRY) - 1, **GEOMETRY) == 0


def test_windows_cover_the_recording_with_googles_overlap() -> None:
    sr = 16000
    windows = plan_windows(55 * sr)
    assert [(w.start_s, w.end_s) for w in windows] == [(0, 20), (16, 36), (32, 52), (48, 55)]
    assert plan_windows(20 * sr) == [Window(0, 0, 20 * sr)]
    assert plan_windows(5 * sr) == [Window(0, 0, 5 * sr)]
    assert [w.end_s for w in plan_windows(int(36.5 * sr))] == [20, 36, 36.5]
    with pytest.raises(ValueError, match="twice"):
        plan_windows(sr, chunk_s=4, stride_s=2)


def onehot(ids: list[int], vocab: int = len(PIECES), p: float = 0.9) -> np.ndarray:
    lp = np.full((len(ids), vocab), np.log((1 - p) / (vocab - 1)), dtype=np.float32)
    lp[np.arange(len(ids)), ids] = np.log(p)
    return lp


def test_greedy_decoding_merges_repeats_and_drops_blanks() -> None:
    frames = [0, ID["▁no"], ID["▁no"], 0, ID["▁ac"], ID["ute"], ID["ute"], 0, 0, ID["▁no"], 0, ID["▁no"]]
    spans = greedy_spans(onehot(frames), PIECES)
    assert [(s.piece, s.first, s.last) for s in spans] == [
        ("▁no", 1, 2),
        ("▁ac", 4, 4),
        ("ute", 5, 6),
        ("▁no", 9, 9),
        ("▁no", 11, 11),
    ]
    assert spans[0].prob == pytest.approx(0.9)
    words = spans_to_words(spans, CLOCK, t0=10.0)
    assert [w.text for w in words] == ["no", "acute", "no", "no"]
    assert words[1].start == pytest.approx(10 + CLOCK.at(4) - 0.02, abs=1e-3)
    assert words[1].end == pytest.approx(10 + CLOCK.at(6) + 0.02, abs=1e-3)


def test_character_vocabulary_words() -> None:
    """A lone ``▁`` begins a word (character vocabularies) and gives it no time; specials are not text."""
    spans = [
        TokenSpan("▁", 0, 0, 1.0),
        TokenSpan("n", 2, 2, 1.0),
        TokenSpan("o", 3, 3, 1.0),
        TokenSpan("</s>", 4, 4, 1.0),
        TokenSpan("▁", 6, 6, 1.0),
        TokenSpan("▁", 7, 7, 1.0),
        TokenSpan("o", 9, 10, 0.5),
        TokenSpan("k", 11, 11, 1.0),
    ]
    words = spans_to_words(spans, CLOCK)
    assert [w.text for w in words] == ["no", "ok"]
    assert words[0].start == pytest.approx(CLOCK.at(2) - 0.02, abs=1e-3)
    assert words[1].confidence == pytest.approx(0.75)
    assert spans_to_words([TokenSpan("ings", 3, 4, 1.0)], CLOCK)[0].text == "ings"  # a cut-off word


def synthetic_recording(seconds: float, seed: int, max_gap: int) -> tuple[list[Word], np.ndarray]:
    """Words laid on a frame grid: each piece 1-3 frames, 0..max_gap blank frames between words (one at
    least between a token and itself, as CTC needs)."""
    rng = np.random.default_rng(seed)
    total = int((seconds - 0.5) / CLOCK.step)  # the last frames of a recording have no output frame
    frames = np.zeros(total, dtype=np.int64)
    truth: list[Word] = []
    names = list(WORDS)
    g = 3
    while True:
        word = names[int(rng.integers(len(names)))]
        lengths = [int(rng.integers(1, 4)) for _ in WORDS[word]]
        if g + sum(lengths) + 2 >= total:
            break
        if frames[g - 1] == ID[WORDS[word][0]]:
            g += 1  # CTC needs a blank between two emissions of the same token
        start = g
        for piece, n in zip(WORDS[word], lengths, strict=True):
            frames[g : g + n] = ID[piece]
            g += n
        truth.append(Word(word, CLOCK.at(start) - 0.02, CLOCK.at(g - 1) + 0.02, 1.0))
        g += int(rng.integers(0, max_gap + 1))
    return truth, frames


def window_view(frames: np.ndarray, window: Window, last: bool, rng: np.random.Generator) -> np.ndarray:
    """What one window "hears": its slice of the frames, every token shifted a frame early or late by
    this window's own context, and the tokens of its outer second garbled where a neighbour overlaps."""
    first = round(window.start_s / CLOCK.step)
    n = n_frames(window.end - window.start, **GEOMETRY)
    view = frames[first : first + n].copy()
    shift = int(rng.integers(-1, 2))
    if shift:
        view = np.roll(view, shift)
        view[0 if shift > 0 else -1] = 0
    edge = int(1.0 / CLOCK.step)
    edges = ([(0, edge)] if window.index > 0 else []) + ([(n - edge, n)] if not last else [])
    for lo, hi in edges:
        noisy = np.flatnonzero(view[lo:hi]) + lo
        view[noisy] = rng.integers(4, len(PIECES), size=len(noisy))
    return onehot(view.tolist())


@pytest.mark.parametrize(("seed", "max_gap"), [(1, 8), (2, 3), (3, 0), (4, 1)])
def test_merging_neither_drops_nor_repeats_words_at_seams(seed: int, max_gap: int) -> None:
    """Five windows over 75 s: the merged words are exactly the spoken ones, at their times.

    ``max_gap=0`` is speech with no pause at all: the seam must still fall between two words.
    """
    truth, frames = synthetic_recording(75.0, seed, max_gap)
    sr = 16000
    windows = plan_windows(75 * sr)
    assert len(windows) == 5
    rng = np.random.default_rng(seed + 100)
    views = {w.index: window_view(frames, w, w is windows[-1], rng) for w in windows}
    events = []
    words, chunks, text = transcribe_windows(
        75 * sr,
        windows,
        lambda w: views[w.index],
        lambda lp: greedy_spans(lp, PIECES),
        CLOCK,
        events.append,
    )
    assert [w.text for w in words] == [w.text for w in truth]
    assert max(abs(a.start - b.start) for a, b in zip(words, truth, strict=True)) <= 0.041
    assert [c.index for c in chunks] == [0, 1, 2, 3, 4]
    assert " ".join(c.text for c in chunks if c.text) == " ".join(w.text for w in truth)
    assert text == format_words([w.text for w in truth])
    assert "".join(e.delta for e in events) == text
    assert [e.seconds_done for e in events] == [20, 36, 52, 68, 75]
    assert [e.done for e in events] == [False, False, False, False, True]


def test_the_cut_falls_between_words_of_both_sides() -> None:
    # Left heard "a b c" a frame before right did; no pause between the words at all.
    left = [Word("a", 16.0, 16.8, 1), Word("b", 16.8, 17.9, 1), Word("c", 17.9, 19.2, 1)]
    right = [Word("a", 16.04, 16.84, 1), Word("b", 16.84, 17.94, 1), Word("c", 17.94, 19.24, 1)]
    cut = choose_cut(left, right, 16.0, 20.0)
    assert sum(min(cut - w.start, w.end - cut) for w in [*left, *right] if w.start < cut < w.end) <= 0.041
    assert cut == pytest.approx(17.94)  # the boundary nearest the middle of the overlap
    merger = Merger()
    merger.add(Window(0, 0, 20 * 16000), left)
    final = merger.add(Window(1, 16 * 16000, 36 * 16000), right)
    rest = merger.finish()
    assert [w.text for w in [*final, *rest]] == ["a", "b", "c"]
