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
   "indeterminate", "suspicious for", "no definite", "a possibility of", "high likelihood of",
   "consistent with", "favors", "not assessed", "outside the field of view", a differential "X or Y",
   a question mark ...) makes the answer unreadable, whatever else it says. "Consistent with" and
   "compatible with" both say the picture fits a diagnosis, not that the finding is seen; "no
   findings consistent with X" is read as a negation.
2. The answer is cut into clauses (punctuation, "but", "however" ...). In a clause, a negation
   trigger scopes over what follows it ("no", "without", "negative for"), over what precedes it
   ("absent", "ruled out", "resolved"), or both ways ("not seen"); a trigger with nothing named on
   its side scopes over the whole clause ("Hemorrhage - none"). A double negation affirms ("has not
   resolved" is "persists"). Something named outside every scope, in positive form, is affirmed:
   "Acute subdural hematoma with no midline shift" says yes for the hematoma and no for the shift.
   A clause that only names things ("Large pneumothorax" before ", no mediastinal shift") is
   affirmed where the reply negates what it names and gives no bare yes or no (a findings list).
   A comma-joined clause after a negation may continue its list: "No hemorrhage, edema, or mass
   effect" (a run ending "or ...") is negated, "No pneumothorax, small left effusion" reads both
   ways. A finding named before a "not" that negates a predicate ("hemorrhage is not the case", "the
   fracture is not acute") reads both ways. Words whose polarity depends on the question
   ("normal", "abnormality", "unremarkable") give a clause no reading.
3. Which clauses answer: when the finding asked about is known, the clauses naming it and the bare
   ones ("no", "absent") decide ("No hemorrhage, but there is edema" is *no* for hemorrhage); when
   they do not, the answer is unreadable: another finding's negation is never borrowed. A finding
   that names a side ("right pleural effusion") is not named by a clause on the other side ("left
   pleural effusion"; "bilateral" covers both). When the finding is not known, an answer that
   opens with a bare yes or no is read by that word, later bare words must agree ("Yes. No." is a
   contradiction). Otherwise every clause that reads must agree: a reply that affirms one thing and
   negates another is a **contradiction**.
4. Nothing that reads: **no answer**.

It reads answers to "Is there X?"-style questions (those the evaluation and the volume task ask).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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
_NO_SUGGESTION = re.compile(
    r"\b(?:no|nothing|not) (?:\w+ ){0,2}(?:to suggest|suggest(?:ive|ing) of|(?:consistent|compatible) with)\b"
)
# A double negation affirms: "has not resolved", "not yet resolved", "unresolved" mean it is still there.
_NOT_RESOLVED = re.compile(
    r"\b(?:(?:has|have|had|is|are|was|were) )?not (?:yet )?(?:been )?resolv(?:ed|ing)\b|\bunresolved\b"
)
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
        # not looked at is not absent: "not assessed", "not included in the field of view"
        r"not (?:be |been )?(?:adequately |well |fully |completely |entirely )?"
        r"(?:assess\w*|evaluat\w*|included|imaged|covered|scanned)",
        r"not (?:be |been )?(?:adequately|well|fully|completely|entirely) (?:visuali[sz]ed|seen)",
        r"(?:outside|beyond|out of|not in|not within) (?:the |this |our )?(?:\w+ )?(?:field of view|fov)",
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
        # "compatible with" and "consistent with" both say the picture fits a diagnosis, not that the
        # finding is seen; neither is a yes ("no findings consistent with" is normalized to a no)
        r"compatible with",
        r"consistent with",
        r"possibilit\w*",
        r"probabilit\w*",
        r"likelihood",
        r"potential\w*",
        r"favou?r(?:s|ed|ing)?",
        r"in favou?r of",
        r"differential",
        r"and/or",
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
# Negation triggers (NegEx). Each scopes over the rest of its clause in one direction: a pre-trigger
# ("no", "without", "negative for") over what FOLLOWS it, a post-trigger ("absent", "ruled out",
# "resolved") over what PRECEDES it, "not seen" (from "is not seen" and "I do not see") both ways. A
# trigger with nothing named on its side ("Hemorrhage - none", "absent flow voids") scopes the whole
# clause. A finding named outside every scope, in positive form, is affirmed: "Large pneumothorax, no
# mediastinal shift" and "acute subdural hematoma with no midline shift" affirm what they name first.
_PRE = [
    r"no",
    r"not",
    r"without",
    r"never",
    r"none",
    r"nothing",
    r"neither",
    r"nor",
    r"nil",
    r"absence",
    r"negative for",
    r"free of",
    r"lack(?:s|ing)?",
    r"deny",
    r"denie[sd]",
    r"rules out",
    r"false",
    r"nope",
    r"nah",
]
_POST = [r"absent", r"negative", r"ruled out", r"excluded", r"resolved"]
_BOTH = [r"not seen"]
_NEGATION = _words(*_BOTH, *_PRE, *_POST)
_KIND = [(re.compile(r"(?:" + "|".join(ws) + r")$"), kind) for ws, kind in ((_BOTH, "both"), (_PRE, "pre"))]
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
    r"persist(?:s|ent|ing|ed)?",
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
# "hemorrhage or calcification": a differential, not an answer (a negation distributes over it).
_OR = _words(r"or")
_STOP = frozenset(
    "a an the is are was were be been being there this that it its of in on at to for with and or any "  # noqa: SIM905
    "evidence sign signs finding findings i we see also these those here "
    "scan scans slice slices image images study exam examination series view views ct mri film".split()
)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# The side a finding is on: a reply about the other side does not answer for this one.
_SIDES = {"left": {"left"}, "right": {"right"}, "bilateral": {"left", "right"}}
_SIDE = re.compile(r"(?<![\w'])(left|right|bilateral)(?:ly)?(?![\w'])")


def _normalize(text: str) -> str:
    t = text.lower().replace("’", "'").replace("‘", "'")
    t = re.sub(r"[*_`#>\"“”\[\]{}]", " ", t)
    for pattern, repl in _CONTRACTIONS:
        t = pattern.sub(repl, t)
    t = _NOT_SEEN.sub(" not seen ", t)
    t = _NO_SUGGESTION.sub(" no evidence of ", t)
    t = _NOT_RESOLVED.sub(" persists ", t)
    return " ".join(t.split())


Polarity = Literal["yes", "no", "both"]


@dataclass
class _Clause:
    text: str
    polarity: Polarity | None  # without regard to the finding asked about
    bare: bool  # nothing but answer words: "no", "not seen", "absent"
    relative: bool
    negated: bool  # a negation of something the clause names itself ("no midline shift")
    affirmed: bool  # a yes word outside every negation's scope
    strong: bool  # a strong yes word ("present", "yes") outside every negation's scope
    reaches_end: bool  # a negation's scope runs to the clause's end: "no hemorrhage, [edema, or ...]"
    differential: bool  # "X or Y" outside any negation
    content: list[tuple[int, str, bool]]  # (position, word, inside a negation's scope)
    predicates: list[int] = field(default_factory=list)  # where a "not" negates what follows it
    continues: bool = False  # a comma-joined clause after a negation, which it may still govern
    listed: bool = False  # ... and one it does govern: "no hemorrhage, edema, or mass effect"


def _sides(words: list[str]) -> set[str]:
    return {s for w in words for m in [_SIDE.fullmatch(w)] if m for s in _SIDES[m.group(1)]}


_PLACE = frozenset(
    "on in at within along across over under near from to throughout inside outside by".split()  # noqa: SIM905
)


def _names_thing(text: str, direction: int = 1) -> bool:
    """Whether ``text`` (read from the trigger outwards) names a thing before any place: "mediastinal
    shift" does, "on the left" and "left side" do not."""
    for w in _WORD.findall(text)[::direction]:
        if w in _PLACE:
            return False
        if w in _STOP or w in ("side", "sides") or _SIDE.fullmatch(w) or _NEGATION.fullmatch(w):
            continue
        if _YES_STRONG.fullmatch(w) or _YES_WEAK.fullmatch(w):
            continue
        return True
    return False


def _clause(text: str) -> _Clause:
    triggers = [(m.start(), m.end(), m.group(0)) for m in _NEGATION.finditer(text)]
    spans = [(s, e) for s, e, _ in triggers]

    def free(s: int, e: int) -> bool:
        return not any(s < te and ts < e for ts, te in spans)

    strong = [(m.start(), m.end()) for m in _YES_STRONG.finditer(text) if free(m.start(), m.end())]
    weak = [(m.start(), m.end()) for m in _YES_WEAK.finditer(text) if free(m.start(), m.end())]
    taken = spans + strong + weak
    words = [
        (m.start(), m.group(0))
        for m in _WORD.finditer(text)
        if m.group(0) not in _STOP and not any(s <= m.start() < e for s, e in taken)
    ]
    scopes: list[tuple[int, int]] = []  # over what is named
    reach: list[tuple[int, int]] = []  # over yes words: "yes and no" is both
    predicates: list[int] = []  # "not" negating a predicate: "hemorrhage is not the case"
    separate = False
    for s, e, trigger in triggers:
        kind = next((k for pattern, k in _KIND if pattern.match(trigger)), "post")
        ahead = [p for p, _ in words if p >= e]
        behind = [p for p, _ in words if p < s]
        own = (0, len(text)) if kind == "both" else (e, len(text)) if kind == "pre" else (0, s)
        reach.append(own)
        # a negation of something it names itself: "no midline shift", "mediastinal shift absent";
        # not "not seen on the left" or "none in the left lung", whose subject is named elsewhere
        if (kind != "post" and _names_thing(text[e:])) or (kind != "pre" and _names_thing(text[:s], -1)):
            separate = True
        if kind == "both" or (kind == "pre" and not ahead) or (kind == "post" and not behind):
            scopes.append((0, len(text)))
        else:
            scopes.append(own)
            if trigger in ("not", "never"):
                predicates.append(s)

    def scoped(pos: int, within: list[tuple[int, int]] = scopes) -> bool:
        return any(a <= pos < b for a, b in within)

    content = [(p, w, scoped(p)) for p, w in words]
    affirmed = any(not scoped(s, reach) for s, _ in strong + weak)
    relative = bool(_RELATIVE.search(text))
    outside = [w for _, w, inside in content if not inside]
    polarity: Polarity | None = None
    if relative:
        polarity = None
    elif triggers:
        # something affirmed outside the negation's scope: "present and not old", "pneumothorax
        # without tension" (which of the two answers depends on the question)
        polarity = "both" if any(not scoped(s, reach) for s, _ in strong) or outside else "no"
    elif strong or weak:
        polarity = "yes"
    differential = not triggers and any(not scoped(m.start()) for m in _OR.finditer(text))
    return _Clause(
        text=text,
        polarity=polarity,
        bare=not content,
        relative=relative,
        negated=separate and any(inside for _, _, inside in content),
        affirmed=affirmed,
        strong=any(not scoped(s, reach) for s, _ in strong),
        reaches_end=any(b == len(text) and a < len(text) for a, b in scopes) and bool(content),
        differential=differential,
        content=content,
        predicates=predicates,
    )


def _finding_words(finding: str) -> tuple[list[str], set[str]]:
    """The finding's stems (side words apart) and the sides it names."""
    words = [w for w in _WORD.findall(_normalize(finding)) if w not in _STOP]
    stems = [w[: max(4, len(w) - 2)] for w in words if len(w) >= 3 and not _SIDE.fullmatch(w)]
    return stems, _sides(words)


def _about(c: _Clause, stems: list[str], sides: set[str]) -> Polarity | Literal["other", False] | None:
    """How a clause answers for the finding: False when it does not name it (or names another side)."""
    named = [(p, inside) for p, w, inside in c.content if any(w.startswith(s) for s in stems)]
    if not named:
        return False
    mentions = [inside for _, inside in named]
    said = _sides([w for _, w, _ in c.content])
    if sides and said and not sides <= said:
        return "other"  # "left pleural effusion" does not answer for the right one
    if c.relative:
        return None
    if all(mentions):
        # "yes there is no hemorrhage": the yes answers, the no negates; "edema is present without
        # hemorrhage": the yes belongs to the edema
        outside = [w for _, w, inside in c.content if not inside]
        return "both" if c.strong and not outside else "no"
    if any(mentions):
        return "both"
    # named in positive form: affirmed by a yes word, or by negating something else beside it
    if c.continues:
        return "no" if c.listed else "both"
    if any(p < q for p, _ in named for q in c.predicates):
        # "hemorrhage is not the case" denies it, "the fracture is not acute" affirms it
        return "both"
    return "yes" if c.affirmed or c.negated else None


def _agree(said: list[tuple[Polarity | None, str]]) -> YesNo | None:
    """The one polarity of the clauses that read, a contradiction, or None when none reads."""
    for polarity, text in said:
        if polarity == "both":
            return YesNo("unreadable", "contradiction", f'"{text}"')
    by = {polarity: text for polarity, text in said if polarity is not None}
    if len(by) > 1:
        return YesNo("unreadable", "contradiction", f'"{by["yes"]}" against "{by["no"]}"')
    if by:
        ((polarity, _),) = by.items()
        return YesNo(polarity)  # type: ignore[arg-type]
    return None


def _clauses(parts: list[str]) -> list[_Clause]:
    """The clauses of the answer; a clause that may continue a negated list is marked ``continues``."""
    out: list[_Clause] = []
    for part in parts:
        prev: _Clause | None = None
        commas, pos = True, 0  # whether only commas stand between ``prev`` and the next clause
        bounds = [(m.start(), m.end(), m.group(0)) for m in _CLAUSE.finditer(part)]
        for start, end, sep in [*bounds, (len(part), len(part), "")]:
            piece = part[pos:start].strip()
            if piece:
                c = _clause(piece)
                if prev is not None and commas and not c.bare and c.polarity is None and not c.relative:
                    c.continues = prev.reaches_end or prev.continues
                out.append(c)
                prev, commas = c, True
            commas = commas and sep == ","
            pos = end
    # "No hemorrhage, edema, or mass effect": a run that ends "or ..." is the negated list; any other
    # run ("No pneumothorax, small left effusion") may as well be a new finding: it reads both ways
    run: list[_Clause] = []
    for i, clause in enumerate(out):
        if clause.continues:
            run.append(clause)
        if run and (not clause.continues or i == len(out) - 1):
            for item in run:
                item.listed = bool(re.match(r"(?:or|nor) ", run[-1].text))
            run = []
    return out


def _decide(clauses: list[_Clause], finding: str | None) -> YesNo | None:
    # A findings list ("Large pneumothorax, no mediastinal shift"; "Small effusion. No pneumothorax."):
    # where the reply negates what it names and gives no bare yes or no, a finding named in positive
    # form, with no word of its own, is affirmed.
    listing = any(c.negated for c in clauses) and not any(c.bare and c.polarity for c in clauses)

    def general(c: _Clause) -> Polarity | None:
        if c.continues:
            return None if c.listed else "both"
        if c.polarity is None and listing and not c.bare and not c.relative:
            return "yes"
        return c.polarity

    if finding:
        # the clauses that name the finding, and the bare ones, answer; another finding's negation
        # does not ("Small effusion. No pneumothorax." is yes for the effusion)
        stems, sides = _finding_words(finding)
        said: list[tuple[Polarity | None, str]] = []
        naming = other_side = False
        for c in clauses:
            about = None if c.bare else _about(c, stems, sides)
            if about == "other":
                other_side = True
            elif c.bare or about is not False:
                naming = naming or not c.bare
                if about is None and not c.bare and listing and not c.relative:
                    about = "yes"
                said.append((c.polarity if c.bare else about, c.text))  # type: ignore[arg-type]
        if naming:
            return _agree(said)
        if other_side or not any(c.bare and c.polarity for c in clauses):
            return None  # it speaks of the other side, or of other findings only
        return _agree([(general(c), c.text) for c in clauses])
    if clauses and clauses[0].bare and clauses[0].polarity in ("yes", "no"):
        # "Yes, there is hemorrhage but no midline shift": the opening word answers; the rest explains.
        # Unless all the rest says the opposite: "No, hemorrhage is present" is a contradiction.
        opening = clauses[0].polarity
        firm = [p for p in (general(c) for c in clauses if not c.bare) if p in ("yes", "no")]
        if firm and opening not in firm:
            return _agree([(opening, clauses[0].text), *((p, "the rest") for p in firm)])
        return _agree([(c.polarity, c.text) for c in clauses if c.bare])
    return _agree([(general(c), c.text) for c in clauses])


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
    clauses = _clauses(parts)
    for i, c in enumerate(clauses):
        after = clauses[i + 1] if i + 1 < len(clauses) else None
        if c.differential and not c.continues and not (after and after.bare and after.polarity == "no"):
            # "hemorrhage or calcification": a differential ("no hemorrhage or edema" and "hemorrhage or
            # edema: absent" are negations over the list)
            return YesNo("unreadable", "hedge", c.text, said)
    decided = _decide(clauses, finding)
    if decided is None:
        return YesNo("unreadable", "no answer", "", said)
    return YesNo(decided.reading, decided.reason, decided.evidence or text[:120], said)


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
