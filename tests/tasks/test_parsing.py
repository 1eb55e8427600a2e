"""Reply parsing on real-shaped model outputs: prose, fences, thought leaks, cut-offs, letters, near misses."""

from __future__ import annotations

import pytest

from aris.tasks.parsing import (
    ParseError,
    after_final_answer,
    answer_only,
    extract_json,
    final_answer,
    lettered,
    match_option,
)

BOXES = '[{"box_2d": [120, 80, 560, 470], "label": "right lung"}]'


@pytest.mark.parametrize(
    "reply",
    [
        BOXES,
        f"```json\n{BOXES}\n```",
        f"Looking at the film, the right lung is clear.\nFinal Answer:\n```json\n{BOXES}\n```\nLet me know!",
        f"**Final Answer:** {BOXES}",
        f"Here you go: {BOXES} (coordinates are approximate)",
        f"<unused94>thought\nThe lung is at [1, 2, 3, 4] maybe {{'x': 1}}<unused95>Final Answer: ```json\n{BOXES}```",
        f'```json\n[{{"box_2d": [1,2,3,4], "label": "draft"}}]\n```\nCorrected:\n```json\n{BOXES}\n```',
    ],
)
def test_extract_json_finds_the_answer_list(reply: str) -> None:
    found = extract_json(reply, list)
    assert found.value == [{"box_2d": [120, 80, 560, 470], "label": "right lung"}]
    assert not found.truncated


def test_json_in_a_leaked_thought_is_not_the_answer() -> None:
    reply = '<unused94>thought\nmaybe {"answer": "mucus"}<unused95>{"answer": "adipose"}'
    assert extract_json(reply, dict).value == {"answer": "adipose"}
    # an unclosed thought (cut off while thinking) has no answer at all
    with pytest.raises(ParseError, match="no JSON"):
        extract_json('<unused94>thought\n{"answer": "mucus"}', dict)


