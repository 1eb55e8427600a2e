"""``aris eval``: the command end to end on the 270M GGUF, its resume, ``compare``, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aris.cli import app
from aris.errors import ConfigError, InputError
from tests.eval import datasets as sets
from tests.eval.datasets import use_oracle


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, [str(a) for a in args])


def test_eval_dataset_runs_through_a_real_engine_and_resumes(tmp_path: Path, gguf_270m: Path) -> None:
    ds = sets.text_qa_set(tmp_path / "data")
    out = tmp_path / "run"
    cmd = [
        "eval", ds, "--task", "text-qa", "--engine", "llamacpp", "--model", gguf_270m, "--n-ctx", "2048",
        "--max-new-tokens", "6", "--limit", "1", "--benchmark", "MedQA", "--layout", "aris", "--bootstrap", "100", "--out", out,
    ]  # fmt: skip
    r = invoke(*cmd)
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.output
    assert "69.1" in r.output  # yours vs published
    assert "1 generated, 0 reused" in r.output
    run = json.loads((out / "run.json").read_text())
    assert run["engine"] == "llamacpp"
    assert run["protocol"]["max_new_tokens"] == 6
    assert run["protocol"]["bootstrap"]["resamples"] == 100
    assert run["settings"]["model"] == str(gguf_270m)
    assert "api_key" not in run["settings"]
    assert (out / "report.md").exists()
    assert (out / "report.html").exists()
    md = (out / "report.md").read_text()

    again = invoke(*cmd)  # the same command resumes the same job: nothing is generated
    assert again.exit_code == 0, again.output
    assert "0 generated" in again.output
    assert (out / "report.md").read_text() == md


def test_eval_compare_prints_and_writes_the_changed_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = sets.text_qa_set(tmp_path / "data")
    use_oracle(monkeypatch, [("scurvy", "Final Answer: C"), ("diabetes", "Final Answer: A"), ("insulin", "Final Answer: liver")])  # fmt: skip
    a = invoke("eval", ds, "-t", "text-qa", "--engine", "fake", "--model", "model-a", "--out", tmp_path / "a")
    assert a.exit_code == 0, a.output
    use_oracle(monkeypatch, [("scurvy", "Final Answer: D"), ("diabetes", "Final Answer: A"), ("insulin", "Final Answer: pancreas")])  # fmt: skip
    b = invoke("eval", ds, "-t", "text-qa", "--engine", "fake", "--model", "model-b", "--out", tmp_path / "b")
    assert b.exit_code == 0, b.output

    r = invoke("eval", "compare", tmp_path / "a", tmp_path / "b" / "run.json", "--out", tmp_path / "cmp.md")
    assert r.exit_code == 0, r.output
    assert "2 items changed their answer" in r.output
    assert "model-a" in r.output
    assert "model-b" in r.output
    assert "+0.0" in r.output  # accuracy 1/3 -> 1/3: t1 lost, t3 gained
    md = (tmp_path / "cmp.md").read_text()
    assert '| t1 | "C" | "D" | "C" |' in md
    assert '| t3 | "liver" | "pancreas" | "pancreas" |' in md
    assert "t2" not in md.split("## Items")[1]

    r = invoke("eval", "compare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "cmp")
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [c["id"] for c in data["changed"]] == ["t1", "t3"]
    assert data["metrics"]["accuracy"]["delta"] == pytest.approx(0.0)
    assert (tmp_path / "cmp" / "compare.md").exists()


def test_eval_errors_name_what_to_fix(tmp_path: Path) -> None:
    ds = sets.write_jsonl(
        tmp_path / "bad.jsonl", [{"id": "q9", "question": "Q?", "options": ["x", "y"], "answer": "E"}]
    )
    r = invoke("eval", ds, "--task", "text-qa", "--engine", "fake")
    assert isinstance(r.exception, InputError)
    assert "bad.jsonl: row q9: answer 'E' is not one of its options" in str(r.exception)
    r = invoke("eval", ds, "--task", "ehr-summary", "--engine", "fake")
    assert isinstance(r.exception, ConfigError)
    assert "no protocol for task 'ehr-summary'" in str(r.exception)
    r = invoke("eval", ds, "--task", "text-qa", "--benchmark", "NoSuchBench", "--engine", "fake")
    assert r.exit_code == 2
    assert "no published figures or adapter for 'NoSuchBench'" in r.output
    r = invoke("eval", "compare", tmp_path / "nope", tmp_path / "nope2")
    assert isinstance(r.exception, InputError)
    assert "no such eval run" in str(r.exception)
    good = sets.text_qa_set(tmp_path / "data")
    r = invoke(
        "eval", "run", good, "--task", "text-qa", "--engine", "fake", "--limit", "1", "--out", tmp_path / "o"
    )
    assert r.exit_code == 0, r.output  # `aris eval run DATASET` is `aris eval DATASET`
    assert (tmp_path / "o" / "report.md").exists()
    r = invoke("eval", "--help")
    assert r.exit_code == 0
    assert "compare" in r.output
    assert "run" in r.output
