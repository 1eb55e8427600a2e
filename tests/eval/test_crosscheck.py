"""Text multiple-choice scoring cross-checked with an independent harness: lm-evaluation-harness's
answer extraction (``MultiChoiceRegexFilter``) and its ``exact_match`` metric, configured as an
lm-eval task YAML for the report's prompt would be (``Final Answer: X``, the last one), applied to the
same items and the same scripted replies that Aris's eval scores.

Where the two agree by construction (the replies follow the requested format), the accuracies are
equal item by item. Where they differ, it is on purpose and named here:

* lm-eval's fallbacks read an answer that was never given in the requested format: an option's text
  anywhere in the reply, or any ``: X`` (e.g. "Answer: B"). Aris reads only a "Final Answer:"; a reply
  without one is unreadable and scores wrong (the report's format; Aris never guesses).
* Markdown bold around the marker ("**Final Answer:** C"): Aris reads it; lm-eval's regex does not, and
  its fallbacks find nothing, so it scores the item wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lm_eval.api.metrics import exact_match_hf_evaluate
from lm_eval.filters.extraction import MultiChoiceRegexFilter

from aris.config import ArisSettings
from aris.eval.harness import evaluate
from aris.eval.protocol import make_protocol
from tests.eval.datasets import use_oracle, write_jsonl

OPTIONS = {
    "scurvy": ["Vitamin A", "Vitamin B12", "Vitamin C", "Vitamin D"],
    "diabetes": ["Insulin", "Metformin", "Warfarin", "Aspirin"],
    "absence": ["Phenytoin", "Ethosuximide", "Carbamazepine", "Phenobarbital"],
    "anaphylaxis": ["Epinephrine", "Diphenhydramine", "Prednisone", "Albuterol"],
    "warfarin": ["Vitamin K", "Protamine", "Naloxone", "Flumazenil"],
    "pe": ["D-dimer", "CT pulmonary angiography", "Chest X-ray", "ECG"],
}
ANSWERS = {"scurvy": "C", "diabetes": "B", "absence": "B", "anaphylaxis": "A", "warfarin": "A", "pe": "B"}

# Replies in the requested format: both harnesses must read the same letter.
FORMATTED = {
    "scurvy": "Collagen synthesis needs ascorbate.\nFinal Answer: C",
    "diabetes": "First line is a biguanide. Final Answer: (B)",
    "absence": "Final Answer: B. Ethosuximide",
    "anaphylaxis": "Final Answer: Epinephrine",  # the option's words, no letter
    "warfarin": "At first: Final Answer: B. On reflection, reversal needs vitamin K. Final Answer: A",
    "pe": "Final Answer: D",  # wrong
}
# Replies outside the format, and who reads them (True: scored right).
EDGE = {
    "scurvy": ("**Final Answer:** C", True, False),  # bold marker: Aris reads it, lm-eval does not
    "diabetes": ("Answer: B", False, True),  # no Final Answer: lm-eval's ": X" fallback reads B
    "absence": ("Ethosuximide is the drug of choice.", False, True),  # lm-eval finds the option's text
    "anaphylaxis": ("I am not sure.", False, False),  # nobody reads anything
    "warfarin": ("Final Answer: A", True, True),
    "pe": ("Final Answer: (B) CT pulmonary angiography", True, True),
}


def lm_eval_letters(replies: list[str], keys: list[str]) -> list[str]:
    """lm-eval's extraction: the last "Final Answer: X" letter, else its choice-text and ": X" fallbacks."""
    f = MultiChoiceRegexFilter(
        regex_pattern=r"Final Answer:\s*\(?([A-J])\)?(?![A-Za-z])",
        group_select=-1,
        ignore_case=True,
        ignore_punctuation=True,
    )
    out = f.apply([[r] for r in replies], [{"choices": OPTIONS[k]} for k in keys])
    return [x[0] for x in out]


def lm_eval_accuracy(replies: list[str], keys: list[str]) -> tuple[float, list[bool]]:
    letters = lm_eval_letters(replies, keys)
    per = [
        exact_match_hf_evaluate([p], [ANSWERS[k]], ignore_punctuation=True)["exact_match"] == 1.0
        for p, k in zip(letters, keys, strict=True)
    ]
    return sum(per) / len(per), per


def dataset(tmp_path: Path) -> Path:
    rows: list[dict[str, Any]] = [
        {"id": k, "question": f"Question about {k}?", "options": OPTIONS[k], "answer": ANSWERS[k]}
        for k in OPTIONS
    ]
    return write_jsonl(tmp_path / "mcq.jsonl", rows)


def test_formatted_replies_score_the_same_in_both_harnesses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_oracle(monkeypatch, [(f"Question about {k}?", reply) for k, reply in FORMATTED.items()])
    run = evaluate(
        dataset(tmp_path), "text-qa", ArisSettings(engine="fake"), out_dir=tmp_path / "out", n_boot=0
    ).run
    keys = [i["id"] for i in run["items"]]
    ours = [i["score"] == 1.0 for i in run["items"]]
    theirs_acc, theirs = lm_eval_accuracy([i["output"] for i in run["items"]], keys)
    assert ours == theirs  # item by item
    assert run["metrics"]["accuracy"]["value"] == pytest.approx(theirs_acc) == pytest.approx(5 / 6)
    letters = lm_eval_letters([i["output"] for i in run["items"]], keys)
    assert [p.strip("()") for p in letters] == [i["prediction"] for i in run["items"]]


def test_replies_outside_the_format_differ_only_where_documented(tmp_path: Path) -> None:
    from aris.eval.datasets import load_dataset

    items = load_dataset(dataset(tmp_path))
    p = make_protocol("text-qa", items, tmp_path / "mcq.jsonl")
    keys = [it.id for it in items]
    ours = [p.score(it, {"text": EDGE[it.id][0]}).score == 1.0 for it in items]
    _, theirs = lm_eval_accuracy([EDGE[k][0] for k in keys], keys)
    assert ours == [EDGE[k][1] for k in keys]
    assert theirs == [EDGE[k][2] for k in keys]
    differ = {k for k, a, b in zip(keys, ours, theirs, strict=True) if a != b}
    assert differ == {"scurvy", "diabetes", "absence"}  # bold marker; ": X" fallback; option text fallback
