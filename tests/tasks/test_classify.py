"""The classify task's reading of a reply: one option, or a ParseError (repaired, then unreadable)."""

from __future__ import annotations

import pytest

from aris.tasks import get_task
from aris.tasks.parsing import ParseError


def _parse(reply: str, choices: str = "diabetic-retinopathy") -> str:
    return get_task("classify").parse(reply, [], {"choices": [choices]}).answer


@pytest.mark.parametrize(
    "reply", ['{"answer": null}', '{"answer": 3}', '{"answer": ["mild"]}', '{"answer": true}']
)
def test_a_non_string_answer_is_a_parse_error(reply: str) -> None:
    with pytest.raises(ParseError, match="as a string"):
        _parse(reply)


def test_none_as_a_string_is_still_the_no_dr_alias() -> None:
    assert _parse('{"answer": "none"}') == "no DR"


@pytest.mark.parametrize(
    ("reply", "choices"),
    [
        ('{"answer": "abnormal"}', "diabetic-retinopathy"),
        ("Final Answer: Abnormal", "diabetic-retinopathy"),
        ('{"answer": "moderately severe NPDR"}', "diabetic-retinopathy"),
        ('{"answer": "abnormal mucosa"}', "nct-crc-he"),
        ("Final Answer: Abnormal colonic mucosa", "nct-crc-he"),
        ('{"answer": "skeletal muscle"}', "nct-crc-he"),
    ],
)
def test_a_class_the_reply_does_not_name_is_not_chosen(reply: str, choices: str) -> None:
    with pytest.raises(ParseError):
        _parse(reply, choices)


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ('{"answer": "smooth muscle"}', "smooth muscle"),
        ('{"answer": "MUS"}', "smooth muscle"),
        ('{"answer": "normal colonic mucosa"}', "normal colon mucosa"),
    ],
)
def test_tissue_classes_still_read(reply: str, answer: str) -> None:
    assert _parse(reply, "nct-crc-he") == answer
