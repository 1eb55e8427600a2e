"""Training examples: class folders and tables, the seeded split, the digest, and the prompt."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from aris.errors import ConfigError, InputError
from aris.finetune.dataset import Example, Prompter, dataset_digest, load_examples, split
from aris.prompt import build_turns, render
from aris.types import ImagePart

CLASSES = ["chest_xray", "ct_slice", "pathology"]


def test_class_folder_gives_classify_examples(class_folder: Path) -> None:
    data = load_examples(class_folder, "classify")
    assert data.classes == CLASSES
    assert len(data.examples) == 12
    ex = data.examples[0]
    assert ex.options == {"choices": CLASSES}
    assert ex.label == "chest_xray"
    # the reply the classify prompt asks for (and constrained decoding writes)
    assert json.loads(ex.answer) == {"answer": "chest_xray"}
    assert ex.answer == '{"answer": "chest_xray"}'
    assert Counter(e.label for e in data.examples) == dict.fromkeys(CLASSES, 4)


def test_class_folder_needs_the_classify_task(class_folder: Path) -> None:
    with pytest.raises(ConfigError, match="classify"):
        load_examples(class_folder, "vqa")


def test_split_is_seeded_and_stratified(class_folder: Path) -> None:
    examples = load_examples(class_folder, "classify").examples
    train, val = split(examples, 0.25, seed=1)
    assert Counter(e.label for e in val) == dict.fromkeys(CLASSES, 1)  # one of four per class
    assert len(train) == 9
    assert not {e.inputs for e in train} & {e.inputs for e in val}
    assert split(examples, 0.25, seed=1) == (train, val)
    others = {tuple(e.inputs for e in split(examples, 0.25, seed=s)[1]) for s in range(2, 8)}
    assert len(others) > 1  # the seed matters
    assert split(examples, 0.0, seed=1) == (examples, [])


def test_table_rows_keep_their_columns(tmp_path: Path, class_folder: Path) -> None:
    shutil.copytree(class_folder, tmp_path / "imgs")
    rows = [
        {"input": "imgs/ct_slice/00.png", "question": "Which body part?", "answer": "head", "subgroup": "a"},
        {"input": "imgs/pathology/01.png|imgs/pathology/02.png", "question": "Same tissue?", "answer": "yes"},
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_examples(tmp_path / "train.jsonl", "vqa")
    a, b = data.examples
    assert a.inputs == (str(tmp_path / "imgs/ct_slice/00.png"),)
    assert (a.question, a.answer) == ("Which body part?", "head")
    assert b.inputs == (str(tmp_path / "imgs/pathology/01.png"), str(tmp_path / "imgs/pathology/02.png"))
    assert Example.from_row(b.to_row()) == b

    (tmp_path / "t.csv").write_text(
        'input,question,answer,choices\nimgs/ct_slice/00.png,Which?,ct,"[""ct"",""mr""]"\n'
    )
    (c,) = load_examples(tmp_path / "t.csv", "classify").examples
    assert c.options == {"choices": ["ct", "mr"]}


def test_empty_answer_is_named(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(json.dumps({"input": "", "question": "q", "answer": " "}) + "\n")
    with pytest.raises(InputError, match=r"t\.jsonl.*empty answer"):
        load_examples(tmp_path / "t.jsonl", "vqa")


def test_digest_follows_content_not_location(tmp_path: Path, class_folder: Path) -> None:
    d1 = dataset_digest(load_examples(class_folder, "classify"))
    moved = shutil.copytree(class_folder, tmp_path / "elsewhere")
    assert dataset_digest(load_examples(moved, "classify")) == d1
    target = moved / "ct_slice" / "00.png"
    blob = bytearray(target.read_bytes())
    blob[-20] ^= 1
    target.write_bytes(bytes(blob))
    assert dataset_digest(load_examples(moved, "classify")) != d1


def test_examples_are_prompted_by_the_task_and_read_by_the_inference_reader(
    tmp_path: Path, class_folder: Path, samples
) -> None:  # type: ignore[no-untyped-def]
    """A DICOM in a class folder goes through aris.inputs.read and the classify task's own messages."""
    from aris.inputs import read
    from aris.tasks import get_task

    root = shutil.copytree(class_folder, tmp_path / "d")
    dcm = root / "chest_xray" / "study.dcm"
    shutil.copy(samples("dicom/cxr/highdicom_dx_image.dcm"), dcm)
    data = load_examples(root, "classify")
    ex = next(e for e in data.examples if e.inputs == (str(dcm),))
    turns = Prompter("classify").turns(ex)

    prepared = read(dcm)
    expected = build_turns(get_task("classify").messages([prepared], None, {"choices": CLASSES}))
    assert render(turns) == render(expected)
    (img,) = [p.image for p in turns[0].parts if isinstance(p, ImagePart)]
    assert img.tobytes() == prepared.images[0].tobytes()
    assert "chest_xray" in render(turns)
    assert "pathology" in render(turns)


def test_ask_is_the_plain_chat_prompt(class_folder: Path) -> None:
    ex = Example((str(class_folder / "ct_slice" / "00.png"),), "What is shown?", "A CT slice.")
    text = render(Prompter("ask").turns(ex))
    assert (
        text
        == "<bos><start_of_turn>user\n<start_of_image>What is shown?<end_of_turn>\n<start_of_turn>model\n"
    )


def test_unknown_task_is_refused() -> None:
    with pytest.raises(ConfigError, match="Unknown task"):
        Prompter("no-such-task")
