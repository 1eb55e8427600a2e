"""Every adversarial reply in tests/data/replies through every parser it names (README.md there)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from aris.errors import OutputError
from aris.eval.datasets import EvalItem
from aris.eval.protocol import CtProtocol, TextQaProtocol, VqaProtocol
from aris.inputs.base import PreparedInput
from aris.tasks import get_task
from aris.tasks.localize import square_padding
from aris.tasks.parsing import ParseError, extract_json, final_answer
from aris.tasks.volume import parse_yes_no
from aris.tasks.yesno import read_reply
from aris.thinking import split_stream, split_text
from aris.types import ImagePart, Provenance

CORPUS = Path(__file__).parents[1] / "data" / "replies"
ENTRIES: list[dict[str, Any]] = [
    entry for path in sorted(CORPUS.glob("*.yaml")) for entry in yaml.safe_load(path.read_text())
]
CASES = [
    pytest.param(entry, parser, spec, id=f"{entry['id']}:{parser}")
    for entry in ENTRIES
    for parser, spec in entry["parse"].items()
]


def test_the_corpus_is_large_and_well_formed() -> None:
    assert len(ENTRIES) >= 100
    assert len({e["id"] for e in ENTRIES}) == len(ENTRIES)
    for e in ENTRIES:
        assert isinstance(e["reply"], str), e["id"]  # a bare YAML no would be False
        assert set(e["parse"]) <= set(PARSERS), e["id"]


def _yes_no(reply: str, spec: dict[str, Any]) -> None:
    want = spec["expect"]
    assert want in ("yes", "no", "hedge", "contradiction", "no answer")
    finding = spec.get("finding")
    reading = read_reply(reply, finding=finding)
    assert (reading.value or reading.reason) == want, reading
    # the CT/MRI task's parser: a value, or a ParseError naming the reason (repaired, then unreadable)
    if want in ("yes", "no"):
        assert parse_yes_no(reply, finding) == want
    else:
        with pytest.raises(ParseError, match=f"unreadable \\({want}\\)"):
            parse_yes_no(reply, finding)
    # eval reads the answer alone (it is not told the finding); unreadable is no prediction (scored
    # wrong), never yes or no
    assert finding is not None or "eval" not in spec
    eval_want = spec.get("eval", want)
    value = eval_want if eval_want in ("yes", "no") else None
    item = EvalItem("1", [Path("series")], f"Is there {finding or 'hemorrhage'}?", "yes")
    assert CtProtocol([item], Path("corpus")).prediction({"text": reply}, item) == value
    assert VqaProtocol([item], Path("corpus"), mode="yes-no").prediction({"text": reply}, item) == value
    without = read_reply(reply)
    assert (without.value or without.reason) == eval_want


def _text_qa(reply: str, spec: dict[str, Any]) -> None:
    choices = spec["choices"]
    try:
        letter = get_task("text-qa").parse(reply, [], {"choices": choices}).letter
    except ParseError:
        letter = None
    assert letter == spec["expect"]
    item = EvalItem("1", [], "Which?", choices[0], extra={"options": choices})
    assert TextQaProtocol([item], Path("corpus")).prediction({"text": reply}, item) == spec["expect"]


def _classify(reply: str, spec: dict[str, Any]) -> None:
    try:
        answer = get_task("classify").parse(reply, [], {"choices": spec["choices"]}).answer
    except ParseError:
        answer = None
    assert answer == spec["expect"]


def _compare(reply: str, spec: dict[str, Any]) -> None:
    try:
        changes = get_task("cxr-compare").parse(reply, [], {"findings": spec["findings"]}).changes
    except ParseError:
        changes = None
    assert changes == spec["expect"]


def _json(reply: str, spec: dict[str, Any]) -> None:
    kind = {"dict": dict, "list": list, None: None}[spec["type"]]
    want = spec["expect"]
    if isinstance(want, dict) and set(want) == {"error"}:
        with pytest.raises(ParseError, match=want["error"]):
            extract_json(reply, kind)
        return
    found = extract_json(reply, kind)
    assert found.value == want
    assert found.truncated == spec.get("truncated", False)


def _film() -> PreparedInput:
    image = Image.new("RGB", (200, 100))
    p = square_padding(200, 100)
    canvas = Image.new("RGB", (p.size, p.size))
    canvas.paste(image, (p.left, p.top))
    return PreparedInput("cxr", [ImagePart(canvas)], Provenance("cxr", ["film.png"]), padding=p)


def _boxes(reply: str, spec: dict[str, Any]) -> None:
    try:
        out = get_task("cxr-localize").parse(reply, [_film()], {})
        got = [[b.label, b.box_2d] for b in out.boxes]
    except ParseError:
        got = None
    want = spec["expect"]
    if want is None:
        assert got is None
        return
    assert got is not None
    assert [g[0] for g in got] == [w[0] for w in want]
    for (_, box), (_, ref) in zip(got, want, strict=True):
        assert box == pytest.approx(ref)


def _report(reply: str, spec: dict[str, Any]) -> None:
    try:
        got: dict[str, str] | None = get_task("cxr-report").parse(reply, [], {}).model_dump()
    except OutputError:
        got = None
    assert got == spec["expect"]


def _split(reply: str, spec: dict[str, Any]) -> None:
    want = tuple(spec["expect"])
    assert split_text(reply) == want
    pieces = list(split_stream(list(reply)))
    streamed = tuple("".join(p.text for p in pieces if p.kind == k) for k in ("thought", "answer"))
    assert streamed == want


def _final_answer(reply: str, spec: dict[str, Any]) -> None:
    assert final_answer(reply) == spec["expect"]


PARSERS = {
    "yes_no": _yes_no,
    "text_qa": _text_qa,
    "classify": _classify,
    "compare": _compare,
    "json": _json,
    "boxes": _boxes,
    "report": _report,
    "split": _split,
    "final_answer": _final_answer,
}


@pytest.mark.parametrize(("entry", "parser", "spec"), CASES)
def test_reply(entry: dict[str, Any], parser: str, spec: dict[str, Any]) -> None:
    PARSERS[parser](entry["reply"], spec)
