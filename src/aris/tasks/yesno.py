"""One yes/no reader for every yes/no answer Aris reads: the tasks' and the evaluation's.

A clinician reading "Final Answer: not present" hears *no*; "cannot be excluded" is neither yes nor
no. The reader follows the NegEx family of rule sets (Chapman et al. 2001, "A simple algorithm for
identifying negated findings and diseases in discharge summaries"; ConText, Harkema et al. 2009, for
the uncertainty triggers): trigger phrases with a scope that ends at a clause boundary, and
pseudo-triggers that look like negations but are not ("no change", "no doubt"). The trigger lists
are written here for short answers, not taken from a spaCy pipeline (negspacy/medspacy need spaCy
and a downloaded model for what is, on a one-line answer, a handful of regular expressions).

The reading is ``yes``, ``no`` or ``unreadable`` with a reason, in this order:

1. **hedge**: any uncertainty trigger ("possible", "likely", "may represent", "cannot be excluded",
   "indeterminate", "suspicious for", "no definite", a question mark ...) makes the answer
   unreadable, whatever else it says.
2. The answer is cut into clauses (punctuation, "but", "however" ...). A clause with a negation
   trigger ("no", "not seen", "absent", "negative for", "without", "ruled out" ...) reads *no*; one
   with an affirmation ("yes", "present", "seen", "positive for", "there is" ...) and no negation
   reads *yes*; one with both, where the affirmation is outside the negation's scope ("present and
   not ..."), is a **contradiction**. Words whose polarity depends on the question ("normal",
   "abnormality", "unremarkable") give a clause no reading.
3. Which clauses answer: when the finding asked about is known and a clause names it, the clauses
   naming it and the bare ones ("no", "absent") decide ("No hemorrhage, but there is edema" is *no*
   for hemorrhage). When the finding is not known, an answer that opens with a bare yes or no is
   read by that word, later bare words must agree ("Yes. No." is a contradiction). Otherwise every
   clause that reads must agree.
4. Nothing that reads: **no answer**.

It reads answers to "Is there X?"-style questions (those the evaluation and the volume task ask).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Reading = Literal["yes", "no", "unreadable"]
Reason = Literal["hedge", "contradiction", "no answer"]


@dataclass(frozen=True)
class YesNo:
    """A yes/no reading; ``value`` is None when unreadable, and ``reason`` says why."""

    reading: Reading
    reason: Reason | None = None
    evidence: str = ""  # the words that decided, or that made the answer unreadable
    answer: str = ""  # the answer as written (short), for messages

    @property
    def value(self) -> Literal["yes", "no"] | None:
        return None if self.reading == "unreadable" else self.reading

    def describe(self) -> str:
        """One line for an error, a repair prompt and a person."""
        if self.reading != "unreadable":
            return self.reading
        said = f'"{self.answer}"' if self.answer else "the answer"
        head = f"unreadable ({self.reason})"
        if self.reason == "hedge":
            return f'{head}: {said} hedges ("{self.evidence}"); a clear yes or no is needed'
        if self.reason == "contradiction":
            return f"{head}: {said} says both yes and no ({self.evidence})"
        if not self.answer:
            return f'{head}: no "Final Answer: yes" or "Final Answer: no" in the reply'
        return f"{head}: {said} is neither yes nor no"


def _words(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w'])(?:" + "|".join(alternatives) + r")(?![\w'])")


# Contractions spelled out first, so "isn't", "isnt" and "is not" are one trigger.
_CONTRACTIONS = [
    (re.compile(r"\bcan'?t\b|\bcannot\b"), "can not"),
    (re.compile(r"\bwon'?t\b"), "will not"),
    (re.compile(r"\b(\w+)n't\b"), r"\1 not"),
    (re.compile(r"\b(do|does|did|is|are|was|were|has|have|had|could|would|should)nt\b"), r"\1 not"),
]
# "could not be identified", "I do not see", "unable to visualize": negations, not hedges, whatever
# auxiliary they carry ("could" alone is a hedge).
_NOT_SEEN = re.compile(
    r"\b(?:(?:can|could|do|does|did|is|are|was|were|has|have|had|will|would|i|we) )?"
    r"(?:not|unable to) (?:be |been )?"
    r"(?:see|seen|identif\w*|detect\w*|visuali[sz]\w*|demonstrat\w*|find|found|appreciat\w*|"
    r"observ\w*|note|noted|evident|present|visible|show|shown|depicted)\b"
)
_NO_SUGGESTION = re.compile(r"\b(?:no|nothing|not) (?:\w+ ){0,2}to suggest\b")
# Pseudo-negations (NegEx PSEU): they contain a negation word but negate nothing asked about.
_PSEUDO = _words(
    r"no (?:significant |interval |definite |appreciable )?(?:change|increase|decrease|progression)",
    r"not only",
    r"not just",
    r"no doubt",
    r"without (?:a )?doubt",
    r"no question",
    r"without question",
    r"without difficulty",
    r"no further",
)
_HEDGE = [
    _words(
        r"(?:can|could|will) not (?:be )?(?:entirely |completely |definitely |fully )?"
        r"(?:excluded|ruled out|exclude|rule out|determined|determine|assessed|assess|evaluated|"
        r"evaluate|say|tell|confirm|confirmed|be sure|sure|comment)",
        r"unable to (?:determine|assess|evaluate|exclude|rule out|say|tell|confirm|comment)",
        r"not (?:be |been )?(?:entirely |completely |definitely |fully )?(?:excluded|ruled out)",
        r"not (?:necessarily|sure|certain|clear|clearly|definite\w*|conclusive\w*|confirmed|proven|"
        r"known|obvious\w*|entirely|completely)",
        r"no (?:definite\w*|convincing|obvious|clear|significant|large|major|gross|substantial|sizable)",
    ),
    _words(
        r"rule out",
        r"possibl[ey]",
        r"probabl[ey]",
        r"(?:un)?likely",
        r"presum\w*",
        r"suspect\w*",
        r"suspicio\w*",
        r"questionabl[ey]",
        r"question of",
        r"equivocal",
        r"indeterminate",
        r"inconclusive",
        r"uncertain\w*",
        r"unclear",
        r"unsure",
        r"borderline",
        r"non-?diagnostic",
        r"maybe",
        r"perhaps",
        r"suggest\w*",
        r"worrisome",
        r"concern\w* (?:for|of)",
        r"compatible with",
        r"may",
        r"might",
        r"could",
        r"do not know",
        r"unknown",
        r"(?:difficult|hard) to",
        r"appears? to",
        r"seems?",
        r"versus",
        r"vs\.?",
    ),
    re.compile(r"\?"),
]
_NEGATION = _words(
    r"no",
    r"not",
    r"without",
    r"never",
    r"none",
    r"nothing",
    r"neither",
    r"nor",
    r"nil",
    r"absen(?:t|ce)",
    r"negative",
    r"free of",
    r"lack(?:s|ing)?",
    r"denie[sd]",
    r"deny",
    r"ruled out",
    r"rules out",
    r"excluded",
    r"resolved",
    r"false",
    r"nope",
    r"nah",
)
_YES_STRONG = _words(
    r"yes",
    r"yeah",
    r"yep",
    r"yup",
    r"true",
    r"correct",
    r"affirmative",
    r"present",
    r"positive",
    r"seen",
    r"visible",
    r"visuali[sz]ed",
    r"identified",
    r"noted",
    r"evident",
    r"demonstrated",
    r"detected",
    r"observed",
    r"confirmed",
    r"appreciated",
    r"exists?",
    r"shown",
    r"depicted",
)
_YES_WEAK = _words(
    r"there (?:is|are|was|were)",
    r"there's",
    r"shows?",
    r"showing",
    r"demonstrates?",
    r"reveals?",
    r"has",
    r"have",
    r"contains?",
)
# Whether "no abnormality" or "normal" means yes depends on the question: such a clause reads nothing.
_RELATIVE = _words(r"(?:ab)?normal\w*", r"unremarkable", r"intact", r"healthy", r"within normal limits")
_BARE_ANSWER = re.compile(
    r"^(yes|yeah|yep|yup|true|correct|affirmative|positive|no|nope|nah|false|negative|none)\s*[,.;:!-]\s*"
)
_CLAUSE = re.compile(
    r"[,;:!()\n]|\.(?!\d)|(?<![\w'])(?:but|however|although|though|except|whereas|yet)(?![\w'])"
)
_STOP = frozenset(
    "a an the is are was were be been being there this that it its of in on at to for with and or any "  # noqa: SIM905
    "evidence sign signs finding findings i we see also".split()
)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _normalize(text: str) -> str:
    t = text.lower().replace("’", "'").replace("‘", "'")
    t = re.sub(r"[*_`#>\"“”\[\]{}]", " ", t)
    for pattern, repl in _CONTRACTIONS:
        t = pattern.sub(repl, t)
    t = _NOT_SEEN.sub(" not seen ", t)
    t = _NO_SUGGESTION.sub(" no evidence of ", t)
    return " ".join(t.split())


@dataclass
class _Clause:
    text: str
    polarity: Literal["yes", "no", "both"] | None
    bare: bool  # nothing but answer words: "no", "not seen", "absent"


def _clause(text: str) -> _Clause:
    neg = [m.start() for m in _NEGATION.finditer(text)]
    strong = [m.start() for m in _YES_STRONG.finditer(text)]
    weak = bool(_YES_WEAK.search(text))
    polarity: Literal["yes", "no", "both"] | None = None
    if _RELATIVE.search(text):
        polarity = None
    elif neg:
        # an affirmation before the first negation is outside its scope: "present and not old"
        polarity = "both" if any(s < neg[0] for s in strong) else "no"
    elif strong or weak:
        polarity = "yes"
    rest = _YES_WEAK.sub(" ", _YES_STRONG.sub(" ", _NEGATION.sub(" ", text)))
    bare = not [w for w in _WORD.findall(rest) if w not in _STOP]
    return _Clause(text, polarity, bare)


def _stems(finding: str) -> list[str]:
    words = [w for w in _WORD.findall(_normalize(finding)) if w not in _STOP and len(w) >= 3]
    return [w[: max(4, len(w) - 2)] for w in words]


def _names(clause: str, stems: list[str]) -> bool:
    return any(w.startswith(s) for w in _WORD.findall(clause) for s in stems)


def _agree(clauses: list[_Clause]) -> YesNo | None:
    """The one polarity of ``clauses`` that read, a contradiction, or None when none reads."""
    for c in clauses:
        if c.polarity == "both":
            return YesNo("unreadable", "contradiction", f'"{c.text}"')
    said = {c.polarity: c.text for c in clauses if c.polarity is not None}
    if len(said) > 1:
        return YesNo("unreadable", "contradiction", f'"{said["yes"]}" against "{said["no"]}"')
    if said:
        ((polarity, _),) = said.items()
        return YesNo(polarity)  # type: ignore[arg-type]
    return None


def read_yes_no(answer: str, *, finding: str | None = None) -> YesNo:
    """Read a short answer (the text after "Final Answer:", or a dataset's reference) as yes or no.

    ``finding``: what the question asked about ("hemorrhage"), when known; it decides which clauses
    answer when the reply also mentions other findings.
    """
    text = _normalize(answer)
    said = " ".join(answer.split())[:120]
    if not text:
        return YesNo("unreadable", "no answer", "", said)
    text = _PSEUDO.sub(" ", text)
    for pattern in _HEDGE:
        m = pattern.search(text)
        if m:
            return YesNo("unreadable", "hedge", m.group(0), said)
    m = _BARE_ANSWER.match(text)
    parts = [m.group(1), text[m.end() :]] if m else [text]
    clauses = [_clause(p.strip()) for part in parts for p in _CLAUSE.split(part) if p.strip()]
    decided = _decide(clauses, finding)
    if decided is None:
        return YesNo("unreadable", "no answer", "", said)
    return YesNo(decided.reading, decided.reason, decided.evidence or text[:120], said)


def _decide(clauses: list[_Clause], finding: str | None) -> YesNo | None:
    if finding:
        stems = _stems(finding)
        relevant = [c for c in clauses if c.bare or _names(c.text, stems)]
        if any(not c.bare for c in relevant):
            decided = _agree(relevant)
            if decided is not None:
                return decided
    elif clauses and clauses[0].bare and clauses[0].polarity in ("yes", "no"):
        # "Yes, there is hemorrhage but no midline shift": the opening word answers; the rest explains
        return _agree([c for c in clauses if c.bare])
    return _agree(clauses)


def read_reply(reply: str, *, finding: str | None = None) -> YesNo:
    """Read a whole reply: thought removed, the answer after its LAST "Final Answer:".

    No "Final Answer:" is unreadable (reason "no answer"): the evaluated prompt asks for one, and a
    yes or no guessed from the prose would be a guess.
    """
    from aris.tasks.parsing import final_answer  # parsing imports this module for option matching

    fa = final_answer(reply)
    if fa is None:
        return YesNo("unreadable", "no answer", "")
    return read_yes_no(fa, finding=finding)
