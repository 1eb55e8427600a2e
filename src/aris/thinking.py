"""Separate MedGemma's thought from its answer, whole or while streaming.

With thinking on, the model writes ``<unused94>thought\\n ... <unused95>answer``. The rule every
reader follows (MEDGEMMA.md; issue 13): **everything before the last** ``<unused95>`` **is thought**.
A reply that opens a thought (``<unused94>``, or the bare ``thought\\n`` label of an engine or server
that dropped the opening marker) and never closes it is all thought: a cut-off thought leaks nothing.
After the last close, a ``<unused94>`` (or the bare label) opens a thought that runs to the end.

Streaming: engines send arbitrary chunks, so a marker can be split anywhere. Thought streams as it
comes. Answer text that a later ``<unused95>`` could still turn into thought is held back:

* after a close marker the answer is held to the end of the reply (one more close would make it
  thought: "Final Answer: A" followed by more thinking);
* with ``think`` (thinking was asked for), a reply that opens with neither marker nor label is held
  until a close marker shows it was thought, or the reply ends and shows it was the answer;
* without ``think``, a reply that opens with neither streams live, held back only by the few
  characters that could be the start of a marker. That is the one case a stream cannot take back: if a
  close marker then arrives, the text already sent was thought by the rule. :func:`split_text` of the
  whole reply (what a Result records) still follows the rule.

So with ``think`` the pieces are exactly :func:`split_text`'s, for any chunking (a property test
proves it); without it they are too unless an unopened reply later closes a thought.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from aris.prompt import THOUGHT_CLOSE, THOUGHT_OPEN

THOUGHT_LABEL = "thought\n"
_MARKERS = (THOUGHT_OPEN, THOUGHT_CLOSE)

State = Literal["start", "label", "thought", "held", "pending", "live"]


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


def _opens_with_label(text: str) -> bool:
    return text.lstrip().startswith(THOUGHT_LABEL)


def _drop_label(text: str) -> str:
    return text.lstrip()[len(THOUGHT_LABEL) :]


def thought_body(segment: str, *, at_reply_start: bool = False, after_close: bool = False) -> str:
    """The thought text of ``segment`` (all of it thought): markers removed, labels dropped.

    A label is dropped where a thought opens: right after ``<unused94>``, after whitespace at the
    start of the reply, or after whitespace following a ``<unused95>`` (a second thought whose
    opening marker was dropped). Whitespace alone before the first marker of a reply is dropped too.
    """
    out: list[str] = []
    before = "start"
    i = 0
    while True:
        j_open, j_close = segment.find(THOUGHT_OPEN, i), segment.find(THOUGHT_CLOSE, i)
        ends = [j for j in (j_open, j_close) if j >= 0]
        end = min(ends) if ends else len(segment)
        part = segment[i:end]
        if before == "start":
            if at_reply_start and _opens_with_label(part):
                part = _drop_label(part)
            elif at_reply_start and not part.strip():
                part = ""
            elif after_close and _opens_with_label(part):
                part = _drop_label(part)
        elif before == THOUGHT_OPEN and part.startswith(THOUGHT_LABEL):
            part = part[len(THOUGHT_LABEL) :]
        elif before == THOUGHT_CLOSE and _opens_with_label(part):
            part = _drop_label(part)
        out.append(part)
        if not ends:
            return "".join(out)
        before = THOUGHT_OPEN if end == j_open else THOUGHT_CLOSE
        i = end + len(before)


def _tail(rest: str, *, after_close: bool) -> list[Piece]:
    """Pieces of the text after the last close marker (or of a reply that has none and opened no
    thought): the answer, unless a thought opens in it, which then runs to the end."""
    if after_close and _opens_with_label(rest):
        return _pieces(thought_body(rest, after_close=True), "")
    i = rest.find(THOUGHT_OPEN)
    if i < 0:
        return _pieces("", rest)
    return _pieces(thought_body(rest[i:]), rest[:i])


def _pieces(thought: str, answer: str) -> list[Piece]:
    out = []
    if thought:
        out.append(Piece("thought", thought))
    if answer:
        out.append(Piece("answer", answer))
    return out


class ThoughtSplitter:
    """Feed raw chunks, get :class:`Piece` s. Call :meth:`finish` at the end of the stream.

    ``think``: thinking was asked for, so a reply that does not open with a marker may still be
    thought (held back until a close marker or the end decides). Default on: the safe reading.
    """

    def __init__(self, *, think: bool = True) -> None:
        self.think = think
        self._buf = ""
        self._state: State = "start"
        self._closed = False  # a close marker was seen: what is held is after one

    def feed(self, chunk: str) -> list[Piece]:
        self._buf += chunk
        out: list[Piece] = []
        while True:
            step = getattr(self, f"_{self._state}")(out)
            if not step:
                return out

    # Each state's step appends pieces and returns whether to go on (state changed, input left).

    def _start(self, out: list[Piece]) -> bool:
        stripped = self._buf.lstrip()
        if stripped.startswith(THOUGHT_OPEN):
            self._buf, self._state = stripped[len(THOUGHT_OPEN) :], "label"
            return True
        if stripped.startswith(THOUGHT_LABEL):
            self._buf, self._state = stripped[len(THOUGHT_LABEL) :], "thought"
            return True
        if THOUGHT_OPEN.startswith(stripped) or THOUGHT_LABEL.startswith(stripped):
            return False  # still could become an opening
        self._state = "pending" if self.think else "live"
        return True

    def _label(self, out: list[Piece]) -> bool:
        if self._buf.startswith(THOUGHT_LABEL):
            self._buf = self._buf[len(THOUGHT_LABEL) :]
        elif THOUGHT_LABEL.startswith(self._buf):
            return False
        self._state = "thought"
        return True

    def _thought(self, out: list[Piece]) -> bool:
        idx, marker = self._first_marker()
        if idx >= 0:
            if idx:
                out.append(Piece("thought", self._buf[:idx]))
            self._buf = self._buf[idx + len(marker) :]
            if marker == THOUGHT_OPEN:
                self._state = "label"
            else:
                self._state, self._closed = "held", True
            return True
        self._emit_all_but_marker_prefix("thought", out)
        return False

    def _held(self, out: list[Piece]) -> bool:
        """After a close marker: held to the end, unless another close turns it into thought."""
        idx = self._buf.find(THOUGHT_CLOSE)
        if idx < 0:
            return False
        thought = thought_body(self._buf[:idx], after_close=True)
        if thought:
            out.append(Piece("thought", thought))
        self._buf = self._buf[idx + len(THOUGHT_CLOSE) :]
        return True

    def _pending(self, out: list[Piece]) -> bool:
        """Thinking asked for, no opening seen: thought if a close marker comes, else the answer."""
        idx = self._buf.find(THOUGHT_CLOSE)
        if idx < 0:
            return False
        thought = thought_body(self._buf[:idx], at_reply_start=True)
        if thought:
            out.append(Piece("thought", thought))
        self._buf = self._buf[idx + len(THOUGHT_CLOSE) :]
        self._state, self._closed = "held", True
        return True

    def _live(self, out: list[Piece]) -> bool:
        """Thinking not asked for and no opening: the answer streams as it comes."""
        idx, marker = self._first_marker()
        if idx >= 0:
            if idx:
                out.append(Piece("answer", self._buf[:idx]))
            self._buf = self._buf[idx + len(marker) :]
            if marker == THOUGHT_OPEN:
                self._state = "label"
            else:  # too late to take back what streamed; from here on, the rule holds
                self._state, self._closed = "held", True
            return True
        self._emit_all_but_marker_prefix("answer", out)
        return False

    def _first_marker(self) -> tuple[int, str]:
        found = [(i, m) for m in _MARKERS if (i := self._buf.find(m)) >= 0]
        return min(found) if found else (-1, "")

    def _emit_all_but_marker_prefix(self, kind: Literal["thought", "answer"], out: list[Piece]) -> None:
        hold = max(_held_suffix(self._buf, m) for m in _MARKERS)
        emit = self._buf[: len(self._buf) - hold]
        if emit:
            out.append(Piece(kind, emit))
        self._buf = self._buf[len(emit) :]

    def finish(self) -> list[Piece]:
        """Flush what was held back. An unclosed thought stays thought: no answer leaks from it."""
        rest, self._buf = self._buf, ""
        state, self._state = self._state, "start"
        if state in ("label", "thought"):
            return _pieces(rest, "")
        if state == "start":  # only whitespace or the beginning of an opening came
            return _pieces("", rest)
        if state == "live":
            return _pieces("", rest)
        return _tail(rest, after_close=self._closed)


def split_stream(chunks: Iterable[str], *, think: bool = True) -> Iterator[Piece]:
    splitter = ThoughtSplitter(think=think)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.finish()


def split_text(text: str) -> tuple[str, str]:
    """(thought, answer) of a complete reply, by the rule: everything before the last close is thought."""
    thought: list[str] = []
    answer: list[str] = []
    for piece in split_stream([text], think=True):
        (thought if piece.kind == "thought" else answer).append(piece.text)
    return "".join(thought), "".join(answer)
