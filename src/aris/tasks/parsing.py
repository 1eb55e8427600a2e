"""Robust reading of model replies: thought stripped, JSON found, "Final Answer" taken, options matched.

Models wrap their output in prose, fences and half-finished thoughts; every task parses through
these few functions, so the same tolerance (and the same refusals) apply everywhere.
"""

from __future__ import annotations

import difflib
import json
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from aris.errors import OutputError
from aris.prompt import THOUGHT_CLOSE, THOUGHT_OPEN
from aris.tasks.yesno import read_yes_no
from aris.thinking import split_text


class ParseError(OutputError):
    """A reply that could not be read or validated; ``errors`` go into the repair prompt and the Result."""

    def __init__(self, errors: str | Sequence[str]) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("; ".join(self.errors))


def answer_only(text: str) -> str:
    """The answer with any leaked thought removed (thinking on, or a model that thinks unasked).

    The rule of :mod:`aris.thinking`: everything before the last ``<unused95>`` is thought, and a
    reply that opens a thought (``<unused94>`` or the bare ``thought`` label) without closing it has
    no answer at all.
    """
    _, text = split_text(text)
    return text.replace(THOUGHT_OPEN, "").replace(THOUGHT_CLOSE, "").strip()


# "Final Answer:" anywhere (bold tolerated), or "Final Answer" alone on its line as a markdown
# heading or bold label ("### Final Answer", "**Final Answer**") with the answer below it.
_FINAL = re.compile(
    r"\**\s*final\s+answer\s*\**\s*[:：][ \t]*\**|^[ \t#>*_]*final\s+answer[ \t*_]*$",
    re.IGNORECASE | re.MULTILINE,
)


def after_final_answer(text: str) -> str | None:
    """Everything after the LAST "Final Answer:" (markdown bold tolerated), or None."""
    last = None
    for m in _FINAL.finditer(text):
        last = m
    return None if last is None else text[last.end() :].strip()


# A line of a list the answer may be: "- Pneumothorax: yes", "2) no", "Pleural effusion: no".
_LIST_ITEM = re.compile(r"^\s*(?:[-*•+]|\d{1,2}[.)])\s+(?=\S)")
_BULLET = re.compile(r"^\s*[-•+]\s+(?=\S)")
_LABELLED = re.compile(r"^\s*[*_]*[^:\s][^:]{0,59}[:：]\s*\S")


def final_answer(text: str) -> str | None:
    """The short answer after the last "Final Answer:", quotes and bold removed; or None.

    Usually its first non-empty line. An answer that is a list ("- Pneumothorax: yes" then
    "- Pleural effusion: no", bulleted, numbered or one "label: value" a line) is every item of the
    list, joined by "; " ("Pneumothorax: yes; Pleural effusion: no"): its first line alone would
    answer for the whole list.
    """
    tail = after_final_answer(answer_only(text))
    if tail is None:
        return None
    lines = [ln for ln in tail.splitlines() if clean_short(ln)]
    if not lines:
        return None
    block: list[str] = []
    for line in lines:
        if not (_LIST_ITEM.match(line) or _LABELLED.match(line)):
            break
        block.append(clean_short(_LIST_ITEM.sub("", line)))
    if len(block) > 1:
        # "; ", not a new line: the yes/no reader folds lines together, and would read "Pneumothorax:
        # yes" then "Pleural effusion: no" as "pneumothorax" answered by the "no" after it
        return "; ".join(block)
    return clean_short(_BULLET.sub("", lines[0]))


def clean_short(text: str) -> str:
    """Strip markdown, quotes and a trailing full stop from a short answer."""
    text = text.strip().strip("*_`").strip()
    text = text.strip("\"'“”‘’").strip()
    if text.endswith(".") and not re.search(r"\d\.$", text):
        text = text[:-1]
    return text.strip().strip("*_`\"'").strip()


# -- JSON ------------------------------------------------------------------------------------------


@dataclass
class FoundJSON:
    value: Any
    truncated: bool = False  # a cut-off list whose complete items were kept
    notes: list[str] = field(default_factory=list)


_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_DECODER = json.JSONDecoder()


