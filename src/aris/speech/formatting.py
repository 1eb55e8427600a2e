"""Dictated punctuation and layout: "period" -> ".", "comma" -> ",", "new paragraph" -> a blank line.

Radiologists dictate punctuation aloud and MedASR writes it as words (Google's own reference transcripts
spell it: "Findings colon. ... period. New paragraph."). :class:`Formatter` turns those words into text.
It works on a stream of words with one word of lookahead (two-word commands, and the guards below), so
the server can send final text while later audio is still being recognised; the pieces it returns add up
to exactly what :func:`format_words` gives for the whole list.

"period" and "colon" are also ordinary words ("the postoperative period", "the sigmoid colon"): read as
punctuation they would change the meaning silently. A single-word command is therefore taken as
punctuation only when the words around it do not make it a noun (an article or modifier before it, a
verb or preposition after it); written in braces (``{colon}``) it is always a command. The recognised
words themselves are always kept (``Transcript.raw_text``), so a wrong guess can be checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# spoken command -> what it writes. "\n" and "\n\n" are line and paragraph breaks.
ONE_WORD = {
    "period": ".",
    "comma": ",",
    "colon": ":",
    "semicolon": ";",
}
TWO_WORDS = {
    ("full", "stop"): ".",
    ("question", "mark"): "?",
    ("exclamation", "point"): "!",
    ("exclamation", "mark"): "!",
    ("semi", "colon"): ";",
    ("new", "paragraph"): "\n\n",
    ("next", "paragraph"): "\n\n",
    ("new", "line"): "\n",
    ("next", "line"): "\n",
    ("open", "parenthesis"): "(",
    ("open", "paren"): "(",
    ("close", "parenthesis"): ")",
    ("close", "paren"): ")",
}
# Words around "colon" and "period" that make them nouns: (words before, words after).
# "the sigmoid colon", "colon wall"; "the postoperative period", "a period of observation".
_ARTICLES = "a an the this that these those its his her their our your my any each every no of"
NOUN_CONTEXT = {
    "colon": (
        frozenset(
            f"""{_ARTICLES} sigmoid ascending descending transverse rectosigmoid redundant distal proximal
            mid entire right left spastic""".split()
        ),
        frozenset(
            [
                "is",
                "are",
                "was",
                "were",
                "be",
                "been",
                "has",
                "have",
                "had",
                "and",
                "or",
                "with",
                "without",
                "in",
                "at",
                "shows",
                "demonstrates",
                "wall",
                "walls",
                "cancer",
                "carcinoma",
                "mass",
                "masses",
                "lesion",
                "lesions",
                "polyp",
                "polyps",
                "loop",
                "loops",
                "segment",
                "mucosa",
                "diverticula",
                "diverticulosis",
            ]
        ),
    ),
    "period": (
        frozenset(
            f"""{_ARTICLES} postoperative perioperative postpartum neonatal refractory latent incubation waiting
            follow-up same short long brief prolonged extended menstrual time trial grace""".split()
        ),
        frozenset(["is", "was", "were", "of", "since", "after", "before"]),
    ),
}
_BRACED = re.compile(r"^[\{\[\(<](.+?)[\}\]\)>][.,:;!?]*$")
_MARKS = ".,:;!?"
_STRIP = "{}[]<>.,:;!?\"'"
_CAPITALISE_AFTER = (".", "?", "!", ":")


def _key(word: str) -> tuple[str, bool]:
    """The word as a command key (lower case, punctuation off) and whether it was written in braces."""
    m = _BRACED.match(word.strip())
    if m:
        return m.group(1).strip().lower(), True
    return word.strip().strip(_STRIP).lower(), False


class Formatter:
    """Spoken punctuation applied to a stream of words; ``feed`` and ``finish`` return new text only."""

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._tail = ""  # the last characters written, to decide spacing
        self._prev: str | None = None  # the previous word as written (its key), for the guards
        self._cap_next = True

    def feed(self, words: Iterable[str]) -> str:
        out: list[str] = []
        for w in words:
            if w.strip():
                self._pending.append(w.strip())
                out.append(self._drain(final=False))
        return "".join(out)

    def finish(self) -> str:
        return self._drain(final=True)

    # -- internals -----------------------------------------------------------------------------

    def _drain(self, *, final: bool) -> str:
        out: list[str] = []
        while self._pending and (final or len(self._pending) >= 2):
            word = self._pending[0]
            nxt = self._pending[1] if len(self._pending) > 1 else None
            key, braced = _key(word)
            if nxt is not None:
                nkey = _key(nxt)[0]
                if (key, nkey) in TWO_WORDS:
                    out.append(self._command(TWO_WORDS[(key, nkey)]))
                    del self._pending[:2]
                    continue
            if key in ONE_WORD and (braced or self._is_command(key, nxt)):
                out.append(self._command(ONE_WORD[key]))
            elif not key and word.strip(_MARKS) == "":
                out.append("".join(self._command(mark) for mark in word))  # the model wrote "." itself
            else:
                out.append(self._word(word))
            del self._pending[0]
        return "".join(out)

    def _is_command(self, key: str, nxt: str | None) -> bool:
        if key not in NOUN_CONTEXT:
            return True
        before, after = NOUN_CONTEXT[key]
        if self._prev is not None and self._prev in before:
            return False
        return not (nxt is not None and _key(nxt)[0] in after)

    def _write(self, text: str) -> str:
        self._tail = (self._tail + text)[-4:]
        return text

    def _word(self, word: str) -> str:
        text = word
        if self._cap_next and text[:1].islower():
            text = text[:1].upper() + text[1:]
        space = "" if not self._tail or self._tail.endswith(("\n", "(")) else " "
        self._cap_next = text.endswith(_CAPITALISE_AFTER)
        self._prev = _key(word)[0]
        return self._write(space + text)

    def _command(self, mark: str) -> str:
        self._prev = None
        if not self._tail:
            return ""  # nothing yet to punctuate or break
        if mark in ("\n", "\n\n"):
            self._cap_next = True
            have = len(self._tail) - len(self._tail.rstrip("\n"))
            return self._write("\n" * max(0, len(mark) - have))
        if mark == "(":
            return self._write("(" if self._tail.endswith(("\n", "(")) else " (")
        if self._tail.endswith(mark):
            return ""  # the model wrote the mark itself as well
        if mark in _CAPITALISE_AFTER:
            self._cap_next = True
        return self._write(mark)


def format_words(words: Sequence[str]) -> str:
    """The dictated text with spoken punctuation and layout applied (see :class:`Formatter`)."""
    f = Formatter()
    return f.feed(words) + f.finish()


def format_text(text: str) -> str:
    """:func:`format_words` on whitespace-separated text."""
    return format_words(text.split())


def normalize_for_wer(text: str) -> str:
    """Google's MedASR WER normalisation: lower case, ``</s>`` dropped, only ``[a-z0-9']`` kept."""
    text = text.lower().replace("</s>", "")
    return " ".join(re.sub(r"[^ a-z0-9']", " ", text).split())
