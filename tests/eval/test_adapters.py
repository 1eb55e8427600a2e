"""Standard benchmark layouts read without conversion: tiny datasets built here with the ``datasets``
library in each benchmark's real column layout (as its Hugging Face dataset card gives it), saved the
ways users get them (``save_to_disk``, the hub's parquet files, SLAKE's JSON beside its images)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Sequence, Value
from PIL import Image as PILImage
from typer.testing import CliRunner

from aris.config import ArisSettings
from aris.errors import ConfigError, InputError
from aris.eval.harness import evaluate, load_items
from tests.eval.datasets import use_oracle

CXR = "dicom/cxr/highdicom_dx_image.dcm"


def medqa_rows() -> list[dict[str, Any]]:
    return [
        {
            "question": "A 45-year-old man with type 2 diabetes. Which drug first?",
            "answer": "Metformin",
            "options": {"A": "Insulin", "B": "Metformin", "C": "Warfarin", "D": "Aspirin"},
            "meta_info": "step2&3",
            "answer_idx": "B",
            "metamap_phrases": ["type 2 diabetes"],
        },
        {
            "question": "Scurvy is caused by a deficiency of which vitamin?",
            "answer": "Vitamin C",
            "options": {"A": "Vitamin A", "B": "Vitamin B12", "C": "Vitamin C", "D": "Vitamin D"},
            "meta_info": "step1",
            "answer_idx": "C",
            "metamap_phrases": ["scurvy"],
        },
    ]


def test_medqa_saved_to_disk_and_its_hf_twin_as_parquet(tmp_path: Path) -> None:
    folder = tmp_path / "medqa"
    DatasetDict(
        {"train": Dataset.from_list(medqa_rows()[:1]), "test": Dataset.from_list(medqa_rows())}
    ).save_to_disk(str(folder))
    items, p, source = load_items(folder, None, None, None, adapter="medqa", image_dir=tmp_path / "img")
    assert (p.task, p.mode, p.prompts) == ("text-qa", "text", "report")
    assert source == {"layout": "medqa", "split": "test", "rows": 2, "left_out": 0}
    assert [p.refs[i.id] for i in items] == ["B", "C"]
    assert [i.subgroup for i in items] == ["step2&3", "step1"]
    w = p.work_item(items[0])
    assert w.task_options["choices"] == ["Insulin", "Metformin", "Warfarin", "Aspirin"]
    assert w.task_options["prompts"] == "report"

    hf = Dataset.from_list(
        [
            {"id": f"q{n}", "sent1": r["question"], "sent2": "", **{f"ending{k}": v for k, v in enumerate(r["options"].values())}, "label": "ABCD".index(r["answer_idx"])}
            for n, r in enumerate(medqa_rows())
        ]
    )  # fmt: skip
    hf.to_parquet(str(tmp_path / "medqa_hf.parquet"))
    items2, p2, _ = load_items(
        tmp_path / "medqa_hf.parquet", None, None, None, adapter="medqa", image_dir=tmp_path
    )
    assert [p2.refs[i.id] for i in items2] == ["B", "C"]
    assert [i.extra["options"] for i in items2] == [i.extra["options"] for i in items]


def test_medmcqa_defaults_to_validation_and_refuses_the_unanswered_test_split(tmp_path: Path) -> None:
    feats = Features(
        {
            "id": Value("string"), "question": Value("string"), "opa": Value("string"), "opb": Value("string"),
            "opc": Value("string"), "opd": Value("string"), "cop": ClassLabel(names=["a", "b", "c", "d"]),
            "choice_type": Value("string"), "exp": Value("string"), "subject_name": Value("string"),
            "topic_name": Value("string"),
        }
    )  # fmt: skip
    row = {"id": "m1", "question": "Drug of choice for absence seizures?", "opa": "Phenytoin", "opb": "Ethosuximide", "opc": "Carbamazepine", "opd": "Phenobarbital", "cop": 1, "choice_type": "single", "exp": "", "subject_name": "Pharmacology", "topic_name": "CNS"}  # fmt: skip
    test_row = {**row, "id": "m2", "cop": -1}
    folder = tmp_path / "medmcqa"
    DatasetDict(
        {
            "validation": Dataset.from_list([row], features=feats),
            "test": Dataset.from_list([test_row], features=Features({**feats, "cop": Value("int64")})),
        }
    ).save_to_disk(str(folder))
    items, p, source = load_items(folder, None, None, None, adapter="medmcqa", image_dir=tmp_path)
    assert source["split"] == "validation"
    assert (items[0].id, p.refs["m1"], items[0].subgroup) == ("m1", "B", "Pharmacology")
    with pytest.raises(InputError, match="use --split validation"):
        load_items(folder, None, None, None, adapter="medmcqa", split="test", image_dir=tmp_path)
    with pytest.raises(InputError, match="no split 'dev'"):
        load_items(folder, None, None, None, adapter="medmcqa", split="dev", image_dir=tmp_path)


def test_pubmedqa_pqa_labeled_with_its_context_struct(tmp_path: Path) -> None:
    feats = Features(
        {
            "pubid": Value("int32"),
            "question": Value("string"),
            "context": {
                "contexts": Sequence(Value("string")),
                "labels": Sequence(Value("string")),
                "meshes": Sequence(Value("string")),
                "reasoning_required_pred": Sequence(Value("string")),
                "reasoning_free_pred": Sequence(Value("string")),
            },
            "long_answer": Value("string"),
            "final_decision": Value("string"),
        }
    )
    row = {
        "pubid": 21645374,
        "question": "Do mitochondria play a role in remodelling lace plant leaves?",
        "context": {"contexts": ["Programmed cell death (PCD) occurs.", "Mitochondria were observed."], "labels": ["BACKGROUND", "RESULTS"], "meshes": ["Mitochondria"], "reasoning_required_pred": ["yes"], "reasoning_free_pred": ["yes"]},
        "long_answer": "Results show mitochondria play a role.",
        "final_decision": "yes",
    }  # fmt: skip
    folder = tmp_path / "pqa_labeled"
    DatasetDict({"train": Dataset.from_list([row], features=feats)}).save_to_disk(str(folder))
    items, p, source = load_items(folder, None, None, None, adapter="pubmedqa", image_dir=tmp_path)
    assert source["split"] == "train"
    it = items[0]
    assert it.id == "21645374"
    assert it.question == (
        "Abstract: Programmed cell death (PCD) occurs.\nMitochondria were observed.\n"
        "Question: Do mitochondria play a role in remodelling lace plant leaves?"
    )
    assert it.extra["options"] == ["yes", "no", "maybe"]
    assert p.refs[it.id] == "A"


def test_mmlu_hub_parquet_keeps_the_medical_subjects(tmp_path: Path) -> None:
    feats = Features(
        {
            "question": Value("string"),
            "subject": Value("string"),
            "choices": Sequence(Value("string")),
            "answer": ClassLabel(names=["A", "B", "C", "D"]),
        }
    )
    rows = [
        {"question": "The humerus articulates with the?", "subject": "anatomy", "choices": ["femur", "scapula", "tibia", "skull"], "answer": 1},
        {"question": "The closest star?", "subject": "astronomy", "choices": ["Sun", "Vega", "Sirius", "Rigel"], "answer": 0},
        {"question": "Trisomy 21 is?", "subject": "medical_genetics", "choices": ["Turner", "Klinefelter", "Down", "Edwards"], "answer": 2},
    ]  # fmt: skip
    shard = tmp_path / "mmlu" / "all" / "test-00000-of-00001.parquet"
    shard.parent.mkdir(parents=True)
    Dataset.from_list(rows, features=feats).to_parquet(str(shard))
    items, p, source = load_items(tmp_path / "mmlu", None, None, None, adapter="mmlu-med", image_dir=tmp_path)
    assert source == {"layout": "mmlu-med", "split": "test", "rows": 3, "left_out": 1}
    assert [(i.subgroup, p.refs[i.id]) for i in items] == [("anatomy", "B"), ("medical_genetics", "C")]


def slake_folder(tmp_path: Path, samples: Any) -> Path:
    from aris.inputs import read

    folder = tmp_path / "SLAKE"
    img = folder / "imgs" / "xmlab1" / "source.jpg"
    img.parent.mkdir(parents=True)
    read(samples(CXR)).images[0].convert("RGB").save(img)
    rows = [
        {"img_id": 1, "img_name": "xmlab1/source.jpg", "question": "Which organ is abnormal?", "answer": "Left Lung", "q_lang": "en", "location": "Chest", "modality": "X-Ray", "answer_type": "OPEN", "base_type": "vqa", "content_type": "Organ", "triple": ["vhead", "_", "_"], "qid": 11},
        {"img_id": 1, "img_name": "xmlab1/source.jpg", "question": "Is this a CT?", "answer": "No", "q_lang": "en", "location": "Chest", "modality": "X-Ray", "answer_type": "CLOSED", "base_type": "vqa", "content_type": "Modality", "triple": ["vhead", "_", "_"], "qid": 12},
        {"img_id": 1, "img_name": "xmlab1/source.jpg", "question": "这是CT吗?", "answer": "不是", "q_lang": "zh", "location": "Chest", "modality": "X-Ray", "answer_type": "CLOSED", "base_type": "vqa", "content_type": "Modality", "triple": ["vhead", "_", "_"], "qid": 13},
    ]  # fmt: skip
    (folder / "test.json").write_text(json.dumps(rows, ensure_ascii=False))
    return folder


def test_slake_reads_its_json_beside_imgs_english_only(tmp_path: Path, samples) -> None:  # type: ignore[no-untyped-def]
    folder = slake_folder(tmp_path, samples)
    for path in (folder, folder / "test.json"):
        items, p, source = load_items(path, None, None, None, adapter="slake", image_dir=tmp_path)
        assert source["left_out"] == 1  # the Chinese row
        assert [i.id for i in items] == ["11", "12"]
        assert items[0].inputs == [folder / "imgs" / "xmlab1" / "source.jpg"]
        assert p.record()["choices"] == ["closed questions: the dataset's answer_type CLOSED"]
        assert [p.is_closed(i) for i in items] == [False, True]  # type: ignore[attr-defined]


def vqa_rad_parquet(tmp_path: Path, samples: Any) -> Path:
    from aris.inputs import read

    pic = read(samples(CXR)).images[0].convert("RGB")
    other = PILImage.new("RGB", (32, 32), (200, 10, 10))
    ds = Dataset.from_dict(
        {
            "image": [pic, other, pic],
            "question": ["is there a pneumothorax?", "what organ is shown?", "is the heart enlarged?"],
            "answer": ["no", "lungs", "yes"],
        },
        features=Features({"image": Image(), "question": Value("string"), "answer": Value("string")}),
    )
    shard = tmp_path / "vqa-rad" / "data" / "test-00000-of-00001.parquet"
    shard.parent.mkdir(parents=True)
    ds.to_parquet(str(shard))
    return tmp_path / "vqa-rad"


def test_vqa_rad_parquet_images_written_once_by_content_and_the_run_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samples
) -> None:  # type: ignore[no-untyped-def]
    folder = vqa_rad_parquet(tmp_path, samples)
    use_oracle(
        monkeypatch,
        [
            ("pneumothorax?", "No air. Final Answer: No."),
            ("what organ", "Final Answer: the lungs"),
            ("heart enlarged?", "Final Answer: no"),
        ],
    )
    settings = ArisSettings(engine="fake", home=tmp_path / "home")
    run = evaluate(
        folder, None, settings, out_dir=tmp_path / "out", benchmark="VQA-RAD", adapter="vqa-rad", n_boot=50
    ).run
    assert run["source"] == {"layout": "vqa-rad", "split": "test", "rows": 3, "left_out": 0}
    assert run["task"] == "vqa"
    inputs = [i["input"] for i in run["items"]]
    assert inputs[0] == inputs[2]  # the same picture is one file
    assert all(Path(p).parent == tmp_path / "home" / "eval" / "images" for p in inputs)
    assert [i["score"] for i in run["items"]] == [1.0, 1.0, 0.0]
    assert run["metrics"]["closed_accuracy"]["value"] == 0.5
    assert run["metrics"]["closed_accuracy"]["n"] == 2  # yes/no references: VQA-RAD marks no answer type
    assert run["metrics"]["token_f1"]["published"] == 48.1
    assert "model card" in run["metrics"]["token_f1"]["published_source"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "- token_f1 48.1: MedGemma 1.5 model card" in md
    again = evaluate(
        folder, None, settings, out_dir=tmp_path / "again", benchmark="vqa-rad", adapter="vqa-rad", n_boot=50
    )
    assert again.summary.done_now == 0  # same files, same items: reused


def test_a_dataset_in_another_layout_is_named_with_what_it_lacks(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"question": "Q?", "options": ["a", "b"], "answer": "a"}) + "\n")
    with pytest.raises(
        InputError, match=r"not the slake layout: needs columns \{img_name, question, answer\}.*--layout aris"
    ):
        load_items(path, None, None, None, adapter="slake", image_dir=tmp_path)
    with pytest.raises(ConfigError, match="runs task 'vqa', not 'text-qa'"):
        load_items(path, "text-qa", None, None, adapter="slake", image_dir=tmp_path)


def test_cli_reads_a_benchmark_folder_with_benchmark_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aris.cli import app

    folder = tmp_path / "medqa"
    DatasetDict({"test": Dataset.from_list(medqa_rows())}).save_to_disk(str(folder))
    oracles = use_oracle(monkeypatch, [("diabetes", "Final Answer: B"), ("Scurvy", "Final Answer: A")])
    r = CliRunner().invoke(
        app, ["eval", str(folder), "--benchmark", "MedQA", "--engine", "fake", "--bootstrap", "0", "--out", str(tmp_path / "o")]
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "69.1" in r.output
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["metrics"]["accuracy"]["value"] == 0.5
    assert run["protocol"]["max_new_tokens"] == 8192
    assert oracles[0].params[0].max_new_tokens == 8192
    assert oracles[0].params[0].think is True
    assert all(
        p.startswith("<bos><start_of_turn>user\nSYSTEM INSTRUCTION: think silently if needed.\n\n")
        for p in oracles[0].prompts
    )
    r = CliRunner().invoke(app, ["eval", str(folder), "--engine", "fake"])
    assert r.exit_code == 2
    assert "give --task, or --benchmark" in r.output
