"""Chest X-ray recipes' parsers: report sections and per-finding changes."""

from __future__ import annotations

import pytest

from aris.tasks import get_task
from aris.tasks.cxr import report_sections
from aris.tasks.parsing import ParseError


def test_report_sections_reads_each_heading() -> None:
    assert report_sections("FINDINGS: Clear.\nIMPRESSION: Normal.") == {
        "findings": "Clear.",
        "impression": "Normal.",
    }


@pytest.mark.parametrize(
    ("reply", "heading"),
    [
        ("IMPRESSION: Normal.\n\nIMPRESSION: 2.5 cm right upper lobe mass", "IMPRESSION:"),
        ("FINDINGS: a\nIMPRESSION: b\nRevised report:\nFINDINGS: c\nIMPRESSION: d", "FINDINGS: and more"),
    ],
)
def test_a_repeated_report_heading_is_a_parse_error(reply: str, heading: str) -> None:
    with pytest.raises(ParseError, match=f"more than one {heading}"):
        report_sections(reply)
    with pytest.raises(ParseError):
        get_task("cxr-report").parse(reply, [], {})


@pytest.mark.parametrize(
    ("value", "change"),
    [
        ("regressed", "improved"),
        ("Regression", "improved"),
        ("progressed", "worsened"),
        ("(B) Stable", "stable"),
        ("unimproved", None),
        ("unresolved", None),
        ("disimproved", None),
        ("unstable", None),
        ("changed", None),
        ("interval change", None),
        ("improvd", None),  # no near misses for the change words
    ],
)
def test_compare_reads_a_change_or_refuses(value: str, change: str | None) -> None:
    reply = f'{{"changes": {{"edema": "{value}"}}}}'
    task = get_task("cxr-compare")
    if change is None:
        with pytest.raises(ParseError, match="edema"):
            task.parse(reply, [], {"findings": ["edema"]})
    else:
        assert task.parse(reply, [], {"findings": ["edema"]}).changes == {"edema": change}
