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
