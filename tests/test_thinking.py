from __future__ import annotations

import itertools

import pytest

from aris.thinking import Piece, ThoughtSplitter, split_stream, split_text

THINKING_REPLY = "<unused94>thought\nThe film shows a left basal opacity. <unused9 is not a marker.<unused95>Final Answer: yes"
CASES = [
    (THINKING_REPLY, "The film shows a left basal opacity. <unused9 is not a marker.", "Final Answer: yes"),
    ("No thinking here, just <b>an</b> answer.", "", "No thinking here, just <b>an</b> answer."),
    ("  <unused94>thought\nhmm<unused95>", "hmm", ""),
    ("<unused94>unlabelled thought<unused95>answer", "unlabelled thought", "answer"),
    ("<unused94>thought\ncut off before the end", "cut off before the end", ""),  # truncated: nothing leaks
    ("answer first <unused95>stray close", "", "answer first stray close"),
    ("<unused9", "", "<unused9"),
    ("", "", ""),
]


def _join(pieces: list[Piece]) -> tuple[str, str]:
    return (
        "".join(p.text for p in pieces if p.kind == "thought"),
        "".join(p.text for p in pieces if p.kind == "answer"),
    )


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


def test_no_answer_piece_ever_holds_thought_text() -> None:
    for i in range(len(THINKING_REPLY) + 1):
        for piece in split_stream([THINKING_REPLY[:i], THINKING_REPLY[i:]]):
            if piece.kind == "answer":
                assert "basal" not in piece.text
                assert "<unused" not in piece.text


def test_answer_is_not_held_back_longer_than_a_marker() -> None:
    s = ThoughtSplitter()
    assert s.feed("Hello") == [Piece("answer", "Hello")]
    out = s.feed(" world <unu")
    assert out == [Piece("answer", " world ")]
    assert s.finish() == [Piece("answer", "<unu")]
