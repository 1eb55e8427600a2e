"""Plain data of a transcription: words with times, the windows they came from, the whole transcript."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Word:
    """One recognised word as the model spoke it (before spoken punctuation is applied).

    Times are seconds from the start of the recording. CTC emits a token as a short spike, so ``start``
    is the first frame of the word's first token and ``end`` the last frame of its last token: a word's
    trailing sound may run past ``end`` by a frame or two (40 ms each).
    """

    text: str
    start: float
    end: float
    confidence: float  # mean probability of the word's tokens at their frames, 0..1

    @property
    def center(self) -> float:
        return (self.start + self.end) / 2


@dataclass(frozen=True)
class Chunk:
    """One window the model saw: its place in the recording and the words kept from it after merging."""

    index: int
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Progress:
    """Reported after each window: how far the recording is done, and the text that became final.

    ``delta`` pieces concatenate to ``Transcript.text`` exactly (the last one comes with ``done``).
    """

    chunk: int
    chunks: int
    seconds_done: float
    seconds_total: float
    delta: str
    done: bool = False


@dataclass
class Transcript:
    """What a recording said.

    ``text`` has the dictated punctuation and layout applied ("period" -> ".", "new paragraph" -> a blank
    line); ``raw_text`` is the words as recognised, joined by spaces (what WER is computed on).
    """

    text: str
    raw_text: str
    words: list[Word]
    chunks: list[Chunk]
    duration: float
    decoder: str  # "greedy" or "beam+lm"
    language: str = "en"
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, *, words: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not words:
            data.pop("words")
        return data
