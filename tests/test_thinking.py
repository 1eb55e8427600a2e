"""The thought/answer splitter: every chunking, markers split, dropped, missing or repeated.

The rule (MEDGEMMA.md, issue 13): everything before the LAST ``<unused95>`` is thought; a reply that
opens with ``<unused94>`` or with the bare ``thought`` label (an engine that drops the opening marker)
and never closes is all thought. The property tests compare the streaming splitter, for any
chunking, against an independent statement of that rule (:func:`oracle`).
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aris.prompt import THOUGHT_CLOSE as CLOSE
from aris.prompt import THOUGHT_OPEN as OPEN
from aris.thinking import Piece, ThoughtSplitter, split_stream, split_text

LABEL = "thought\n"
THINKING_REPLY = "<unused94>thought\nThe film shows a left basal opacity. <unused9 is not a marker.<unused95>Final Answer: yes"
CASES = [
    (THINKING_REPLY, "The film shows a left basal opacity. <unused9 is not a marker.", "Final Answer: yes"),
    ("No thinking here, just <b>an</b> answer.", "", "No thinking here, just <b>an</b> answer."),
    ("  <unused94>thought\nhmm<unused95>", "hmm", ""),
    ("<unused94>unlabelled thought<unused95>answer", "unlabelled thought", "answer"),
    ("<unused94>thought\ncut off before the end", "cut off before the end", ""),  # truncated: nothing leaks
    ("<unused9", "", "<unused9"),
    ("", "", ""),
    # issue 13: the opening marker dropped (a server that strips it, or a prompt that opened the thought)
    (
        "thought\nOption A fits, but B is better.<unused95>Final Answer: B",
        "Option A fits, but B is better.",
        "Final Answer: B",
    ),
    ("\n thought\nA or B?<unused95>B", "A or B?", "B"),
    # no opening at all: whatever precedes the last close is still thought
    ("answer first <unused95>stray close", "answer first ", "stray close"),
    # several thoughts, and an answer the model took back by thinking again
    (
        "<unused94>thought\nT1<unused95>draft: A<unused94>thought\nT2<unused95>Final Answer: B",
        "T1draft: AT2",
        "Final Answer: B",
    ),
    ("<unused94>thought\nT1<unused95><unused94>thought\nT2<unused95>B", "T1T2", "B"),
    ("<unused94>thought\nT1<unused95>thought\nT2<unused95>B", "T1T2", "B"),  # second opening dropped
    # markers dropped entirely but the label kept: all thought, no answer to leak
    ("thought\nThe answer is B.\nFinal Answer: B", "The answer is B.\nFinal Answer: B", ""),
    ("<unused94>thought\nT<unused95>A<unused94>thought\ncut off", "Tcut off", "A"),
    ("thoughtful answer", "", "thoughtful answer"),  # not the label
]


def _join(pieces: list[Piece]) -> tuple[str, str]:
    return (
        "".join(p.text for p in pieces if p.kind == "thought"),
        "".join(p.text for p in pieces if p.kind == "answer"),
    )


def _stream(chunks: list[str], think: bool = True) -> list[Piece]:
    s = ThoughtSplitter(think=think)
    out: list[Piece] = []
    for c in chunks:
        out += s.feed(c)
    return out + s.finish()


@pytest.mark.parametrize(("reply", "thought", "answer"), CASES)
def test_every_two_way_and_three_way_split_gives_the_same_answer(
    reply: str, thought: str, answer: str
) -> None:
    n = len(reply)
    for i, j in itertools.combinations_with_replacement(range(n + 1), 2):
        chunks = [reply[:i], reply[i:j], reply[j:]]
        got = _join(list(split_stream(chunks)))
        assert got == (thought, answer), (chunks, got)


@pytest.mark.parametrize(("reply", "thought", "answer"), CASES)
def test_character_by_character(reply: str, thought: str, answer: str) -> None:
    assert _join(list(split_stream(list(reply)))) == (thought, answer)
    assert split_text(reply) == (thought, answer)
    assert oracle(reply) == (thought, answer)


def test_no_answer_piece_ever_holds_thought_text() -> None:
    for i in range(len(THINKING_REPLY) + 1):
        for piece in split_stream([THINKING_REPLY[:i], THINKING_REPLY[i:]]):
            if piece.kind == "answer":
                assert "basal" not in piece.text
                assert "<unused" not in piece.text


def test_without_thinking_the_answer_is_not_held_back_longer_than_a_marker() -> None:
    s = ThoughtSplitter(think=False)
    assert s.feed("Hello") == [Piece("answer", "Hello")]
    out = s.feed(" world <unu")
    assert out == [Piece("answer", " world ")]
    assert s.finish() == [Piece("answer", "<unu")]


def test_thought_streams_live_and_the_answer_comes_once_no_close_can_follow() -> None:
    s = ThoughtSplitter(think=True)
    assert s.feed("<unused94>thought\nlooking") == [Piece("thought", "looking")]
    assert s.feed(" closer<unused95>Final Answer:") == [Piece("thought", " closer")]
    assert s.feed(" B") == []
    assert s.finish() == [Piece("answer", "Final Answer: B")]


# -- the rule, stated independently, and the property ------------------------------------------------


def _body(segment: str, at_reply_start: bool) -> str:
    """Thought text of ``segment``: markers removed, the label dropped where a thought opens."""
    parts = re.split(f"({re.escape(OPEN)}|{re.escape(CLOSE)})", segment)
    out = []
    before = "start"
    for part in parts:
        if part in (OPEN, CLOSE):
            before = part
            continue
        if before == "start" and at_reply_start:
            if part.lstrip().startswith(LABEL):
                part = part.lstrip()[len(LABEL) :]
            elif not part.strip():
                part = ""
        elif before == OPEN and part.startswith(LABEL):
            part = part[len(LABEL) :]
        elif before == CLOSE and part.lstrip().startswith(LABEL):
            part = part.lstrip()[len(LABEL) :]
        out.append(part)
    return "".join(out)


def oracle(text: str) -> tuple[str, str]:
    last = text.rfind(CLOSE)
    if last >= 0:
        thought, rest = _body(text[:last], True), text[last + len(CLOSE) :]
        if rest.lstrip().startswith(LABEL):  # a second thought, opening marker dropped, never closed
            return thought + _body(CLOSE + rest, False), ""
    else:
        thought, rest = "", text
        if rest.lstrip().startswith((OPEN, LABEL)):
            return _body(rest, True), ""
    i = rest.find(OPEN)
    if i >= 0:
        return thought + _body(rest[i:], False), rest[:i]
    return thought, rest


TOKENS = [OPEN, CLOSE, LABEL, "thought", "\n", " ", "<unu", "sed9", "5>", "A", "B", "t", "Final Answer: "]


def _chunkings(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def chunked_replies(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = "".join(draw(st.lists(st.sampled_from(TOKENS), max_size=14)))
    return text, _chunkings(draw, text)


@settings(max_examples=400, deadline=None)
@given(chunked_replies())
@example(("thought\nT<unused95>A", ["thou", "ght\nT<unu", "sed95>A"]))
@example(("x<unused95>y<unused95>z", ["x<unused9", "5>y", "<unused95>z"]))
def test_streaming_equals_the_rule_for_any_reply_and_any_chunking(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    assert _join(_stream(chunks, think=True)) == oracle(text)
    assert split_text(text) == oracle(text)


@st.composite
def thinking_replies(draw: st.DrawFn) -> tuple[str, str, list[str]]:
    """A reply whose thought (letters t) and answer (letters a) never share a character."""
    opening = draw(st.sampled_from(["", OPEN, OPEN + LABEL, LABEL, " " + OPEN + LABEL]))
    thought = draw(st.text(alphabet="t \n", max_size=30))
    extra = draw(
        st.lists(st.sampled_from([CLOSE + OPEN + LABEL, CLOSE + "aa" + OPEN, CLOSE + LABEL]), max_size=2)
    )
    thought2 = draw(st.text(alphabet="t ", max_size=10)) if extra else ""
    answer = draw(st.text(alphabet="a \n", max_size=30))
    text = opening + thought + "".join(extra) + thought2 + CLOSE + answer
    return text, answer, _chunkings(draw, text)


@settings(max_examples=300, deadline=None)
@given(thinking_replies(), st.booleans())
def test_thought_never_reaches_the_answer_stream(case: tuple[str, str, list[str]], think: bool) -> None:
    text, answer, chunks = case
    # without thinking asked for, an unopened reply streams live (the documented exception below)
    opened = text.lstrip().startswith((OPEN, LABEL))
    pieces = _stream(chunks, think=think or not opened)
    assert "t" not in "".join(p.text for p in pieces if p.kind == "answer")
    assert _join(pieces)[1] == answer


def test_without_thinking_an_unopened_reply_streams_live_and_split_text_still_follows_the_rule() -> None:
    # Thinking off and no opening: the text streams as it comes; a close marker arriving later cannot
    # take it back, so the recorded answer (split_text of the whole reply) is what follows the rule.
    pieces = _stream(["draft ", "text<unused95>", "B"], think=False)
    assert pieces[0] == Piece("answer", "draft ")
    assert _join(pieces)[1].endswith("B")
    assert split_text("draft text<unused95>B") == ("draft text", "B")
