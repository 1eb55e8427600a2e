"""Worklists and content keys, checked against digests computed here with hashlib."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from aris.batch.manifest import WorkItem, input_digest, item_key, load_worklist, path_digest
from aris.errors import InputError


def test_folder_worklist_has_one_item_per_entry(tmp_path: Path) -> None:
    tmp_path = tmp_path / "wl"
    (tmp_path / "study1").mkdir(parents=True)
    (tmp_path / "study1" / "a.dcm").write_bytes(b"a")
    (tmp_path / "b.png").write_bytes(b"b")
    (tmp_path / ".DS_Store").write_bytes(b"x")
    items = load_worklist(tmp_path, question="q?")
    assert [it.paths for it in items] == [(tmp_path / "b.png",), (tmp_path / "study1",)]
    assert {it.question for it in items} == {"q?"}


def test_csv_worklist_rows(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.dcm").write_bytes(b"x")
    lst = tmp_path / "list.csv"
    lst.write_text(
        "path,question,kind,options,task_options\n"
        "data/x.dcm,Is there an effusion?,cxr,,\n"
        'data/x.dcm|/abs/y.dcm,,,"{""series"": ""1.2""}","{""format"": ""json""}"\n'
        ",What is HbA1c?,,,\n"
    )
    a, b, c = load_worklist(lst, question="default q")
    assert a.paths == (tmp_path / "data" / "x.dcm",)
    assert (a.question, a.kind) == ("Is there an effusion?", "cxr")
    assert b.paths == (tmp_path / "data" / "x.dcm", Path("/abs/y.dcm"))
    assert b.question == "default q"
    assert b.options == {"series": "1.2"}
    assert b.task_options == {"format": "json"}
    assert b.input_ref == f"{tmp_path / 'data' / 'x.dcm'}|/abs/y.dcm"
    assert c.paths == ()
    assert c.question == "What is HbA1c?"


def test_jsonl_worklist_and_its_errors(tmp_path: Path) -> None:
    lst = tmp_path / "list.jsonl"
    lst.write_text(json.dumps({"path": "a.png", "options": {"pad_square": True}}) + "\n\n")
    (item,) = load_worklist(lst)
    assert item.options == {"pad_square": True}
    assert item.paths == (tmp_path / "a.png",)

    lst.write_text('{"path": "a.png", "colour": "red"}\n')
    with pytest.raises(InputError, match="row 1: unknown column"):
        load_worklist(lst)
    lst.write_text('{"path": "a.png"\n')
    with pytest.raises(InputError, match="line 1: not JSON"):
        load_worklist(lst)
    lst.write_text('{"question": ""}\n')
    with pytest.raises(InputError, match="neither a path nor a question"):
        load_worklist(lst)
    with pytest.raises(InputError, match="no such worklist"):
        load_worklist(tmp_path / "missing.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        load_worklist(tmp_path / "empty")


def test_file_and_folder_digests(tmp_path: Path) -> None:
    f = tmp_path / "one.bin"
    payload = bytes(range(256)) * 9000  # > 2 MiB: several chunks
    f.write_bytes(payload)
    assert path_digest(f) == hashlib.sha256(payload).hexdigest()

    study = tmp_path / "study"
    (study / "s2").mkdir(parents=True)
    (study / "s1.dcm").write_bytes(b"first")
    (study / "s2" / "x.dcm").write_bytes(b"second")
    h = hashlib.sha256(b"aris-folder-v1\0")
    for rel, data in (("s1.dcm", b"first"), ("s2/x.dcm", b"second")):
        h.update(rel.encode() + b"\0" + hashlib.sha256(data).hexdigest().encode() + b"\0")
    assert path_digest(study) == h.hexdigest()

    (study / "s1.dcm").rename(study / "s0.dcm")  # same bytes, another name: another study layout
    assert path_digest(study) != h.hexdigest()
    copy = tmp_path / "copy.bin"
    copy.write_bytes(payload)
    assert input_digest([copy]) == input_digest([f])  # content, not path
    assert input_digest([f, copy]) == input_digest([copy, f])  # same bytes in both places
    assert input_digest([f, study]) != input_digest([study, f])  # prior/current order matters
    assert path_digest(tmp_path / "nope") != path_digest(tmp_path / "nope2")


def test_item_key_covers_what_changes_the_answer() -> None:
    ident = {"engine": "transformers", "model": "m", "weights": "w1", "adapter": None, "dtype": "float32"}
    gen = {"gen": {"max_new_tokens": 8}}
    base = item_key("d" * 64, "cxr-report", ident, gen, "q")
    expected = hashlib.sha256(
        json.dumps(
            ["item-v2", "d" * 64, "cxr-report", ident, gen, "q"], sort_keys=True, separators=(",", ":")
        ).encode()
    ).hexdigest()
    assert base == expected
    others = {
        item_key("e" * 64, "cxr-report", ident, gen, "q"),
        item_key("d" * 64, "vqa", ident, gen, "q"),
        item_key("d" * 64, "cxr-report", {**ident, "model": "m2"}, gen, "q"),
        item_key("d" * 64, "cxr-report", {**ident, "adapter": "a1"}, gen, "q"),  # a fine-tune of m
        item_key("d" * 64, "cxr-report", {**ident, "weights": "w2"}, gen, "q"),  # new weights, same name
        item_key("d" * 64, "cxr-report", {**ident, "dtype": "bfloat16"}, gen, "q"),
        item_key("d" * 64, "cxr-report", {**ident, "engine": "llamacpp"}, gen, "q"),
        item_key("d" * 64, "cxr-report", ident, {"gen": {"max_new_tokens": 9}}, "q"),
        item_key("d" * 64, "cxr-report", ident, gen, "q2"),
    }
    assert base not in others
    assert len(others) == 9


def test_work_item_from_ref_round_trips() -> None:
    it = WorkItem.from_ref("/a/b.dcm|/c", "q", "", {"x": 1})
    assert it.paths == (Path("/a/b.dcm"), Path("/c"))
    assert it.kind == "auto"
    assert it.input_ref == "/a/b.dcm|/c"
