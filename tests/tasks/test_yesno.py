"""The one yes/no reader: negations read as no, hedges and contradictions refused, never a guess."""

from __future__ import annotations

import pytest
from PIL import Image

from aris.engines.fake import FakeEngine
from aris.eval.protocol import yes_no
from aris.inputs.base import PreparedInput
from aris.tasks import get_task
from aris.tasks.cxr import CHANGE_ALIASES, CHANGES
from aris.tasks.parsing import ParseError, match_option
from aris.tasks.volume import parse_yes_no
from aris.tasks.yesno import YesNo, read_reply, read_yes_no
from aris.types import ImagePart, Provenance, TextPart


@pytest.mark.parametrize(
    "answer",
    [
        "no",
        "No.",
        "**NO**",
        "not present",
        "absent",
        "none",
        "negative",
        "no evidence of hemorrhage",
        "There is no hemorrhage",
        "hemorrhage is not seen",
        "Hemorrhage is not identified.",
        "negative for hemorrhage",
        "without hemorrhage",
        "no acute intracranial hemorrhage",
        "I do not see any hemorrhage",
        "hemorrhage could not be identified",
        "No, there is no evidence of hemorrhage.",
        "no hemorrhage or mass effect",
        "hemorrhage ruled out",
        "hemorrhage: absent",
        "false",
    ],
)
def test_clear_negations_read_no(answer: str) -> None:
    assert read_yes_no(answer, finding="hemorrhage").reading == "no"


@pytest.mark.parametrize(
    "answer",
    [
        "yes",
        "Yes.",
        "present",
        "positive for hemorrhage",
        "There is a hemorrhage",
        "hemorrhage is present",
        "Yes, there is a small subdural hemorrhage.",
        "hemorrhage is seen in the left frontal lobe",
        "There is no doubt that hemorrhage is present",
        "Yes, there is hemorrhage but no midline shift",
        "true",
    ],
)
def test_clear_affirmations_read_yes(answer: str) -> None:
    assert read_yes_no(answer, finding="hemorrhage").reading == "yes"


@pytest.mark.parametrize(
    "answer",
    [
        "hemorrhage cannot be excluded",
        "cannot rule out hemorrhage",
        "possible hemorrhage",
        "probably yes",
        "likely no",
        "may represent hemorrhage",
        "indeterminate",
        "suspicious for hemorrhage",
        "findings suggestive of hemorrhage",
        "no definite hemorrhage",
        "yes?",
        "maybe",
        "it is unclear",
        "hemorrhage is not excluded",
        "could be hemorrhage",
        "unlikely",
        "concerning for hemorrhage",
    ],
)
def test_hedges_are_unreadable(answer: str) -> None:
    r = read_yes_no(answer, finding="hemorrhage")
    assert (r.reading, r.reason) == ("unreadable", "hedge")
    assert r.value is None


@pytest.mark.parametrize(
    "answer",
    [
        "yes and no",
        "yes. no.",
        "No, hemorrhage is present",
        "Yes, there is no hemorrhage",
        "There is no hemorrhage. Hemorrhage is present in the left lobe.",
    ],
)
def test_contradictions_are_unreadable(answer: str) -> None:
    r = read_yes_no(answer, finding="hemorrhage")
    assert (r.reading, r.reason) == ("unreadable", "contradiction")


@pytest.mark.parametrize("answer", ["", "B", "hemorrhage", "the ventricles", "normal", "no abnormality"])
def test_no_answer_is_unreadable(answer: str) -> None:
    r = read_yes_no(answer, finding="hemorrhage")
    assert (r.reading, r.reason) == ("unreadable", "no answer")


def test_other_findings_do_not_decide_when_the_finding_is_named() -> None:
    assert read_yes_no("No hemorrhage, but there is edema", finding="hemorrhage").reading == "no"
    assert read_yes_no("No hemorrhage, but there is edema", finding="edema").reading == "yes"
    # without the finding the reader cannot tell which clause answers
    assert read_yes_no("No hemorrhage, but there is edema").reason == "contradiction"


def test_pseudo_negations_are_not_negations() -> None:
    assert read_yes_no("no change in the hemorrhage").reading == "unreadable"
    assert read_yes_no("not only hemorrhage but also edema is present").reading == "yes"


def test_a_reply_is_read_at_its_last_final_answer_with_thought_removed() -> None:
    reply = "thought\nFinal Answer: yes<unused95>The hemorrhage is not seen.\nFinal Answer: no"
    assert read_reply(reply, finding="hemorrhage") == YesNo("no", evidence="no", answer="no")
    missing = read_reply("The scan is clear.")
    assert (missing.reading, missing.reason) == ("unreadable", "no answer")
    assert "Final Answer" in missing.describe()


