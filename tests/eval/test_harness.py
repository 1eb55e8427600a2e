"""``evaluate`` end to end: a dataset built from the sample files becomes a batch job, is scored by its
protocol, and is written as run.json / report.md / report.html whose numbers follow from the items.

Two kinds of runs:
* real engines on the small local models (the 270M GGUF on llama.cpp for text-qa, the tiny VLM on
  transformers for classify): the scores are near chance; the path, the record and the resume are tested;
* a scripted engine (code above engines) answering by prompt, one run per metric family, so each
  metric is checked against a hand-computed value and against the reference library on the items.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from rouge_score import rouge_scorer
from sklearn.metrics import balanced_accuracy_score, f1_score

from aris.batch.runner import BatchOptions
from aris.config import ArisSettings
from aris.eval.harness import evaluate, load_run
from aris.eval.report import compare
from aris.notice import NOTICE
from tests.eval import datasets as sets
from tests.eval.datasets import use_oracle
from tests.servers import SSE_HEADERS, Recorded, Reply, sse_chat, stub_server

FAST = {"n_boot": 200}


def pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def done(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in run["items"] if i["status"] == "done"]


def check_reports(run: dict[str, Any], out: Path) -> None:
    """The files agree with the record: each metric's value and CI appear in Markdown and HTML."""
    assert json.loads((out / "run.json").read_text())["metrics"] == run["metrics"]
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for name, m in run["metrics"].items():
        assert f"| {name} | {pct(m['value'])} |" in md
        assert f"<td>{name}</td><td>{pct(m['value'])}</td>" in html
        if m["ci"]:
            lo, hi = m["ci"]
            assert lo <= m["value"] + 1e-9
            assert m["value"] <= hi + 1e-9
            assert f"{pct(lo)}–{pct(hi)}" in md
        assert m["n"] == (len(done(run)) if name != "closed_accuracy" else m["n"])
        assert f"| {m['n']} |" in md
    assert NOTICE in md
    assert "<svg" in html
    assert run["dataset_sha256"] in md or run["dataset_sha256"][:16] in md
    for sub, vals in run["subgroups"].items():
        line = f"| {sub} | {vals['n']} | " + " | ".join(pct(vals.get(n)) for n in run["metrics"]) + " |"
        assert line in md


# -- real engines -------------------------------------------------------------------------------------


def test_text_qa_on_the_270m_gguf_resumes_to_the_same_report(tmp_path: Path, gguf_270m: Path) -> None:
    ds = sets.text_qa_set(tmp_path / "data")
    settings = ArisSettings(engine="llamacpp", model=str(gguf_270m), max_new_tokens=8, n_ctx=2048)
    kw: dict[str, Any] = {"benchmark": "MedQA", "limit": 2, **FAST}
    first = evaluate(ds, "text-qa", settings, out_dir=tmp_path / "a", **kw)
    run = first.run
    assert first.summary.done_now == 2
    assert first.summary.reused_now == 0
    assert run["engine"] == "llamacpp"
    assert run["model"].endswith(".gguf")
    assert run["versions"]["llama-cpp-python"]
    assert run["dataset"] == str(ds)
    assert run["protocol"]["think"] is True
    assert run["protocol"]["max_new_tokens"] == 8
    assert run["metrics"]["accuracy"]["published"] == 69.1
    items = run["items"]
    assert [i["reference"] for i in items] == ["C", "B"]
    for i in items:
        assert re.fullmatch(r"[0-9a-f]{64}", i["prompt_sha256"])
        assert i["prompt_hashes"][0] == i["prompt_sha256"]
        assert i["usage"]["completion_tokens"] >= 1
        assert i["score"] == float(i["prediction"] == i["reference"])
    assert run["metrics"]["accuracy"]["value"] == pytest.approx(sum(i["score"] for i in items) / 2)
    check_reports(run, tmp_path / "a")
    md = (tmp_path / "a" / "report.md").read_text()
    assert "69.1" in md

    again = evaluate(ds, "text-qa", settings, out_dir=tmp_path / "b", **kw)
    assert again.summary.resumed
    assert again.summary.done_now == 0  # nothing generated again
    assert again.summary.counts["done"] == 2
    assert again.run["job_id"] == run["job_id"]
    assert again.run["metrics"] == run["metrics"]
    assert [i["output"] for i in again.run["items"]] == [i["output"] for i in items]
    assert (tmp_path / "b" / "report.md").read_text() == md


