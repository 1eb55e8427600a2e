"""GRPO rewards against hand-computed values, one task family at a time.

Each reply is read as a served reply is read (thought split off, the task's parser, the eval
protocol's prediction) and scored by the protocol; the expected numbers are worked out by hand here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from aris.errors import ConfigError
from aris.eval.datasets import EvalItem
from aris.eval.protocol import make_protocol
from aris.finetune.rewards import RewardSet, Sample, load_custom, read_reply
from aris.runner import prepare_inputs
from aris.tasks import get_task

THOUGHT = "<unused94>thought\n"
END_THOUGHT = "<unused95>"


def scorer(task: str, item: EvalItem, inputs: list[Any] | None = None, mode: str | None = None):  # type: ignore[no-untyped-def]
    """(reply -> (correct, format)) for one item, with the protocol ``aris eval --prompts app`` uses."""
    protocol = make_protocol(task, [item], Path("set.jsonl"), None, prompts="app", mode=mode)
    options = protocol.work_item(item).task_options
    t = get_task(task)

    def score(text: str) -> tuple[float | None, float]:
        r = read_reply(text, t, inputs or [], options, protocol=protocol, item=item)
        return r.correct, float(r.format_ok)

    return score


def test_multiple_choice_is_accuracy_on_the_final_answer_with_the_thought_removed() -> None:
    item = EvalItem("q1", [], "Which vitamin?", "B", extra={"options": ["A1", "C", "D"]})
    score = scorer("text-qa", item)
    assert score("Scurvy is vitamin C deficiency.\nFinal Answer: B") == (1.0, 1.0)
    assert score("Final Answer: (B) C") == (1.0, 1.0)
    assert score("Final Answer: D") == (0.0, 1.0)  # readable, wrong
    assert score("It is vitamin C.") == (0.0, 0.0)  # no Final Answer: unreadable, unparsed
    # the thought is not the answer: its "Final Answer: A" is ignored
    assert score(f"{THOUGHT}Final Answer: A, or maybe{END_THOUGHT}Final Answer: B") == (1.0, 1.0)
    # a thought cut at the token budget leaves no answer: nothing to reward
    assert score(f"{THOUGHT}Scurvy... Final Answer: B") == (0.0, 0.0)


def test_classification_is_accuracy_on_the_validated_option() -> None:
    item = EvalItem("c1", [], None, "ct_slice", extra={"choices": ["chest_xray", "ct_slice", "pathology"]})
    score = scorer("classify", item)
    assert score('{"answer": "ct_slice"}') == (1.0, 1.0)
    assert score("B") == (1.0, 1.0)  # the option's letter
    assert score('{"answer": "pathology"}') == (0.0, 1.0)
    assert score('{"answer": "an MRI"}') == (0.0, 0.0)  # not one of the options


def test_yes_no_is_correctness_and_an_unreadable_answer_earns_nothing() -> None:
    item = EvalItem("y1", [], "Is there an effusion?", "yes", extra={})
    score = scorer("vqa", item, mode="yes-no")
    assert score("Blunted angle.\nFinal Answer: yes") == (1.0, 1.0)
    assert score("Final Answer: no") == (0.0, 1.0)
    # it parses (a final answer is there), but neither yes nor no can be read from it: no credit
    assert score("Final Answer: maybe") == (0.0, 1.0)
    assert score("Final Answer: yes or no") == (0.0, 1.0)
    # the clinician-grade reading: a hedge is not a yes, whatever word it starts with
    assert score("Final Answer: yes, but cannot exclude") == (0.0, 1.0)
    assert score("Final Answer: possibly yes") == (0.0, 1.0)
    no_item = EvalItem("y2", [], "Is there a pneumothorax?", "no", extra={})
    score_no = scorer("vqa", no_item, mode="yes-no")
    assert score_no("Final Answer: not present") == (1.0, 1.0)  # negation read as no
    assert score_no("Final Answer: cannot exclude it") == (0.0, 1.0)


def test_open_vqa_is_token_f1() -> None:
    item = EvalItem("v1", [], "Where is the lesion?", "the left lower lobe", extra={})
    score = scorer("vqa", item)
    # normalized: [left, lower, lobe] vs [left, lung]: 1 common; P = 1/2, R = 1/3 -> F1 = 0.4
    correct, fmt = score("Final Answer: left lung")
    assert correct == pytest.approx(0.4)
    assert fmt == 1.0


def test_localization_is_iou_in_original_pixels(tmp_path: Path) -> None:
    film = tmp_path / "film.png"
    Image.new("RGB", (200, 100), (40, 40, 40)).save(film)  # S = 200, padded 50 px above and below
    inputs = prepare_inputs("cxr-localize", [film])
    item = EvalItem("l1", [film], None, [0, 20, 50, 60], extra={"label": "heart"})
    score = scorer("cxr-localize", item, inputs)

    def reply(box: list[int]) -> str:
        return "Final Answer:\n```json\n" + json.dumps([{"box_2d": box, "label": "heart"}]) + "\n```"

    # [250, 100, 500, 300] of the 200 px square: y 50..100 -> 0..50 after the 50 px pad, x 20..60
    assert score(reply([250, 100, 500, 300])) == (pytest.approx(1.0), 1.0)
    # y 60..110 -> 10..60 on the 100 px film: [10, 20, 60, 60] vs [0, 20, 50, 60]
    # overlap 40 x 40 = 1600; union 2000 + 2000 - 1600 = 2400 -> 2/3
    assert score(reply([300, 100, 550, 300])) == (pytest.approx(2 / 3), 1.0)
    assert score("no box today") == (0.0, 0.0)


def test_lab_extraction_is_the_documents_field_f1() -> None:
    truth = [
        {"name": "Hemoglobin", "result": "13.5", "unit": "g/dL"},
        {"name": "WBC", "result": "7.2", "unit": "10^9/L"},
    ]
    item = EvalItem("r1", [], None, truth, extra={})
    score = scorer("lab-extract", item)
    pred = [
        {"name": "Hemoglobin", "result": "13.50", "unit": "g/dL"},  # 3 fields right (13.50 = 13.5)
        {"name": "WBC", "result": "7.0", "unit": "10^9/L"},  # name and unit right, result wrong
    ]
    # tp 5, fp 1, fn 1 -> precision = recall = 5/6 -> F1 5/6
    correct, fmt = score(json.dumps(pred))
    assert correct == pytest.approx(5 / 6)
    assert fmt == 1.0
    assert score(json.dumps(truth)) == (pytest.approx(1.0), 1.0)
    assert score("Hemoglobin is fine") == (0.0, 0.0)


def test_descriptions_are_rouge_l(tmp_path: Path) -> None:
    patch = tmp_path / "patch.png"
    Image.new("RGB", (64, 64), (200, 120, 160)).save(patch)
    inputs = prepare_inputs("wsi", [patch], kind="image")
    item = EvalItem("w1", [patch], None, "benign colon mucosa", extra={"organ": "colon"})
    score = scorer("wsi", item, inputs)
    # LCS "colon mucosa" = 2 tokens; P = 2/6, R = 2/3 -> F = 2PR / (P + R) = 4/9
    correct, fmt = score("normal colon mucosa with no tumor")
    assert correct == pytest.approx(4 / 9)
    assert fmt == 1.0


def _reward_set(weights: dict[str, float], replies: dict[int, str]) -> RewardSet:
    item = EvalItem("q1", [], "Which?", "A", extra={"options": ["x", "y"]})
    protocol = make_protocol("text-qa", [item], Path("set.jsonl"), None, prompts="app")
    sample = Sample(item, [], protocol.work_item(item).task_options, "A")
    return RewardSet(
        get_task("text-qa"),
        protocol,
        weights,
        sample=lambda row: sample,
        decode=lambda ids: replies[ids[0]],
    )


def test_reward_functions_share_one_reading_per_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_rewards.py").write_text(
        "calls = []\n"
        "def short(completions, *, references, parsed, thoughts, items, completion_ids, task, **kw):\n"
        "    calls.append((list(references), task))\n"
        "    return [1.0 if len(c) < 20 else None for c in completions]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    replies = {0: "Final Answer: A", 1: "Final Answer: B", 2: "a long reply with no final answer"}
    rs = _reward_set({"correct": 1.0, "format": 0.5, "my_rewards:short": 0.1}, replies)
    funcs = rs.functions()
    assert [f.__name__ for f in funcs] == ["correct", "format", "my_rewards:short"]
    ids = [[0], [1], [2]]
    got = [f(prompts=None, completions=None, completion_ids=ids, row=[0, 0, 0]) for f in funcs]
    assert got == [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, None]]
    assert sys.modules["my_rewards"].calls == [(["A", "A", "A"], "text-qa")]
    assert rs.replies(ids, [0, 0, 0]) is rs.replies(ids, [0, 0, 0])  # read once, reused


def test_bad_reward_settings_fail_before_training() -> None:
    with pytest.raises(ConfigError, match="no_such_module"):
        load_custom("no_such_module:fn")
    with pytest.raises(ConfigError, match="expected module:function"):
        load_custom("justaname:")
    with pytest.raises(ConfigError, match="has no eval protocol"):
        RewardSet(get_task("cxr-report"), None, {"correct": 1.0}, sample=lambda r: None, decode=str)  # type: ignore[arg-type,return-value]