def test_describe_names_the_reason_and_the_words() -> None:
    r = read_yes_no("Hemorrhage cannot be excluded.")
    assert r.describe() == (
        'unreadable (hedge): "Hemorrhage cannot be excluded." hedges ("can not be excluded"); '
        "a clear yes or no is needed"
    )
    both = read_yes_no("Yes, there is no hemorrhage", finding="hemorrhage").describe()
    assert both == (
        'unreadable (contradiction): "Yes, there is no hemorrhage" says both yes and no '
        '("yes" against "there is no hemorrhage")'
    )


# -- every yes/no reader goes through it ----------------------------------------------------------


def _volume() -> PreparedInput:
    parts = [ImagePart(Image.new("RGB", (16, 16))), TextPart("SLICE 1")]
    return PreparedInput("ct", parts, Provenance("ct", ["series/"]))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reply", "value"),
    [
        ("Final Answer: not present", "no"),
        ("Final Answer: hemorrhage is not seen", "no"),
        ("Final Answer: no evidence of hemorrhage", "no"),
        ("Final Answer: present", "yes"),
        ("Final Answer: Yes", "yes"),
    ],
)
def test_the_volume_tasks_yes_no_parser(reply: str, value: str) -> None:
    assert parse_yes_no(reply) == value


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("Final Answer: hemorrhage cannot be excluded", "hedge"),
        ("Final Answer: yes and no", "contradiction"),
        ("The ventricles look fine.", "no answer"),
    ],
)
def test_the_volume_parser_refuses_what_it_cannot_read_saying_why(reply: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason if reason != "no answer" else "Final Answer"):
        parse_yes_no(reply)


def test_an_unreadable_finding_is_repaired_once_then_recorded_as_unreadable_never_guessed() -> None:
    engine = FakeEngine(
        replies=[
            "Final Answer: not present",  # hemorrhage: a negation, read as no
            "Final Answer: a fracture cannot be excluded",  # fracture: a hedge ...
            "Final Answer: possibly",  # ... and still after the repair
            "Final Answer: present",  # mass
        ]
    )
    task = get_task("ct")
    r = task.run(engine, [_volume()], options={"findings": "hemorrhage, fracture, mass"})
    assert r.parsed["findings"] == {"hemorrhage": "no", "fracture": None, "mass": "yes"}
    assert [s["name"] for s in r.steps].count("finding:fracture-repair") == 1
    assert r.errors == [
        'fracture: first reply: unreadable (hedge): "a fracture cannot be excluded" hedges '
        '("can not be excluded"); a clear yes or no is needed',
        'fracture: after repair: unreadable (hedge): "possibly" hedges ("possibly"); '
        "a clear yes or no is needed",
    ]


def test_option_matching_with_yes_no_options_reads_negations() -> None:
    assert match_option("not present", ["yes", "no"]) == "no"
    assert match_option("B", ["yes", "no"]) == "no"
    assert match_option("Hemorrhage is not seen.", ["Yes", "No"]) == "No"
    assert match_option("probably yes", ["yes", "no", "maybe"]) is None
    assert match_option("Maybe.", ["yes", "no", "maybe"]) == "maybe"
    assert match_option("not", ["yes", "no"]) == "no"  # not a near-miss spelling of "no" ...
    assert match_option("noo", ["yes", "no"]) is None  # ... and no near-miss guessing for yes/no


def test_option_matching_does_not_pick_a_negated_option() -> None:
    assert match_option("not pneumonia", ["pneumonia", "edema"]) is None
    assert match_option("not pneumonia, but edema", ["pneumonia", "edema"]) == "edema"
    assert match_option("not worse", CHANGES, aliases=CHANGE_ALIASES) is None
    assert match_option("no longer improving; worse", CHANGES, aliases=CHANGE_ALIASES) == "worsened"
    assert match_option("no change", CHANGES, aliases=CHANGE_ALIASES) == "stable"


def test_classify_with_yes_no_choices_reads_a_negation() -> None:
    out = get_task("classify").parse('{"answer": "not present"}', [_volume()], {"choices": ["yes", "no"]})
    assert out.answer == "no"


def test_eval_reads_yes_no_the_same_way() -> None:
    assert [yes_no(x) for x in ("not present", "hemorrhage is not seen", "possible", "yes and no")] == [
        "no",
        "no",
        None,
        None,
    ]
    assert [yes_no(x) for x in ("Yes.", "absent", "FALSE", "1", "0", None)] == [
        "yes",
        "no",
        "no",
        "yes",
        "no",
        None,
    ]


# -- the scope of a negation (NegEx): what follows the trigger, never another finding's answer ---------