def test_classify_on_the_tiny_vlm_with_a_failed_item(tmp_path: Path, tiny_vlm: Path, samples) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "data"
    ds = sets.classify_set(samples, root)
    rows = [json.loads(x) for x in ds.read_text().splitlines()]
    rows.insert(1, {"id": "gone", "input": "tiles/missing.png", "answer": "ADI", "choices": "nct-crc-he"})
    sets.write_jsonl(ds, rows)
    settings = ArisSettings(engine="transformers", model=str(tiny_vlm), max_new_tokens=12)
    result = evaluate(ds, "classify", settings, out_dir=tmp_path / "out", limit=3, **FAST)
    run = result.run
    assert run["engine"] == "transformers"
    assert run["counts"] == {
        "items": 3,
        "scored": 2,
        "failed": 1,
        "not_run": 0,
        "no_answer": sum(1 for i in done(run) if i["prediction"] is None),
        "repaired": sum(1 for i in done(run) if i["repaired"]),
        "truncated": sum(1 for i in done(run) if i["truncated"]),
    }
    gone = run["items"][1]
    assert gone["status"] == "failed"
    assert "missing.png" in gone["error"]
    items = done(run)
    preds = [i["prediction"] or "" for i in items]
    refs = [i["reference"] for i in items]
    assert refs == ["colorectal adenocarcinoma epithelium", "cancer-associated stroma"]
    assert all(i["prediction"] is None or i["prediction"] in i["parsed"]["options"] for i in items)
    assert run["metrics"]["accuracy"]["value"] == pytest.approx(
        sum(p == r for p, r in zip(preds, refs, strict=True)) / 2
    )
    labels = sorted(set(refs) | {p for p in preds if p})
    assert run["metrics"]["macro_f1"]["value"] == pytest.approx(
        f1_score(refs, preds, labels=labels, average="macro", zero_division=0)
    )
    assert run["subgroups"]["svs"]["n"] == 2
    check_reports(run, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Failed items (left out of the metrics)" in md
    assert "- gone:" in md

    # the same run answered otherwise differs exactly where the predictions differ
    b = dict(run)
    b["items"] = [dict(i, prediction="adipose") for i in run["items"]]
    cmp = compare(run, b)
    assert {c["id"] for c in cmp["changed"]} == {
        i["id"] for i in run["items"] if i["prediction"] != "adipose"
    }


# -- every metric family, scripted ---------------------------------------------------------------------


def test_text_qa_accuracy_and_subgroups_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = sets.text_qa_set(tmp_path / "data")
    use_oracle(
        monkeypatch,
        [
            ("scurvy", "<unused94>thought\nvitamin C<unused95>Ascorbic acid. Final Answer: C"),
            ("type 2 diabetes", "Final Answer: (A) Insulin"),  # wrong
            ("makes insulin", "Final Answer: The pancreas."),
        ],
    )
    r = evaluate(ds, "text-qa", ArisSettings(engine="fake"), out_dir=tmp_path / "out", benchmark="medqa")
    run = r.run
    assert [i["prediction"] for i in run["items"]] == ["C", "A", "pancreas"]
    assert run["metrics"]["accuracy"]["value"] == pytest.approx(2 / 3)
    assert run["metrics"]["accuracy"]["published"] == 69.1  # benchmark names are case-insensitive
    assert run["subgroups"] == {
        "endocrine": {"n": 2, "accuracy": 0.5},
        "nutrition": {"n": 1, "accuracy": 1.0},
    }
    assert run["items"][0]["thought"] == "vitamin C"
    assert run["protocol"]["bootstrap"]["resamples"] == 1000
    check_reports(run, tmp_path / "out")


def test_binary_vqa_macro_f1_over_conditions_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samples) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    ds = sets.vqa_binary_set(samples, tmp_path / "data")
    oracles = use_oracle(
        monkeypatch,
        [
            ("pleural effusion?", "Blunted angle. Final Answer: yes"),  # tp (effusion)
            ("on the left?", "Final Answer: Yes"),  # fp (effusion)
            ("heart enlarged?", "I cannot tell."),  # unreadable on a negative: wrong, a fp (cardiomegaly)
            ("cardiomegaly?", "Final Answer: yes"),  # tp (cardiomegaly)
        ],
    )
    run = evaluate(
        ds, "vqa", ArisSettings(engine="fake"), out_dir=tmp_path / "out", mode="yes-no", **FAST
    ).run
    assert run["protocol"]["mode"] == "yes-no"
    assert all(
        p.endswith('You MUST end your responce with either "Final Answer: yes" or "Final Answer: no<end_of_turn>\n<start_of_turn>model\n')
        for p in oracles[0].prompts
    )  # fmt: skip
    assert run["protocol"]["max_new_tokens"] == 1024  # the report mode's budget, named in the record
    # effusion: tp 1, fp 1 -> F1 2/3; cardiomegaly: tp 1, fp 1 (unreadable) -> F1 2/3
    assert run["metrics"]["macro_f1"]["value"] == pytest.approx(2 / 3)
    assert run["metrics"]["accuracy"]["value"] == pytest.approx(2 / 4)
    by_cond: dict[str, tuple[list[bool], list[bool]]] = {}
    for i in run["items"]:
        t, p = by_cond.setdefault(i["condition"], ([], []))
        t.append(i["reference"] == "yes")
        # scikit-learn with an unreadable answer written as the opposite of its reference
        p.append(i["prediction"] == "yes" if i["prediction"] else i["reference"] != "yes")
    assert run["metrics"]["macro_f1"]["value"] == pytest.approx(
        sum(f1_score(t, p) for t, p in by_cond.values()) / len(by_cond)
    )
    check_reports(run, tmp_path / "out")


