"""Deterministic red-flag rules over a patient's own words. The model never decides an escalation.

Each rule is a set of concepts that must all be present (each concept: regular expressions over
lower-cased text). A match preceded, within its clause, by a negation ("no", "not", "don't have",
"denies", "without" ...) does not count, so "no chest pain" never escalates while "my chest hurts but
I can't breathe" does. Concepts may come from different answers: chest pain said first and
breathlessness three answers later still make the rule fire.

Two more contexts from ConText (Harkema et al. 2009) keep a mention from counting: *historical*
("died of a heart attack", "a seizure years ago": within four words of the trigger) and
*hypothetical* ("what should I do if ...", "is ... a side effect": the whole clause). Neither applies
to suicidality: a past attempt or a "what if" about dying is still for a person to hear now.

Deliberately over-inclusive: a false alarm costs a phone call, a missed one can cost a life. The
phrasings the rules must (and must not) catch are kept in ``tests/tasks/test_redflags.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

EMERGENCY_ACTION = (
    "This may be an emergency. Call your local emergency number (911 in the US, 112 in Europe) or go to the "
    "nearest emergency department now. Do not wait for this interview to finish."
)
CRISIS_ACTION = (
    "You deserve support right now. If you might act on these thoughts, call your local emergency number. "
    "In the US call or text 988 (Suicide & Crisis Lifeline); elsewhere, contact your local crisis line. "
    "A clinician is being alerted."
)

NEGATIONS = {
    "no",
    "not",
    "never",
    "without",
    "denies",
    "deny",
    "denied",
    "don't",
    "dont",
    "doesn't",
    "didn't",
    "haven't",
    "hasn't",
    "isn't",
    "wasn't",
    "aren't",
    "nor",
    "neither",
    "none",
}
_CLAUSE = re.compile(r"[.!?;,\n]|\bbut\b|\bhowever\b|\balthough\b")

C = {
    "chest_pain": [
        r"chest (pain|pains|pressure|tightness|discomfort|ache|hurts?|is (tight|hurting|heavy))",
        r"(pain|pressure|tightness|ache|heaviness) (in|on) (my |the )?chest",
        r"(crushing|squeezing|stabbing) (pain|feeling)",
        r"(pressure|tightness|heaviness|pain) (in|on|across) (my |the )?chest",
        r"my chest (hurts|is tight|feels (tight|heavy)|is killing me)",
        r"heart attack",
        r"angina",
    ],
    "dyspnea": [
        r"short(ness)? of breath",
        r"(can'?t|cannot|can not|hard to|trouble|difficulty|struggling to|struggle to) (catch (my )?breath|breath(e|ing)?|get (enough )?air)",
        r"breathless",
        r"out of breath",
        r"difficulty breathing",
        r"trouble breathing",
        r"gasping",
        r"dyspn(o)?ea",
        r"winded",
        r"wheez\w*",
        r"(not able to|unable to) (breathe|catch (my )?breath)",
    ],
    "radiating": [
        r"(pain|it|ache) (spreads?|spreading|radiates?|radiating|goes|going|moves?) (to|into|down) (my )?(left )?(arm|jaw|neck|back|shoulder)",
        r"(left )?(arm|jaw) (pain|hurts|aches|is numb)",
        r"(spreads?|spreading|radiates?|radiating|goes|going|moves?|moving) (up |down )?(to|into|down|through) (my )?(left )?(arm|jaw|neck|back|shoulder)",
    ],
    "presyncope": [
        r"(going to|gonna|about to|might|could) (pass|black) out",
        r"feel(ing|s)? (faint|like (i'?m|i am) (going to|gonna) (faint|pass out))",
        r"light-? ?headed",
        r"dizzy",
    ],
    "nausea": [
        r"nause\w*",
        r"sick to my stomach",
        r"vomit\w*",
        r"throw(ing)? up",
        r"threw up",
    ],
    "sweating": [r"sweat(ing|y)", r"clammy", r"diaphore"],
    "face_droop": [
        r"(face|mouth|smile|lip) (is |was |went |looks |feels )?(droop\w*|sag\w*|uneven|crooked|lopsided|numb)",
        r"droop\w* (face|mouth|smile|on one side)",
        r"one side of (my |his |her |the )?face",
    ],
    "arm_weakness": [
        r"(arm|leg|hand) (is |feels |went |has gone |gone )?(suddenly )?(weak|numb|heavy|limp|paralyzed|dead)",
        r"(can'?t|cannot|unable to|couldn'?t) (lift|raise|move|feel) (my |his |her )?(left |right )?(arm|leg|hand)",
        r"(weakness|numbness) (in|on|of) (one|the (left|right)|my (left|right)) (side|arm|leg)",
        r"numb on one side",
    ],
    "speech": [
        r"slurr(ed|ing)",
        r"(can'?t|cannot|trouble|difficulty|hard to|unable to) (speak|talk|get (my |the )?words out|find (my |the )?words|understand (people|speech))",
        r"words (are |come |came |keep )?(coming )?(out )?(jumbled|garbled|wrong|mixed up|slurred)",
        r"speech (is )?(strange|weird|garbled|slurred)",
    ],
    "stroke_other": [
        r"worst headache (of|in) my life",
        r"worst headache (i'?ve|i have) ever had",
        r"sudden(ly)?,? (severe|excruciating|explosive|terrible|horrible|splitting|violent) headache",
        r"thunderclap",
        r"sudden(ly)? (i )?(lost|loss of|can'?t see|cannot see|went blind|blind)",
        r"(lost|loss of) (vision|sight) (suddenly|all of a sudden)",
    ],
    "suicidal": [
        r"(kill|hurt|harm)\w* (myself|my ?self)",
        r"suicid(e|al)",
        r"end(ing)? (my|my own) (life|lives)|end(ing)? it all",
        r"(want|going|plan\w*|ready|about) to end it\b",
        r"take my (own )?life",
        r"want to (die|be dead|not be here|disappear forever)",
        r"(don'?t|do not) want to (live|be alive|wake up|go on|be here|exist)",
        r"(not sure|don'?t know|do not know|unsure|wonder(ing)?) (if |whether )?i (still )?(want|wanna) to (live|go on|be alive|be here|keep going|exist)",
        r"wish (i|i'd) (was|were|had) (dead|never been born)",
        r"wish i (could )?(die|disappear|not wake up|never wake up)",
        r"(go to sleep|fall asleep) and (never|not) wake up",
        r"(not|isn'?t|is not) worth living|life (isn'?t|is not) worth it",
        r"better off (dead|without me)",
        r"no (reason|point) (to |in )?(live|living|going on|being alive|carrying on)",
        r"(nobody|no one|no-one) (would|will) (miss|care about|notice) (me|if i)",
        r"can'?t (go on|take (it|this) anymore|keep going)",
        r"self[- ]?harm",
        r"cut(ting)? myself(?! (shaving|cooking|by accident|accidentally|on |with a kitchen|while))",
        r"overdose",
        r"took (a whole|the whole|an entire|all|all of|too many|a lot of|a bunch of|a handful of|a bottle of|extra)( bottle of| of)? (my )?(pills|tablets|meds|medications?|sleeping pills|painkillers)",
    ],
    "severe_bleeding": [
        r"(bleeding|blood) (heavily|a lot|won'?t stop|will not stop|that won'?t stop|doesn'?t stop|non-?stop|everywhere|is pouring|pouring|gushing)",
        r"(heavy|severe|uncontrolled|uncontrollable|profuse|massive) bleeding",
        r"(vomit\w*|throw\w* up|threw up|cough\w* up|spit\w* up) (a lot of |some )?blood",
        r"soak\w* (through )?(a |the |my )?(pad|pads|towel|towels|bandage|bandages)",
        r"can'?t stop the bleeding",
        r"black,? tarry stool",
    ],
    "airway_swelling": [
        r"(throat|tongue|lips?|face|mouth) (is |are |feels |feel |started )?(swelling|swollen|swell\w*|closing|closing up|tight)",
        r"swelling (of|in) (my )?(throat|tongue|lips?|face|mouth)",
        r"throat (is )?(closing|closing up)",
        r"throat (feels|is) (like it'?s |like it is )?(closing|tight|swelling)",
        r"anaphyla\w*",
        r"epi-?pen",
    ],
    "hives": [r"hives", r"welts", r"rash all over"],
    "allergic": [
        r"allergic reaction",
        r"allergy attack",
        r"reacting to (the |a )?(peanut|bee|sting|shellfish|medication|drug)",
    ],
    "severe_dyspnea": [
        r"(can'?t|cannot|can not) breathe",
        r"(not able to|unable to) breathe",
        r"gasping for (air|breath)",
        r"(lips|face|fingers) (are |is )?(turning )?(blue|grey|gray)",
        r"choking",
    ],
    "unconscious": [
        r"(passed|blacked) out",
        r"faint(ed|ing)",
        r"unconscious",
        r"lost consciousness",
        r"unresponsive",
    ],
    "seizure": [r"seizure", r"convuls\w*", r"fit(s)? (of shaking|and shaking)"],
    "fever": [
        r"fever",
        r"feverish",
        r"high temperature",
        r"temperature of (3[89]|4[0-2]|10[2-6])",
        r"chills",
        r"shivering",
        r"rigors",
        r"burning up",
    ],
    "confusion": [
        r"confus\w*",
        r"disoriented",
        r"delirious",
        r"not making (any )?sense",
        r"(can'?t|cannot) think straight",
        r"(very |really )?(hard|difficult) to wake( up)?",
        r"(won'?t|will not) wake up",
    ],
    "tachycardia": [
        r"heart (is )?(racing|pounding|beating (really |very |so )?fast)",
        r"racing heart",
        r"pulse (is )?(racing|very fast|really fast)",
    ],
    "hypotension": [
        r"(low|dropping) blood pressure",
        r"blood pressure (is |was )?(very |really )?(low|dropping)",
    ],
    "mottled": [r"mottled", r"blotchy (skin|legs|arms)"],
    "infection": [
        r"infection",
        r"infected",
        r"uti\b",
        r"pneumonia",
        r"cellulitis",
        r"wound (is )?(red|hot|oozing|spreading|smells)",
        r"pus\b",
    ],
    "sepsis_named": [r"sepsis", r"septic"],
    "doom": [
        r"feel(s|ing)? like (i'?m|i am) (dying|going to die)",
        r"something is (very|terribly|really|seriously) wrong",
    ],
    "stiff_neck": [r"stiff neck", r"neck (is )?(stiff|rigid)", r"can'?t (bend|touch) my (neck|chin)"],
}
_COMPILED = {k: [re.compile(rf"(?<!\w){p}") for p in v] for k, v in C.items()}


@dataclass(frozen=True)
class Rule:
    id: str
    label: str
    any_of: tuple[tuple[str, ...], ...]  # alternatives, each a set of concepts that must all be present
    urgency: Literal["emergency", "urgent"] = "emergency"
    action: str = EMERGENCY_ACTION


RULES: tuple[Rule, ...] = (
    Rule(
        "cardiac",
        "chest pain with breathlessness, radiating pain, sweating or fainting (heart attack or pulmonary embolism?)",
        (
            ("chest_pain", "dyspnea"),
            ("chest_pain", "radiating"),
            ("chest_pain", "sweating"),
            ("chest_pain", "unconscious"),
            ("chest_pain", "presyncope"),
            ("chest_pain", "nausea"),
        ),
    ),
    Rule(
        "stroke",
        "stroke signs (FAST: face drooping, arm weakness, speech difficulty; or sudden worst headache/vision loss)",
        (("face_droop",), ("arm_weakness",), ("speech",), ("stroke_other",)),
    ),
    Rule("suicide", "suicidal thoughts or self-harm", (("suicidal",),), action=CRISIS_ACTION),
    Rule(
        "bleeding",
        "severe or uncontrolled bleeding, or bleeding from the gut or lungs",
        (("severe_bleeding",),),
    ),
    Rule(
        "anaphylaxis",
        "signs of anaphylaxis (throat, tongue or lip swelling; hives with breathing difficulty)",
        (
            ("airway_swelling",),
            ("hives", "dyspnea"),
            ("hives", "severe_dyspnea"),
            ("hives", "presyncope"),
            ("hives", "unconscious"),
            ("allergic", "dyspnea"),
            ("allergic", "severe_dyspnea"),
            ("allergic", "presyncope"),
            ("allergic", "airway_swelling"),
        ),
    ),
    Rule("breathing", "severe difficulty breathing", (("severe_dyspnea",),)),
    Rule("unconscious", "loss of consciousness", (("unconscious",),)),
    Rule("seizure", "a seizure", (("seizure",),)),
    Rule("meningitis", "fever with a stiff neck (meningitis?)", (("fever", "stiff_neck"),)),
    Rule(
        "sepsis",
        "signs of sepsis (fever or infection with confusion, a racing heart, low blood pressure or mottled skin)",
        (
            ("sepsis_named",),
            ("fever", "confusion"),
            ("fever", "tachycardia"),
            ("fever", "hypotension"),
            ("fever", "mottled"),
            ("fever", "doom"),
            ("infection", "confusion"),
            ("infection", "tachycardia"),
            ("infection", "hypotension"),
            ("infection", "mottled"),
            ("infection", "doom"),
        ),
    ),
)


@dataclass(frozen=True)
class RedFlag:
    id: str
    label: str
    urgency: str
    action: str
    evidence: tuple[str, ...]  # the patient's phrases that matched


def normalize(text: str) -> str:
    return " ".join(text.lower().replace("’", "'").replace("‘", "'").split())


def _clause_start(text: str, start: int) -> int:
    clause_start = 0
    for m in _CLAUSE.finditer(text, 0, start):
        clause_start = m.end()
    return clause_start


def _clause_end(text: str, end: int) -> int:
    m = _CLAUSE.search(text, end)
    return m.start() if m else len(text)


def _negated(text: str, start: int) -> bool:
    """Whether a negation word sits in the same clause, within four words before ``start``."""
    words = re.findall(r"[a-z']+", text[_clause_start(text, start) : start])[-4:]
    return any(w in NEGATIONS for w in words)


# ConText's historical and hypothetical triggers (the experiencer is the patient or someone present,
# so "my husband's speech is slurred" still counts; a relative's past illness does not).
_HISTORY_BEFORE = re.compile(
    r"(history of|died (of|from)|passed away (of|from)|(mother|father|mom|dad|mum|brother|sister|"
    r"grand\w+|uncle|aunt|cousin|friend) had)( an?| the)?$"
)
_HISTORY_AFTER = re.compile(
    r"^(\w+ ){0,3}?(years ago|months ago|last (year|month)|as a (child|kid|teenager)|when i was "
    r"(young|little|a child|a kid)|in the past)\b"
)
_HYPOTHETICAL = re.compile(
    r"\b(what (should|do|would|can) i do if|what if|in case|side effects?|risk of|chance of|"
    r"how (do|would) i know if|is it normal|to prevent|to avoid|worried about getting|afraid of getting)\b"
)


def _out_of_context(text: str, start: int, end: int) -> bool:
    """Whether the mention is historical or hypothetical rather than happening now."""
    clause = text[_clause_start(text, start) : _clause_end(text, end)]
    if _HYPOTHETICAL.search(clause):
        return True
    before = " ".join(re.findall(r"[a-z']+", text[_clause_start(text, start) : start])[-5:])
    if _HISTORY_BEFORE.search(before):
        return True
    return bool(_HISTORY_AFTER.match(text[end : _clause_end(text, end)].strip()))


def concepts(text: str) -> dict[str, list[str]]:
    """Concept -> the affirmed (not negated, not past, not hypothetical) phrases of ``text``."""
    t = normalize(text)
    out: dict[str, list[str]] = {}
    for concept, patterns in _COMPILED.items():
        for p in patterns:
            for m in p.finditer(t):
                if _negated(t, m.start()):
                    continue
                if concept != "suicidal" and _out_of_context(t, m.start(), m.end()):
                    continue
                out.setdefault(concept, []).append(m.group(0))
    return out


def check(texts: str | Iterable[str]) -> list[RedFlag]:
    """Every rule the patient's words (one answer or all answers so far) trigger, most urgent first."""
    found: dict[str, list[str]] = {}
    for t in [texts] if isinstance(texts, str) else texts:
        for k, v in concepts(t).items():
            found.setdefault(k, []).extend(v)
    flags = []
    for rule in RULES:
        for combo in rule.any_of:
            if all(c in found for c in combo):
                evidence = tuple(dict.fromkeys(p for c in combo for p in found[c]))
                flags.append(RedFlag(rule.id, rule.label, rule.urgency, rule.action, evidence))
                break
    return sorted(flags, key=lambda f: f.urgency != "emergency")
