"""Separate MedGemma's thought from its answer while streaming.

With thinking on, the model writes ``<unused94>thought\\n ... <unused95>answer``. Engines
stream arbitrary chunks, so a marker can be split anywhere; the splitter holds back only the
few characters that could still be the start of a marker, so thought text never reaches the
answer stream and the answer is not delayed more than that.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from aris.prompt import THOUGHT_CLOSE, THOUGHT_OPEN

THOUGHT_LABEL = "thought\n"


@dataclass(frozen=True)
class Piece:
    kind: Literal["thought", "answer"]
    text: str


def _held_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


class ThoughtSplitter:
    """Feed raw chunks, get :class:`Piece` s. Call :meth:`finish` at the end of the stream."""

    def __init__(self) -> None:
        self._buf = ""
        self._state: Literal["start", "label", "thought", "answer"] = "start"

    def feed(self, chunk: str) -> list[Piece]:
        self._buf += chunk
        out: list[Piece] = []
        while True:
            if self._state == "start":
                stripped = self._buf.lstrip()
                if stripped.startswith(THOUGHT_OPEN):
                    self._buf = stripped[len(THOUGHT_OPEN) :]
                    self._state = "label"
                    continue
                if THOUGHT_OPEN.startswith(stripped):  # still could become the marker
                    return out
                self._state = "answer"
                continue
            if self._state == "label":
                if self._buf.startswith(THOUGHT_LABEL):
                    self._buf = self._buf[len(THOUGHT_LABEL) :]
                elif THOUGHT_LABEL.startswith(self._buf):
                    return out
                self._state = "thought"
                continue
            marker = THOUGHT_CLOSE if self._state == "thought" else THOUGHT_OPEN
            idx = self._buf.find(marker)
            if idx >= 0:
                if idx:
                    out.append(Piece(self._state, self._buf[:idx]))
                self._buf = self._buf[idx + len(marker) :]
                self._state = "answer" if self._state == "thought" else "label"
                continue
            # A stray close marker in the answer is dropped rather than shown.
            if self._state == "answer" and THOUGHT_CLOSE in self._buf:
                self._buf = self._buf.replace(THOUGHT_CLOSE, "")
                continue
            hold = max(_held_suffix(self._buf, marker), _held_suffix(self._buf, THOUGHT_CLOSE))
            emit = self._buf[: len(self._buf) - hold]
            if emit:
                out.append(Piece(self._state, emit))
            self._buf = self._buf[len(emit) :]
            return out

    def finish(self) -> list[Piece]:
        """Flush what was held back. An unclosed thought stays thought: no answer leaks from it."""
        rest, self._buf = self._buf, ""
        if not rest:
            return []
        if self._state in ("start", "answer"):
            return (
                [Piece("answer", rest.replace(THOUGHT_CLOSE, ""))]
                if self._state == "answer" or rest.strip()
                else []
            )
        return [Piece("thought", rest)]


def split_stream(chunks: Iterable[str]) -> Iterator[Piece]:
    splitter = ThoughtSplitter()
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.finish()


def split_text(text: str) -> tuple[str, str]:
    """(thought, answer) of a complete reply."""
    thought, answer = [], []
    for piece in split_stream([text]):
        (thought if piece.kind == "thought" else answer).append(piece.text)
    return "".join(thought), "".join(answer)