def test_open_vqa_token_f1_and_closed_accuracy_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samples) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    ds = sets.vqa_open_set(samples, tmp_path / "data")
    use_oracle(
        monkeypatch,
        [
            ("Which organ", "Final Answer: Lungs"),  # vs "the lungs": 1.0
            ("chest X-ray?", "Final Answer: Yes."),  # closed, right
            ("What view", "Final Answer: lateral view"),  # vs "PA view": P 1/2, R 1/2 -> 0.5
        ],
    )
    run = evaluate(ds, "vqa", ArisSettings(engine="fake"), out_dir=tmp_path / "out", **FAST).run
    assert run["protocol"]["mode"] == "open"
    assert [i["score"] for i in run["items"]] == pytest.approx([1.0, 1.0, 0.5])
    assert run["metrics"]["token_f1"]["value"] == pytest.approx(2.5 / 3)
    assert run["metrics"]["closed_accuracy"]["value"] == 1.0
    assert run["metrics"]["closed_accuracy"]["n"] == 1  # the one yes/no reference
    assert run["metrics"]["token_f1"]["n"] == 3
    assert run["subgroups"]["open"]["closed_accuracy"] is None  # no yes/no references there
    md = (tmp_path / "out" / "report.md").read_text()
    assert "a/an/the dropped" in md
    assert "closed questions: questions whose reference is yes or no" in md
    assert 'in the format "Final Answer: X":' in md  # the report's VQA row, quoted in the report
    check_reports(run, tmp_path / "out")


def test_ct_yes_no_through_the_series_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samples) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    ds = sets.ct_set(samples, tmp_path / "data")
    oracles = use_oracle(
        monkeypatch, [("hemorrhage", "Final Answer: yes"), ("calcification", "Final Answer: yes")]
    )
    run = evaluate(ds, "ct", ArisSettings(engine="fake"), out_dir=tmp_path / "out", **FAST).run
    assert [i["prediction"] for i in run["items"]] == ["yes", "yes"]
    assert run["metrics"]["accuracy"]["value"] == 0.5
    # one condition per question: hemorrhage has only a false positive (F1 0), calcification a tp (1)
    assert run["metrics"]["macro_f1"]["value"] == pytest.approx(0.5)
    assert sorted(p.count("<start_of_image>") for p in oracles[0].prompts) == [4, 5]  # the slices
    check_reports(run, tmp_path / "out")


