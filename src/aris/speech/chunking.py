"""Long recordings in overlapping windows, CTC outputs into timed words, and words merged at the seams.

Google runs MedASR on 20 s windows with 2 s of context on each side (``chunk_length_s=20``,
``stride_length_s=2``): consecutive windows overlap by 4 s and start 16 s apart. A word cut by a window's
edge is garbled in that window and whole in its neighbour, so the transcripts of two neighbours are
joined at a cut inside their overlap, placed where neither of them has a word (a word boundary), and each
word is taken from the side its centre falls on. A word is never taken twice and never dropped, whatever
the seam splits.

Everything here is numpy and plain Python: the model gives per-frame log-probabilities, and tests give
constructed ones to the same functions.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from aris.speech.formatting import Formatter
from aris.speech.types import Chunk, Progress, Word

SAMPLE_RATE = 16_000
CHUNK_S = 20.0  # Google's chunk_length_s
STRIDE_S = 2.0  # Google's stride_length_s: context on each side of a window


@dataclass(frozen=True)
class Window:
    """Samples ``[start, end)`` of the recording, seen by the model in one pass."""

    index: int
    start: int
    end: int
    sample_rate: int = SAMPLE_RATE

    @property
    def start_s(self) -> float:
        return self.start / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.end / self.sample_rate


def plan_windows(
    n_samples: int, sample_rate: int = SAMPLE_RATE, chunk_s: float = CHUNK_S, stride_s: float = STRIDE_S
) -> list[Window]:
    """Windows of ``chunk_s`` seconds, each starting ``chunk_s - 2 * stride_s`` after the previous one.

    The last window ends at the end of the recording (it may be shorter); a recording no longer than one
    window is a single window.
    """
    if chunk_s <= 2 * stride_s or stride_s < 0:
        raise ValueError(f"chunk_s ({chunk_s}) must exceed twice stride_s ({stride_s}), and stride_s >= 0")
    size = round(chunk_s * sample_rate)
    step = size - 2 * round(stride_s * sample_rate)
    windows: list[Window] = []
    start = 0
    while True:
        end = min(start + size, n_samples)
        windows.append(Window(len(windows), start, end, sample_rate))
        if end >= n_samples:
            return windows
        start += step


@dataclass(frozen=True)
class FrameClock:
    """Where CTC output frame ``j`` sits in its window: ``offset + j * step`` seconds (the frame's centre).

    MedASR's features are 25 ms windows every 10 ms; two convolutions (kernel 5, stride 2) then make one
    output frame of every four feature frames, so a frame is 40 ms and frame ``j`` is centred on feature
    frame ``4 j + 6``.
    """

    offset: float
    step: float

    @classmethod
    def for_model(
        cls, *, hop: int, win: int, sample_rate: int, kernel: int, stride: int, layers: int = 2
    ) -> FrameClock:
        # Centre of output frame j in feature frames: stride**layers * j + sum of the half-kernels seen
        # through the strides of the layers before.
        centre0 = sum((kernel - 1) / 2 * stride**i for i in range(layers))
        return cls(
            offset=(hop * centre0 + win / 2) / sample_rate,
            step=hop * stride**layers / sample_rate,
        )

    def at(self, frame: int) -> float:
        return self.offset + frame * self.step


@dataclass(frozen=True)
class TokenSpan:
    """One emitted token: its piece, the first and last frame it was emitted on, its mean probability."""

    piece: str
    first: int
    last: int
    prob: float


def is_special(piece: str) -> bool:
    """``<pad>``, ``</s>``, ``<unk>``, ``<extra_id_N>``: never text."""
    return len(piece) > 2 and piece.startswith("<") and piece.endswith(">")


def greedy_spans(logprobs: np.ndarray, pieces: Sequence[str], blank: int = 0) -> list[TokenSpan]:
    """Best path CTC decoding: the most likely token per frame, repeats merged, blanks dropped.

    ``logprobs`` is ``(frames, vocab)`` log-probabilities of one window.
    """
    if logprobs.ndim != 2 or logprobs.shape[0] == 0:
        return []
    best = logprobs.argmax(axis=-1)
    probs = np.exp(logprobs[np.arange(len(best)), best])
    # Runs of the same id: a new run starts where the id changes.
    change = np.flatnonzero(np.diff(best)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [len(best)]))
    spans: list[TokenSpan] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        token = int(best[s])
        if token == blank:
            continue
        spans.append(TokenSpan(pieces[token], s, e - 1, float(probs[s:e].mean())))
    return spans


def spans_to_words(spans: Sequence[TokenSpan], clock: FrameClock, t0: float = 0.0) -> list[Word]:
    """SentencePiece tokens into words: a piece starting with ``▁`` begins a word, others continue it.

    Times are absolute (``t0`` is the window's start): a word runs from half a frame before its first
    letter-bearing token to half a frame after its last. A lone ``▁`` (a character vocabulary's word
    boundary) starts a word without giving it a time.
    """
    words: list[Word] = []
    text, first, last = "", -1, -1
    probs: list[float] = []
    half = clock.step / 2
    for span in [*spans, None]:
        if span is not None and is_special(span.piece):
            continue
        if span is None or span.piece.startswith("▁"):
            if text:
                start, end = t0 + clock.at(first) - half, t0 + clock.at(last) + half
                words.append(Word(text, round(start, 3), round(end, 3), round(sum(probs) / len(probs), 4)))
            text, first, last, probs = "", -1, -1, []
            if span is None:
                break
        piece = span.piece.removeprefix("▁")
        if piece:
            first = span.first if first < 0 else first
            text += piece
            last = span.last
            probs.append(span.prob)
    return words


def choose_cut(left: Sequence[Word], right: Sequence[Word], lo: float, hi: float) -> float:
    """Where to join two overlapping windows' words: a time in ``[lo, hi]`` inside no word of either.

    Candidates are the gaps between consecutive words of either side that fall in the overlap, and the
    overlap's middle. Each is scored by how deep it cuts into words of either side (a gap of one side may
    clip the other side's word by a frame when the two heard it slightly apart); the shallowest wins,
    then the one nearest the middle, the place both windows heard with the most context.
    """
    if hi <= lo:
        return lo
    mid = (lo + hi) / 2
    candidates = {mid}
    for words in (left, right):
        for a, b in itertools.pairwise(words):
            gap = (a.end + b.start) / 2
            if lo <= gap <= hi:
                candidates.add(gap)
    both = [w for w in (*left, *right) if w.end > lo and w.start < hi]

    def cost(t: float) -> tuple[float, float]:
        depth = sum(min(t - w.start, w.end - t) for w in both if w.start < t < w.end)
        return round(depth, 6), abs(t - mid)

    return min(sorted(candidates), key=cost)


def match_anchor(
    left: Sequence[Word], right: Sequence[Word], lo: float, hi: float, tolerance: float = 0.3
) -> tuple[int, int] | None:
    """A word both windows heard in their overlap: ``(i, j)`` with ``left[i]`` and ``right[j]`` the same
    word at (nearly) the same time, the one nearest the overlap's middle; None when they share none.

    Matching by content first makes the seam indifferent to the windows hearing a word a frame or two
    apart (each window sees different context); the time tolerance keeps one "the" from matching
    another.
    """
    li = [i for i, w in enumerate(left) if w.end > lo and w.start < hi]
    rj = [j for j, w in enumerate(right) if w.end > lo and w.start < hi]
    if not li or not rj:
        return None
    matcher = difflib.SequenceMatcher(
        a=[left[i].text for i in li], b=[right[j].text for j in rj], autojunk=False
    )
    mid = (lo + hi) / 2
    best: tuple[float, int, int] | None = None
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            i, j = li[block.a + k], rj[block.b + k]
            if abs(left[i].center - right[j].center) > tolerance:
                continue
            distance = abs((left[i].center + right[j].center) / 2 - mid)
            if best is None or distance < best[0]:
                best = (distance, i, j)
    return None if best is None else (best[1], best[2])


class Merger:
    """Joins each window's words to the previous window's at a word boundary, as windows arrive.

    The seam is a word both windows heard in their overlap (:func:`match_anchor`): the earlier window's
    words up to it, the later window's after it. Where they share no word, the seam is a time inside
    neither side's words (:func:`choose_cut`) and each word goes to the side its centre falls on.
    """

    def __init__(self) -> None:
        self._pending: list[Word] = []
        self._window: Window | None = None
        self.chunks: list[Chunk] = []

    def add(self, window: Window, words: list[Word]) -> list[Word]:
        """Take one window's words; return the words that are now final (those before the new seam)."""
        if self._window is None:
            self._pending, self._window = list(words), window
            return []
        lo, hi = window.start_s, self._window.end_s
        anchor = match_anchor(self._pending, words, lo, hi)
        if anchor is not None:
            final = self._pending[: anchor[0] + 1]
            self._pending = list(words[anchor[1] + 1 :])
        else:
            cut = choose_cut(self._pending, words, lo, hi)
            final = [w for w in self._pending if w.center < cut]
            self._pending = [w for w in words if w.center >= cut]
        self._close(final)
        self._window = window
        return final

    def finish(self) -> list[Word]:
        final, self._pending = self._pending, []
        if self._window is not None:
            self._close(final)
        return final

    def _close(self, words: list[Word]) -> None:
        assert self._window is not None
        w = self._window
        self.chunks.append(Chunk(w.index, w.start_s, w.end_s, " ".join(x.text for x in words)))


def transcribe_windows(
    n_samples: int,
    windows: Sequence[Window],
    logprobs_for: Callable[[Window], np.ndarray],
    decode: Callable[[np.ndarray], list[TokenSpan]],
    clock: FrameClock,
    on_progress: Callable[[Progress], None] | None = None,
) -> tuple[list[Word], list[Chunk], str]:
    """Run every window, merge the words, format the text; report progress with each window.

    Returns the words, the chunks and the formatted text. ``on_progress`` may raise to stop the work
    (a cancelled request); the exception propagates.
    """
    merger = Merger()
    formatter = Formatter()
    words: list[Word] = []
    pieces: list[str] = []
    total = n_samples / windows[0].sample_rate if windows else 0.0
    for window in windows:
        spans = decode(logprobs_for(window))
        final = merger.add(window, spans_to_words(spans, clock, window.start_s))
        words.extend(final)
        delta = formatter.feed(w.text for w in final)
        pieces.append(delta)
        last = window.index == len(windows) - 1
        if last:
            rest = merger.finish()
            words.extend(rest)
            tail = formatter.feed(w.text for w in rest) + formatter.finish()
            pieces.append(tail)
            delta += tail
        if on_progress is not None:
            on_progress(
                Progress(
                    chunk=window.index + 1,
                    chunks=len(windows),
                    seconds_done=window.end_s,
                    seconds_total=total,
                    delta=delta,
                    done=last,
                )
            )
        if last:
            break
    return words, merger.chunks, "".join(pieces)


def n_frames(n_samples: int, *, hop: int, win: int, kernel: int, stride: int, layers: int = 2) -> int:
    """Output frames for ``n_samples`` (0 when too short for one): features, then each convolution."""
    if n_samples < win:
        return 0
    frames = (n_samples - win) // hop + 1
    for _ in range(layers):
        frames = (frames - kernel) // stride + 1
        if frames <= 0:
            return 0
    return frames


def min_samples(*, hop: int, win: int, kernel: int, stride: int, layers: int = 2) -> int:
    """Fewest samples that give one output frame."""
    frames = 1
    for _ in range(layers):
        frames = (frames - 1) * stride + kernel
    return win + (frames - 1) * hop
