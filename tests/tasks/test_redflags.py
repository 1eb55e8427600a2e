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


# Issue 13: a patient's phrasings, each with the flags it must raise (and nothing else: the rules are
# deterministic, so a phrasing that raises an extra flag is a bug in a rule too).
PHRASINGS = [
    # suicidality
    ("I'm not sure I want to live anymore", {"suicide"}),
    ("Honestly I don't know if I want to go on", {"suicide"}),
    ("I don't want to be here anymore", {"suicide"}),
    ("Sometimes I wish I was dead", {"suicide"}),
    ("I wish I could go to sleep and never wake up", {"suicide"}),
    ("I've thought about ending my life", {"suicide"}),
    ("Life isn't worth living", {"suicide"}),
    ("There's no point living anymore", {"suicide"}),
    ("I just want to end it", {"suicide"}),
    ("Nobody would miss me if I was gone", {"suicide"}),
    ("I took a whole bottle of my pills an hour ago", {"suicide"}),
    ("I can't go on like this", {"suicide"}),
    # chest pain (with what makes it an emergency)
    ("There's pressure in my chest and my left arm is numb", {"cardiac", "stroke"}),  # a numb arm is both
    ("Tightness in my chest spreading to my jaw", {"cardiac"}),
    ("Chest pain and I feel like I'm going to pass out", {"cardiac"}),
    ("I have chest pain and I feel sick to my stomach", {"cardiac"}),
    ("My chest is tight and I'm lightheaded", {"cardiac"}),
    # stroke signs
    ("The left side of my face is drooping", {"stroke"}),
    ("My words are coming out wrong", {"stroke"}),
    ("Suddenly I can't see out of my left eye", {"stroke"}),
    ("Sudden severe headache, the worst I've ever had", {"stroke"}),
    ("I suddenly can't move my right leg", {"stroke"}),
    ("My husband's speech is slurred and his face looks droopy", {"stroke"}),
    # anaphylaxis
    ("My throat feels like it's closing up", {"anaphylaxis"}),
    ("I ate shrimp and now I have hives and I'm wheezing", {"anaphylaxis"}),
    ("Hives all over and I feel faint", {"anaphylaxis"}),
    ("I'm having an allergic reaction and it's hard to breathe", {"anaphylaxis"}),
    ("I am not able to breathe", {"breathing"}),
    # sepsis signs
    ("I have a fever and I'm confused", {"sepsis"}),
    ("Chills and shivering, and my heart is racing", {"sepsis"}),
    ("My UTI got worse and now I'm confused", {"sepsis"}),
    ("I have an infection and my skin looks mottled", {"sepsis"}),
    ("The doctor said it might be sepsis", {"sepsis"}),
    ("High fever and my blood pressure is very low", {"sepsis"}),
    # negated, historical, hypothetical or harmless: nothing
    ("I'm not sure I want to go to the hospital", set()),
    ("I want to live a long and healthy life", set()),
    ("I have never thought about killing myself", set()),
    ("This headache is killing me", set()),
    ("I cut myself shaving this morning", set()),
    ("My grandfather died of a heart attack and I get short of breath on stairs", set()),
    ("What should I do if I get chest pain and shortness of breath?", set()),
    ("Is a rash with hives and trouble breathing a side effect of this drug?", set()),
    ("I had a seizure years ago", set()),
    ("No fever, no confusion", set()),
    ("My heart races when I drink coffee", set()),
    ("I have hives from the new detergent", set()),
    ("I feel dizzy when I stand up quickly", set()),
    ("No hives and no trouble breathing", set()),
    ("My chest pain went away and I can breathe fine now", set()),
]


@pytest.mark.parametrize(("text", "flags"), PHRASINGS)
def test_phrasings_raise_exactly_their_flags(text: str, flags: set[str]) -> None:
    assert ids(text) == flags


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