def test_classify_accuracy_and_macro_f1_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samples) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    ds = sets.classify_set(samples, tmp_path / "data")
    use_oracle(
        monkeypatch,
        [
            ("Tile 0:", '{"answer": "colorectal adenocarcinoma epithelium"}'),  # right
            ("Tile 1:", '{"answer": "adipose"}'),  # wrong (stroma)
            ("Tile 2:", '{"answer": "TUM"}'),  # right, via the class code
            ("Tile 3:", '{"answer": "lymphocytes"}'),  # right
        ],
    )
    run = evaluate(
        ds, "classify", ArisSettings(engine="fake"), out_dir=tmp_path / "out", prompts="app", **FAST
    ).run
    assert run["metrics"]["accuracy"]["value"] == 0.75
    # classes: epithelium F1 1, stroma 0 (missed), adipose 0 (false), lymphocytes 1
    assert run["metrics"]["macro_f1"]["value"] == pytest.approx(0.5)
    refs = [i["reference"] for i in run["items"]]
    preds = [i["prediction"] for i in run["items"]]
    assert run["metrics"]["macro_f1"]["value"] == pytest.approx(f1_score(refs, preds, average="macro"))
    # svs tiles 0-2: epithelium F1 1, stroma 0, adipose 0
    assert run["subgroups"]["svs"] == {
        "n": 3,
        "accuracy": pytest.approx(2 / 3),
        "macro_f1": pytest.approx(1 / 3),
    }
    check_reports(run, tmp_path / "out")


def test_cxr_compare_macro_accuracy_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samples) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    ds = sets.compare_set(samples, tmp_path / "data")
    use_oracle(
        monkeypatch,
        [
            ("- pleural effusion:", '{"narrative": "n", "changes": {"pleural effusion": "stable"}}'),
            ("- edema:", '{"narrative": "n", "changes": {"edema": "worsened"}}'),  # ref improved
            ("- pneumothorax:", '{"narrative": "n", "changes": {"pneumothorax": "C"}}'),  # C = worsened
        ],
    )
    run = evaluate(ds, "cxr-compare", ArisSettings(engine="fake"), out_dir=tmp_path / "out", **FAST).run
    refs = [i["reference"] for i in run["items"]]
    preds = [i["prediction"] for i in run["items"]]
    assert refs == ["stable", "improved", "worsened"]
    assert preds == ["stable", "worsened", "worsened"]
    # per class: stable 1/1, improved 0/1, worsened 1/1
    assert run["metrics"]["macro_accuracy"]["value"] == pytest.approx(2 / 3)
    assert run["metrics"]["macro_accuracy"]["value"] == pytest.approx(balanced_accuracy_score(refs, preds))
    check_reports(run, tmp_path / "out")


def test_localize_mean_iou_in_original_pixels_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samples) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    ds = sets.localize_set(samples, tmp_path / "data")
    use_oracle(
        monkeypatch,
        [
            (
                "Locate the following in this chest X-ray: right lung.",
                'Final Answer: ```json\n[{"box_2d": [200, 50, 900, 400], "label": "right lung"}]\n```',
            ),
            (
                "Locate the following in this chest X-ray: heart.",
                "I do not know.",
            ),  # no box, even after repair
        ],
    )
    run = evaluate(
        ds, "cxr-localize", ArisSettings(engine="fake"), out_dir=tmp_path / "out", prompts="app", **FAST
    ).run
    # the film is 211 wide and 169 high, padded to 211 with 21 rows on top: x = x/1000*211, y = y/1000*211 - 21
    box = [200 * 0.211 - 21, 50 * 0.211, 900 * 0.211 - 21, 400 * 0.211]
    assert run["items"][0]["prediction"] == pytest.approx(box)
    ref = [40, 10, 170, 80]
    inter = (min(box[2], ref[2]) - max(box[0], ref[0])) * (min(box[3], ref[3]) - max(box[1], ref[1]))
    union = (box[2] - box[0]) * (box[3] - box[1]) + (ref[2] - ref[0]) * (ref[3] - ref[1]) - inter
    assert run["items"][0]["score"] == pytest.approx(inter / union)
    assert run["items"][1]["prediction"] is None
    assert run["items"][1]["repaired"] is False
    assert run["items"][1]["errors"]
    assert run["metrics"]["mean_iou"]["value"] == pytest.approx(inter / union / 2)
    assert run["counts"]["no_answer"] == 1
    check_reports(run, tmp_path / "out")