def test_a_cut_off_list_keeps_its_complete_items_and_says_so() -> None:
    reply = (
        'Final Answer: ```json\n[{"name": "Hemoglobin", "result": "11.2"}, {"name": "Hematocrit", "result": "34.1"}, '
        '{"name": "Platelet Co'
    )
    found = extract_json(reply, list)
    assert found.truncated
    assert [t["name"] for t in found.value] == ["Hemoglobin", "Hematocrit"]
    assert "cut off" in found.notes[0]


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("No boxes here, sorry.", "no JSON"),
        ('{"answer": "adip', "incomplete or malformed"),
        ("[", "incomplete"),
    ],
)
def test_unusable_json_is_a_parse_error_that_says_why(reply: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        extract_json(reply, dict)


def test_expect_skips_values_of_the_other_type() -> None:
    reply = 'Scale: [0, 1000]. Answer: {"answer": "B"}'
    assert extract_json(reply, dict).value == {"answer": "B"}
    assert extract_json(reply, list).value == [0, 1000]


@pytest.mark.parametrize(
    ("reply", "short"),
    [
        ("The opacity suggests pneumonia.\nFinal Answer: yes", "yes"),
        ("Final Answer: **No.**", "No"),
        ('final answer: "B"\n\nExplanation follows.', "B"),
        ("Final Answer: 3.5", "3.5"),
        ("First guess, Final Answer: A. Wait, re-reading: Final Answer: C", "C"),
        ("<unused94>thought\nFinal Answer: A<unused95>After review.\nFinal Answer: D", "D"),
        ("I think it is B.", None),
    ],
)
def test_final_answer_is_the_last_one_cleaned(reply: str, short: str | None) -> None:
    assert final_answer(reply) == short


def test_after_final_answer_keeps_the_whole_tail() -> None:
    assert after_final_answer("x Final Answer:\n```json\n[1]\n```") == "```json\n[1]\n```"
    assert after_final_answer("nothing") is None
    assert answer_only("<unused94>thought\nsecret<unused95> shown ") == "shown"


DR = ["no DR", "mild", "moderate", "severe NPDR", "proliferative DR"]
DR_ALIASES = {"proliferative DR": ("PDR",), "severe NPDR": ("severe",)}


@pytest.mark.parametrize(
    ("answer", "option"),
    [
        ("mild", "mild"),
        ("Mild.", "mild"),
        ("**Moderate**", "moderate"),
        ("B", "mild"),
        ("(C)", "moderate"),
        ("c) moderate", "moderate"),
        ("Option E", "proliferative DR"),
        ("D. severe NPDR", "severe NPDR"),
        ("PDR", "proliferative DR"),
        ("The grade is moderate.", "moderate"),
        ("proliferatve DR", "proliferative DR"),  # a misspelling
        ("severe npdr", "severe NPDR"),
    ],
)
def test_match_option_maps_what_models_write(answer: str, option: str) -> None:
    assert match_option(answer, DR, aliases=DR_ALIASES) == option


@pytest.mark.parametrize(
    "answer",
    [
        "F",  # a letter not offered
        "C. mild",  # the letter and the words disagree
        "mild or moderate",  # two options
        "no idea",
        "",
        "cancer",
    ],
)
def test_match_option_refuses_what_is_not_exactly_one_option(answer: str) -> None:
    assert match_option(answer, DR, aliases=DR_ALIASES) is None


def test_lettered_is_the_multiple_choice_layout() -> None:
    assert lettered(["yes", "no"]) == "A. yes\nB. no"


CHANGES = ["improved", "stable", "worsened"]


@pytest.mark.parametrize(
    ("answer", "options"),
    [
        ("unimproved", CHANGES),
        ("disimproved", CHANGES),
        ("un-improved", CHANGES),
        ("unstable", CHANGES),
        ("abnormal", ["normal", "mild", "severe"]),
        ("Atypical pneumonia", ["Typical pneumonia", "Heart failure"]),
        ("Typical pneumonia? No: atypical pneumonia", ["Typical pneumonia", "Heart failure"]),
    ],
)
def test_a_reversing_prefix_never_chooses_the_word_it_reverses(answer: str, options: list[str]) -> None:
    assert match_option(answer, options) is None


def test_a_prefixed_word_that_is_itself_an_option_is_read() -> None:
    assert (
        match_option("atypical pneumonia", ["Typical pneumonia", "Atypical pneumonia"])
        == "Atypical pneumonia"
    )
    assert match_option("unchanged", CHANGES, aliases={"stable": ("unchanged",)}) == "stable"


def test_fuzzy_off_takes_no_near_miss() -> None:
    assert match_option("improvd", CHANGES) == "improved"
    assert match_option("improvd", CHANGES, fuzzy=False) is None


@pytest.mark.parametrize(
    "answer",
    [
        "moderately severe NPDR",
        "mildly moderate",
        "severely proliferative DR",
    ],
)
def test_a_grade_between_two_options_is_neither(answer: str) -> None:
    assert match_option(answer, DR, aliases=DR_ALIASES) is None


@pytest.mark.parametrize(
    "answer",
    [
        "Cushing syndrome can be excluded",
        "Cushing syndrome can be ruled out",
        "Cushing syndrome may be excluded",
        "Cushing syndrome could have been ruled out",
        "Cushing syndrome is less likely",
        "Cushing syndrome is very unlikely",
    ],
)
def test_an_option_ruled_out_after_its_name_is_not_chosen(answer: str) -> None:
    options = ["Hypothyroidism", "Addison disease", "Cushing syndrome"]
    assert match_option(answer, options) is None
    assert match_option(f"{answer}; Addison disease", options) == "Addison disease"


@pytest.mark.parametrize(
    ("reply", "short"),
    [
        (
            "Final Answer:\n- Pneumothorax: yes\n- Pleural effusion: no",
            "Pneumothorax: yes; Pleural effusion: no",
        ),
        ("Final Answer:\n* yes\n* no", "yes; no"),
        (
            "Final Answer: Pneumothorax: yes\n\nPleural effusion: no",
            "Pneumothorax: yes; Pleural effusion: no",
        ),
        ("Final Answer:\n- B", "B"),
        ("Final Answer: B\n- because of the Kerley lines", "B"),
        ("Final Answer: 3.5\n4.5 was the prior", "3.5"),
    ],
)
def test_a_final_answer_that_is_a_list_is_every_line(reply: str, short: str) -> None:
    assert final_answer(reply) == short


@pytest.mark.parametrize(
    "reply",
    [
        "Final Answer:\n- Pneumothorax: yes\n- Pleural effusion: no",
        "Final Answer: Pneumothorax: yes\nPleural effusion: no",
        "**Final Answer:**\n* Pneumothorax: yes\n* Pleural effusion: no",
    ],
)
def test_a_listed_answer_is_never_read_by_another_findings_line(reply: str) -> None:
    from aris.tasks.yesno import read_reply

    # the finding's own line decides, or the reply is unreadable; never the first line's yes
    assert read_reply(reply, finding="pleural effusion").value in (None, "no")
    assert read_reply(reply, finding="pneumothorax").value in (None, "yes")
    assert read_reply(reply).value is None