@pytest.mark.parametrize(
    ("answer", "finding"),
    [
        ("Large right pneumothorax, no mediastinal shift.", "pneumothorax"),
        ("Small left pleural effusion. No pneumothorax.", "pleural effusion"),
        ("There is a small pneumothorax without tension.", "pneumothorax"),
        ("Acute subdural hematoma with no midline shift", "subdural hematoma"),
        ("The pneumothorax has not resolved.", "pneumothorax"),
        ("The pneumothorax hasn't resolved", "pneumothorax"),
        ("Pneumothorax persists, not resolved", "pneumothorax"),
        ("unresolved pneumothorax", "pneumothorax"),
        ("pneumothorax resolved with residual effusion", "effusion"),
        ("Right pleural effusion is present", "right pleural effusion"),
        ("Bilateral pleural effusions are present", "left pleural effusion"),
    ],
)
def test_a_finding_named_before_another_findings_negation_is_affirmed(answer: str, finding: str) -> None:
    assert read_yes_no(answer, finding=finding).reading == "yes"


@pytest.mark.parametrize(
    ("answer", "finding"),
    [
        ("Small left pleural effusion. No pneumothorax.", "pneumothorax"),
        ("Acute subdural hematoma with no midline shift", "midline shift"),
        ("Edema is present without hemorrhage", "hemorrhage"),
        ("The pneumothorax has resolved", "pneumothorax"),
        ("No pneumothorax or effusion", "effusion"),
        ("No hemorrhage, edema, or mass effect", "edema"),
        ("Hemorrhage - none", "hemorrhage"),
        ("Hemorrhage: no evidence", "hemorrhage"),
        ("hemorrhage or mass effect: absent", "hemorrhage"),
        ("No right pleural effusion. Left pleural effusion is present.", "right pleural effusion"),
        ("No pneumothorax on either side", "pneumothorax"),
    ],
)
def test_negations_still_read_no(answer: str, finding: str) -> None:
    assert read_yes_no(answer, finding=finding).reading == "no"


def test_without_the_finding_a_reply_that_affirms_one_thing_and_negates_another_is_unreadable() -> None:
    for answer in (
        "Large right pneumothorax, no mediastinal shift.",
        "Small left pleural effusion. No pneumothorax.",
        "Acute subdural hematoma with no midline shift",
    ):
        assert read_yes_no(answer).reason == "contradiction"


def test_another_findings_negation_is_not_borrowed() -> None:
    r = read_yes_no("Normal heart size, no pneumothorax", finding="cardiomegaly")
    assert (r.reading, r.reason) == ("unreadable", "no answer")


@pytest.mark.parametrize(
    ("answer", "finding", "reason"),
    [
        ("There is a possibility of pneumothorax", "pneumothorax", "hedge"),
        ("There is a high probability of pneumonia", "pneumonia", "hedge"),
        ("There is a high likelihood of pneumonia", "pneumonia", "hedge"),
        ("There is a potential small pneumothorax", "pneumothorax", "hedge"),
        ("Findings favor pneumonia", "pneumonia", "hedge"),
        ("Findings consistent with pneumonia", "pneumonia", "hedge"),
        ("Not assessed", "hemorrhage", "hedge"),
        ("Not evaluated (outside the scanned field of view)", "hemorrhage", "hedge"),
        ("The lung bases were not imaged", "pneumothorax", "hedge"),
        ("There is a hyperdensity, hemorrhage or calcification", "hemorrhage", "hedge"),
        ("Left pleural effusion is present", "right pleural effusion", "no answer"),
        ("Yes, left pleural effusion", "right pleural effusion", "no answer"),
        ("Right pleural effusion is present", "bilateral pleural effusion", "no answer"),
        ("No pneumothorax, small left effusion", "effusion", "contradiction"),
        ("Hemorrhage is not the case", "hemorrhage", "contradiction"),
    ],
)
def test_what_cannot_be_read_for_the_finding_is_unreadable(answer: str, finding: str, reason: str) -> None:
    r = read_yes_no(answer, finding=finding)
    assert (r.reading, r.reason) == ("unreadable", reason)


def test_no_findings_consistent_with_is_a_negation() -> None:
    assert read_yes_no("No findings consistent with pneumonia", finding="pneumonia").reading == "no"
    assert read_yes_no("hemorrhage is not visualized", finding="hemorrhage").reading == "no"


@pytest.mark.parametrize(
    "answer",
    [
        "Pneumothorax: not identified on the left",
        "Pneumothorax, absent on the left",
        "Pneumothorax: none in the left lung",
        "Pneumothorax: negative for the left side",
    ],
)
def test_a_negated_place_never_affirms_the_finding_named_before_it(answer: str) -> None:
    assert read_yes_no(answer, finding="pneumothorax").reading != "yes"
    assert read_yes_no(answer).reading != "yes"