def test_wsi_rouge_l_against_rouge_score(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samples) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    ds = sets.wsi_set(samples, tmp_path / "data")
    reply = "Colonic tissue with glands and fibrous stroma."
    use_oracle(monkeypatch, [("colon, resection:", reply)])
    run = evaluate(
        ds, "wsi", ArisSettings(engine="fake"), out_dir=tmp_path / "out", prompts="app", **FAST
    ).run
    ref = json.loads(ds.read_text())["answer"]
    expected = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(ref, reply)["rougeL"].fmeasure
    assert run["items"][0]["prediction"] == reply
    assert run["metrics"]["rouge_l"]["value"] == pytest.approx(expected)
    assert 0 < expected < 1
    check_reports(run, tmp_path / "out")


def test_lab_extraction_precision_recall_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, samples) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    ds = sets.lab_set(samples, tmp_path / "data")
    truth = json.loads(samples("lab/synthetic_lab_report.truth.json").read_text())
    use_oracle(monkeypatch, [("clinical data extraction specialist", json.dumps(truth[:10]))])
    run = evaluate(
        ds, "lab-extract", ArisSettings(engine="fake"), out_dir=tmp_path / "out", prompts="app", **FAST
    ).run
    assert len(run["items"][0]["prediction"]) == 10  # both pages answered the same: merged
    fields = lambda tests: sum(bool(str(v).strip()) for t in tests for v in t.values())  # noqa: E731
    p, r = 1.0, fields(truth[:10]) / fields(truth)
    f = 2 * p * r / (p + r)
    m = run["metrics"]
    assert m["micro_precision"]["value"] == pytest.approx(p)
    assert m["micro_recall"]["value"] == pytest.approx(r)
    assert m["micro_f1"]["value"] == pytest.approx(f)
    assert m["macro_f1"]["value"] == pytest.approx(f)  # one document: macro = micro
    assert m["macro_f1"]["ci"] is not None
    check_reports(run, tmp_path / "out")


def test_compare_lists_the_items_whose_answers_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = sets.text_qa_set(tmp_path / "data")
    use_oracle(monkeypatch, [("scurvy", "Final Answer: C"), ("diabetes", "Final Answer: A"), ("insulin", "Final Answer: liver")])  # fmt: skip
    a = evaluate(ds, "text-qa", ArisSettings(engine="fake", model="model-a"), out_dir=tmp_path / "a", **FAST)
    use_oracle(monkeypatch, [("scurvy", "Final Answer: C"), ("diabetes", "Final Answer: B"), ("insulin", "Final Answer: pancreas")])  # fmt: skip
    b = evaluate(ds, "text-qa", ArisSettings(engine="fake", model="model-b"), out_dir=tmp_path / "b", **FAST)
    assert a.run["job_id"] != b.run["job_id"]  # another model is another job
    cmp = compare(load_run(tmp_path / "a"), load_run(tmp_path / "b" / "run.json"))
    assert cmp["a"]["model"] == "model-a"
    assert cmp["metrics"]["accuracy"] == {"a": pytest.approx(1 / 3), "b": 1.0, "delta": pytest.approx(2 / 3)}
    assert [(c["id"], c["a"], c["b"], c["reference"]) for c in cmp["changed"]] == [
        ("t2", "A", "B", "B"),
        ("t3", "liver", "pancreas", "pancreas"),
    ]


def test_limit_reuses_the_items_already_answered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = sets.text_qa_set(tmp_path / "data")
    oracles = use_oracle(monkeypatch, [("scurvy", "Final Answer: C")])
    first = evaluate(ds, "text-qa", ArisSettings(engine="fake"), out_dir=tmp_path / "a", limit=1, **FAST)
    assert first.run["counts"]["items"] == 1
    assert first.run["limit"] == 1
    full = evaluate(ds, "text-qa", ArisSettings(engine="fake"), out_dir=tmp_path / "b", **FAST)
    assert full.summary.reused_now == 1  # the first row's result is kept by its content key
    assert full.summary.done_now == 2
    assert sum(len(o.prompts) for o in oracles) == 1 + 2 * 2  # two unanswered rows: reply + repair each