def _values(text: str) -> list[tuple[Any, bool]]:
    """Top-level JSON objects/arrays in ``text``, in order, each with whether it was salvaged.

    A list that does not decode (cut off at ``max_new_tokens``) yields its complete items, so the
    objects inside it are not mistaken for separate answers.
    """
    out: list[tuple[Any, bool]] = []
    i = 0
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = _DECODER.raw_decode(text, i)
            except ValueError:
                salvaged = _salvage_list(text, i) if text[i] == "[" else None
                if salvaged is not None:
                    items, end = salvaged
                    out.append((items, True))
                    i = end
                    continue
                i += 1
                continue
            out.append((value, False))
            i = end
        else:
            i += 1
    return out


def _salvage_list(text: str, start: int) -> tuple[list[Any], int] | None:
    """The complete items of a JSON list cut off before its ``]``, and where reading stopped; or None."""
    i = start + 1
    items: list[Any] = []
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] == "`":
            return (items, i) if items else None
        if text[i] == "]":
            return None  # a complete list that failed to decode for another reason
        try:
            value, i = _DECODER.raw_decode(text, i)
        except ValueError:
            return (items, len(text)) if items and _truncated_tail(text[i:]) else None
        items.append(value)


def _truncated_tail(rest: str) -> bool:
    """Whether what follows the last complete item is an unfinished item (a cut-off), not prose."""
    rest = rest.strip()
    return bool(rest) and rest[0] in '{["0123456789-tfn' and "]" not in rest


def _accepts(value: Any, expect: type | tuple[type, ...] | None) -> bool:
    return expect is None or isinstance(value, expect)


def _found(value: Any, salvaged: bool) -> FoundJSON:
    if salvaged:
        return FoundJSON(
            value, truncated=True, notes=[f"the reply was cut off; kept its {len(value)} complete items"]
        )
    return FoundJSON(value)


def extract_json(text: str, expect: type | tuple[type, ...] | None = None) -> FoundJSON:
    """The reply's JSON value, tolerating prose, fences, thought and a cut-off list.

    Looks, in order: the value that opens the text after the last "Final Answer:", then after it
    in the last ```json fence, then at the last top-level JSON value anywhere (a corrected draft
    comes after the draft). ``expect`` (``dict`` or ``list``) skips values of another type.
    A list cut off mid-item keeps its complete items (``truncated``, with a note).
    """
    text = answer_only(text)
    regions = []
    tail = after_final_answer(text)
    if tail:
        # The value that opens the Final Answer is the answer, not an example quoted after it.
        m = _FENCE.match(tail)
        head = (m.group(1) if m else tail).lstrip()
        values = _values(head) if head[:1] in ("{", "[") else []
        if values and _accepts(values[0][0], expect):
            return _found(*values[0])
        regions.append(tail)
    regions.append(text)
    for region in regions:
        fences = [m.group(1) for m in _FENCE.finditer(region)]
        for body in [*reversed(fences), region]:
            for value, salvaged in reversed(_values(body)):
                if _accepts(value, expect):
                    return _found(value, salvaged)
    if "{" in text or "[" in text:
        raise ParseError("the reply's JSON is incomplete or malformed (cut off, or not valid JSON)")
    raise ParseError("the reply contains no JSON")


def validation_messages(exc: ValidationError) -> list[str]:
    """Pydantic errors as short lines a model (and a person) can act on."""
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        out.append(f"{loc}: {err['msg']}")
    return out


# -- options ---------------------------------------------------------------------------------------

