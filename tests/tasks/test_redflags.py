"""Deterministic red-flag rules: what escalates, what does not (negations), and across answers."""

from __future__ import annotations

import pytest

from aris.tasks.redflags import CRISIS_ACTION, EMERGENCY_ACTION, check


def ids(text: str | list[str]) -> set[str]:
    return {f.id for f in check(text)}


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("I have chest pain and I'm short of breath", "cardiac"),
        ("crushing pain in my chest, it goes down my left arm", "cardiac"),
        ("My chest feels tight and I'm sweating a lot", "cardiac"),
        ("My wife says my face is drooping on the left", "stroke"),
        ("I can't lift my right arm since this morning", "stroke"),
        ("my speech is slurred", "stroke"),
        ("I can't get the words out", "stroke"),
        ("the worst headache of my life, it came on in a second", "stroke"),
        ("Honestly I want to die", "suicide"),
        ("I've been thinking about killing myself", "suicide"),
        ("I don't want to live anymore", "suicide"),
        ("everyone would be better off without me", "suicide"),
        ("I have been cutting myself", "suicide"),
        ("the cut is bleeding heavily and won't stop", "bleeding"),
        ("I vomited blood this morning", "bleeding"),
        ("I am coughing up blood", "bleeding"),
        ("my throat is swelling after the peanut", "anaphylaxis"),
        ("my lips are swollen and I feel weird", "anaphylaxis"),
        ("I broke out in hives and now I have trouble breathing", "anaphylaxis"),
        ("I can't breathe", "breathing"),
        ("I passed out in the shower", "unconscious"),
        ("he had a seizure", "seizure"),
        ("high fever and a stiff neck", "meningitis"),
        ("I have CHEST PAIN. Also SHORTNESS OF BREATH.", "cardiac"),
        ("My chest hurts but I can still breathe fine, although I'm short of breath on stairs", "cardiac"),
    ],
)
def test_red_flags_escalate(text: str, rule: str) -> None:
    assert rule in ids(text)


@pytest.mark.parametrize(
    "text",
    [
        "I have a mild headache since yesterday",
        "No chest pain, no shortness of breath",
        "I don't have chest pain, just a cough",
        "I'm not suicidal, just tired",
        "I would never hurt myself",
        "I don't want to die, I want this cough to go",
        "denies bleeding",
        "There is no swelling of my lips or tongue",
        "my knee hurts when I climb stairs",
        "I take ibuprofen for back pain",
        "no fever",
        "I feel short of breath when I run",  # breathlessness alone is not an emergency rule
        "chest pain when I cough hard",  # chest pain alone neither
    ],
)
def test_ordinary_or_negated_words_do_not(text: str) -> None:
    assert ids(text) == set()


def test_concepts_combine_across_answers() -> None:
    answers = ["I have chest pain", "it started two hours ago", "now I'm short of breath too"]
    assert "cardiac" not in ids(answers[:2])
    assert "cardiac" in ids(answers)


def test_flags_carry_the_action_and_the_patients_own_words() -> None:
    (flag,) = [f for f in check("i want to end my life") if f.id == "suicide"]
    assert flag.action == CRISIS_ACTION
    assert "988" in flag.action
    assert flag.urgency == "emergency"
    assert flag.evidence == ("end my life",)
    (cardiac,) = check("chest pain and shortness of breath")
    assert cardiac.action == EMERGENCY_ACTION
    assert set(cardiac.evidence) == {"chest pain", "shortness of breath"}