def test_items_spread_over_two_endpoints(tmp_path: Path) -> None:
    """An eval run is a batch: --endpoint servers share its items (scripted OpenAI-compatible servers)."""
    ds = sets.text_qa_set(tmp_path / "data")
    answers = {
        "scurvy": "Final Answer: C",
        "diabetes": "Final Answer: B",
        "insulin": "Final Answer: the liver",
    }

    def respond(req: Recorded, i: int) -> Reply:
        if req.path.endswith("/models"):
            body = {"object": "list", "data": [{"id": "served-medgemma", "object": "model"}]}
            return Reply(200, {"Content-Type": "application/json"}, json.dumps(body).encode())
        prompt = json.dumps(req.json())
        reply = next(a for k, a in answers.items() if k in prompt)
        return Reply(200, SSE_HEADERS, sse_chat(reply, delay=0.05))

    with stub_server(respond) as a, stub_server(respond) as b:
        opts = BatchOptions(endpoints=[f"{a.url}/v1", f"{b.url}/v1"], per_endpoint=1)
        r = evaluate(ds, "text-qa", ArisSettings(), out_dir=tmp_path / "out", options=opts, **FAST)
        served = [len(a.to("/chat/completions")), len(b.to("/chat/completions"))]
    assert sum(served) == 3
    assert min(served) >= 1  # both endpoints answered items
    assert r.run["engine"] == "openai"
    assert r.run["model"] == "served-medgemma"
    assert [i["prediction"] for i in r.run["items"]] == ["C", "B", "liver"]
    assert r.run["metrics"]["accuracy"]["value"] == pytest.approx(2 / 3)


def test_a_csv_dataset_reads_like_jsonl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csv_path = tmp_path / "qa.csv"
    csv_path.write_text(
        "id,question,options,answer,subgroup\n"
        'q1,Which vitamin deficiency causes scurvy?,"[""A"", ""B12"", ""C""]",C,nutrition\n'
        "q2,First-line drug for type 2 diabetes?,Insulin|Metformin,B,\n",
        encoding="utf-8",
    )
    use_oracle(monkeypatch, [("scurvy", "Final Answer: C"), ("diabetes", "Final Answer: Metformin")])
    run = evaluate(csv_path, "text-qa", ArisSettings(engine="fake"), out_dir=tmp_path / "out", **FAST).run
    assert [(i["reference"], i["prediction"]) for i in run["items"]] == [("C", "C"), ("B", "B")]
    assert run["metrics"]["accuracy"]["value"] == 1.0
    assert run["subgroups"] == {"nutrition": {"n": 1, "accuracy": 1.0}}  # an empty subgroup is none


def test_report_mode_records_its_prompt_budget_and_truncated_thoughts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    ds = sets.text_qa_set(tmp_path / "data")
    oracles = use_oracle(
        monkeypatch,
        [
            ("scurvy", "<unused94>thought\nCollagen needs ascorbate, so"),  # a thought cut before any answer
            ("type 2 diabetes", "<unused94>thought\nBiguanide.<unused95>Final Answer: B"),
            ("makes insulin", "Final Answer: pancreas"),
        ],
    )
    run = evaluate(ds, "text-qa", ArisSettings(engine="fake"), out_dir=tmp_path / "out", benchmark="PubMedQA", n_boot=0).run  # fmt: skip
    assert {p.max_new_tokens for p in oracles[0].params} == {8192}
    # three first calls think; the cut thought's repair call (Aris's, never scored) does not
    assert [p.think for p in oracles[0].params].count(True) == 3
    assert run["protocol"]["max_new_tokens"] == 8192
    assert run["protocol"]["report_prompt"]["prompt"] == "TEXT_MCQ"
    assert [i["truncated"] for i in run["items"]] == [True, False, False]
    assert run["counts"]["truncated"] == 1
    assert run["items"][0]["prediction"] is None
    assert run["metrics"]["accuracy"]["published"] == 68.2
    md = (tmp_path / "out" / "report.md").read_text()
    assert "truncated 1" in md
    assert "## Truncated replies (1)\n" in md
    assert "- t1\n" in md.split("## Truncated replies")[1]
    assert "67.6 in the technical report's main results table" in md  # the other published value, named
    assert "model card" in md
    assert "text evaluations" in md
    assert "Appendix B, Tables 7-13" in md
    assert "one 'A. text' line each" in md  # a choice the report leaves open, named
    assert 'X in the format "Final Answer: X":\n```' in md  # the template, quoted