LETTERS = string.ascii_uppercase
_LETTER = re.compile(
    r"^[(\[]?\s*(?:(?:option|answer|choice)\s+)?[(\[]?([A-Za-z])(?:\s*[).:\]]\s*(.*)|\s*)$", re.I
)
_PUNCT = re.compile(r"[^\w\s]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def norm(text: str) -> str:
    """Lowercase, punctuation and articles removed, whitespace collapsed: the form options compare in."""
    text = _PUNCT.sub(" ", text.lower().replace("_", " "))
    return " ".join(_ARTICLES.sub(" ", text).split())


def lettered(options: Sequence[str]) -> str:
    """``A. first\\nB. second``: the multiple-choice layout the evaluation prompts use."""
    return "\n".join(f"{LETTERS[i]}. {opt}" for i, opt in enumerate(options))


def match_option(
    answer: str,
    options: Sequence[str],
    *,
    aliases: Mapping[str, Iterable[str]] | None = None,
    letters: bool = True,
    cutoff: float = 0.8,
    fuzzy: bool = True,
) -> str | None:
    """Map a model's answer to exactly one option, or None when it names none or several.

    Accepts the option itself in any case/punctuation, its letter ("B", "(B)", "B. mild",
    "Option B") when ``letters``, a declared alias, a unique option named inside a longer answer,
    and a near-miss spelling (difflib ratio >= ``cutoff``; none when not ``fuzzy``).

    A reply word that is an option's word with a reversing prefix ("unimproved", "abnormal",
    "atypical", "unstable") never lets a near miss or a word inside the answer choose that option:
    it is None. So is a form graded by another option's adverb ("moderately severe" where moderate
    is an option), and one the answer only declines to exclude ("Cushing syndrome cannot be excluded").

    An option named inside a longer answer does not count where a negation governs it ("not
    pneumonia", "no longer improving", "rather than edema", "pneumonia is absent"). Options that are
    yes and no (and maybe) are read by the one yes/no reader (:mod:`aris.tasks.yesno`): "not
    present" is no, a hedge or a contradiction is None, and no near-miss spelling is guessed.
    """
    raw = clean_short(answer)
    if not raw or not options:
        return None
    forms: dict[str, str] = {}
    for opt in options:
        forms[norm(opt)] = opt
        for alias in (aliases or {}).get(opt, ()):
            forms.setdefault(norm(alias), opt)
    joined = _PREFIX_HYPHEN.sub(r"\1", raw)  # "un-improved" is "unimproved"
    key = norm(joined)
    if key in forms:
        return forms[key]
    if letters:
        m = _LETTER.match(raw.strip())
        if m:
            idx = LETTERS.index(m.group(1).upper())
            rest = norm(m.group(2) or "")
            if idx >= len(options) or not _names(rest, options[idx], forms):
                return None  # a letter we did not offer, or a letter that contradicts its words
            return options[idx]
    by_norm = {norm(o): o for o in options}
    if {"yes", "no"} <= set(by_norm) <= {"yes", "no", "maybe"}:
        value = read_yes_no(raw).value
        return by_norm[value] if value is not None else None
    vocab = {w for f in forms for w in f.split()}
    reversed_ = _reversed_words(key, vocab)

    def unless_reversed(option: str) -> str | None:
        # "unimproved" chose improved only by a near miss or a word inside it: never accept that
        words = {w for f, o in forms.items() if o == option for w in f.split()}
        return None if reversed_ & words else option

    # a unique option (or alias) named as whole words inside the answer, longest form first
    hits, negated, unsure = _named_forms(joined, forms, vocab)
    if unsure:
        return None  # "moderately severe": a grade between two options, not either
    if hits:
        found = set(hits.values())
        if len(found) == 1:
            return unless_reversed(found.pop())
        # keep the maximal forms: "severe npdr" wins over a bare "npdr" alias it contains
        maximal = {o for f, o in hits.items() if not any(f != g and f in g for g in hits)}
        return unless_reversed(maximal.pop()) if len(maximal) == 1 else None
    if negated or not fuzzy:
        return None  # it names options only to rule them out
    close = difflib.get_close_matches(key, list(forms), n=2, cutoff=cutoff)
    if len(close) == 1 or (len(close) == 2 and forms[close[0]] == forms[close[1]]):
        return unless_reversed(forms[close[0]])
    return None


# Prefixes that reverse or negate a word: "unimproved", "disimproved", "abnormal", "atypical",
# "nonspecific", "incomplete", "irregular", "immobile".
_REVERSING = ("non", "dis", "un", "ab", "in", "ir", "im", "a")
_PREFIX_HYPHEN = re.compile(r"\b(un|dis|ab|ir|im)-(?=[a-z])", re.IGNORECASE)


def _reversed_words(key: str, vocab: set[str]) -> set[str]:
    """Option words that ``key`` (normalized) names only with a reversing prefix: "unimproved" -> improved.

    A word that is itself an option's word ("unchanged", "nonproliferative" where offered) is not one.
    """
    out: set[str] = set()
    for word in key.split():
        if word in vocab:
            continue
        for prefix in _REVERSING:
            stem = word[len(prefix) :]
            if word.startswith(prefix) and len(stem) >= 4 and stem in vocab:
                out.add(stem)
    return out


_CLAUSE_MARK = "qqclauseqq"  # a word no option contains: clause ends survive norm()
_CLAUSE_BREAK = re.compile(
    r"[,;:!?()\n]|\.(?!\d)|\b(?:but|however|although|though|whereas|yet)\b", re.IGNORECASE
)
_NEGATING_WORDS = {"no", "not", "without", "never", "none", "nor", "neither", "cannot", "non", "negative"}
_NEGATING_PHRASES = (
    "rather than",
    "instead of",
    "other than",
    "free of",
    "absence of",
    "excluding",
    "except",
)
_NEGATED_AFTER = re.compile(
    r"^(?:(?:is|are|was|were|has been|have been|(?:can|could|may|might|should|must)(?: now)?(?: have)?"
    r"(?: be| been)?) )?(?:(?:very|much|far|highly|considerably) )?"
    r"(?:absent|excluded|ruled out|unlikely|less likely|incorrect|wrong|"
    r"not (?:present|seen|correct|right|likely|it)|not the (?:answer|case))\b"
)


def _named_forms(
    raw: str, forms: Mapping[str, str], vocab: set[str]
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Forms named inside ``raw``: (affirmed, negated, unsure), each form -> its option.

    NegEx-style scope: a negation word up to four words before the form, or a negating phrase
    right after it, in the same clause. Unsure: right after an adverb made of an option's word
    ("moderately severe", "mildly moderate": a grade the options do not name), or declined to be
    excluded ("cannot be ruled out": a hedge).
    """
    text = re.sub(r"n't\b", " not", raw, flags=re.IGNORECASE)
    key = norm(_CLAUSE_BREAK.sub(f" {_CLAUSE_MARK} ", text))
    affirmed: dict[str, str] = {}
    negated: dict[str, str] = {}
    unsure: dict[str, str] = {}
    for form, opt in forms.items():
        if not form:
            continue
        for m in re.finditer(rf"(?<!\w){re.escape(form)}(?!\w)", key):
            before = key[: m.start()].split()
            if _CLAUSE_MARK in before:
                before = before[len(before) - before[::-1].index(_CLAUSE_MARK) :]
            window = before[-4:]
            after = key[m.end() :].split(_CLAUSE_MARK)[0].strip()
            if (
                any(w in _NEGATING_WORDS for w in window)
                or any(p in " ".join(window) for p in _NEGATING_PHRASES)
                or _NEGATED_AFTER.match(after)
            ):
                negated[form] = opt
            elif (window and _grading(window[-1], vocab)) or _HEDGED_AFTER.match(after):
                unsure[form] = opt
            else:
                affirmed[form] = opt
    return affirmed, negated, unsure


# "X cannot be excluded" keeps X open: a hedge, not a choice ("n't" is " not" by now: "ca not").
_HEDGED_AFTER = re.compile(
    r"^(?:(?:is|are) )?(?:cannot|can not|ca not|could not|may not) (?:be |yet be )?(?:excluded|ruled out)\b"
)


def _grading(word: str, vocab: set[str]) -> bool:
    """Whether ``word`` is an adverb made of an option's word: "moderately", "mildly", "severely"."""
    return word.endswith("ly") and len(word) > 4 and (word[:-2] in vocab or word[:-2] + "e" in vocab)


def _names(rest: str, option: str, forms: dict[str, str]) -> bool:
    """Whether the words after a letter agree with that letter's option (guards "A. edema" for B)."""
    if not rest:
        return True
    target = {f for f, o in forms.items() if o == option}
    return rest in target or any(rest.startswith(f) or f.startswith(rest) for f in target)
