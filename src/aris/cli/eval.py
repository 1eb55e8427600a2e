"""``aris eval``: score a model on a dataset with the model card's protocol; compare runs.

``aris eval DATASET --task TASK`` is the same as ``aris eval run DATASET --task TASK``: a group whose
default command is ``run``, so ``aris eval compare A B`` can sit beside it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from aris.cli.app import app, console, err_console
from aris.cli.batch import DbOpt, EndpointOpt, PerEndpointOpt, _graceful_sigterm, _run_with_progress
from aris.cli.options import engine_options
from aris.config import ArisSettings
from aris.notice import NOTICE


class _RunByDefault(TyperGroup):
    """Route ``aris eval DATASET ...`` to ``run``; subcommand names and ``--help`` go to the group."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=_RunByDefault,
    help="Measure a model on a dataset with MedGemma's evaluation protocol (resumable; reports with CIs).",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _metrics_table(run: dict[str, Any]) -> Table:
    t = Table(title=f"{run['task']} · {Path(run['dataset']).name} · {run['model']}", title_justify="left")
    for col in ("metric", "yours (%)", "95% CI", "published (%)", "n"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for name, m in run["metrics"].items():
        ci = f"{_pct(m['ci'][0])}–{_pct(m['ci'][1])}" if m.get("ci") else "—"
        pub = f"{m['published']:.1f}" if m.get("published") is not None else "—"
        t.add_row(name, _pct(m["value"]), ci, pub, str(m["n"]))
    return t


@eval_app.command("run")
@engine_options
def run_cmd(
    dataset: Annotated[
        Path, typer.Argument(help="A .jsonl/.csv/.json dataset or a saved Hugging Face dataset folder.")
    ],
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            "-t",
            help="text-qa, vqa, ct, mri, classify, cxr-compare, … (set by --benchmark's adapter)",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for run.json and the reports (default aris-eval/<job>)."),
    ] = None,
    benchmark: Annotated[
        str | None,
        typer.Option(
            "--benchmark",
            help="The benchmark this dataset is (MedQA, MedMCQA, PubMedQA, MMLU-Med, SLAKE, VQA-RAD, MIMIC-CXR, …): "
            "its standard layout is read as downloaded, and yours is shown beside the published figure.",
        ),
    ] = None,
    layout: Annotated[
        str | None,
        typer.Option(
            "--layout",
            help="'aris' for a dataset in Aris's own columns; default: the --benchmark's standard layout.",
        ),
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Split of a saved DatasetDict or downloaded folder.")
    ] = None,
    prompts: Annotated[
        str,
        typer.Option(
            "--prompts",
            help="report: the technical report's prompts, verbatim, unconstrained (default); app: Aris's own.",
        ),
    ] = "report",
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            help="The protocol's mode, e.g. vqa: open|yes-no; ct: ct-us1|ct-rate; classify: derm|eyepacs.",
        ),
    ] = None,
    think: Annotated[
        bool | None,
        typer.Option("--think/--no-think", help="Override the task's thinking (the paper: on for text-qa)."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N rows.")] = None,
    endpoint: EndpointOpt = None,
    per_endpoint: PerEndpointOpt = 2,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for the 95% CIs (0: none).")
    ] = 1000,
    db: DbOpt = None,
    *,
    settings: ArisSettings,
) -> None:
    """Run DATASET through TASK as a resumable batch, score it, and write run.json, report.md, report.html.

    Run the same command again to resume: finished items are reused, and the report is the same.
    """
    from aris.batch import BatchOptions
    from aris.eval.adapters import ADAPTERS, adapter_for_benchmark
    from aris.eval.harness import evaluate
    from aris.eval.published import benchmarks
    from aris.store import Store

    known = {b.lower() for b in benchmarks()} | set(ADAPTERS)
    if benchmark and benchmark.lower() not in known:
        names = ", ".join(sorted({*benchmarks(), *ADAPTERS}))
        raise typer.BadParameter(f"no published figures or adapter for {benchmark!r}; known: {names}")
    if prompts not in ("report", "app"):
        raise typer.BadParameter(f"--prompts is report or app, not {prompts!r}")
    adapter_obj = adapter_for_benchmark(benchmark)
    if layout not in (None, "aris", "benchmark"):
        raise typer.BadParameter(f"--layout is aris or benchmark, not {layout!r}")
    if layout == "benchmark" and adapter_obj is None:
        raise typer.BadParameter(
            f"no standard-layout adapter for {benchmark!r}; use --layout aris --task ..."
        )
    adapter = adapter_obj.name if adapter_obj is not None and layout != "aris" else None
    if adapter is None and task is None:
        raise typer.BadParameter("give --task, or --benchmark with a standard layout (medqa, slake, …)")
    _graceful_sigterm()
    options = BatchOptions(endpoints=list(endpoint or []), per_endpoint=per_endpoint)
    with Store.open(db) as store:
        try:
            result = _run_with_progress(
                lambda on_progress, on_job: evaluate(
                    dataset,
                    task,
                    settings,
                    out_dir=out,
                    benchmark=benchmark,
                    think=think,
                    limit=limit,
                    prompts=prompts,
                    mode=mode,
                    adapter=adapter,
                    split=split,
                    options=options,
                    store=store,
                    n_boot=bootstrap,
                    on_progress=on_progress,
                    on_job=on_job,
                )
            )
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: run the same command again to resume")
            sys.exit(130)
    run, s = result.run, result.summary
    console.print(_metrics_table(run))
    c = run["counts"]
    console.print(
        f"{c['items']} items: {c['scored']} scored, {c['failed']} failed, {c['no_answer']} without a readable "
        f"answer, {c['repaired']} repaired, {c.get('truncated', 0)} truncated · this run: {s.done_now} generated, {s.reused_now} reused",
        highlight=False,
    )
    for name, path in result.paths.items():
        console.print(f"{name}: {path}", highlight=False, markup=False)
    console.print(f"[bold yellow]{NOTICE}[/]")
    if not result.finished:
        err_console.print(
            f"[yellow]stopped:[/] {s.stopped_reason or 'items left'}; run the same command again to continue",
            highlight=False,
        )
        raise typer.Exit(1)


@eval_app.command("compare")
def compare_cmd(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Two or more runs (run.json or the folder holding it); the first is the reference, "
            "e.g. base, SFT adapter, GRPO adapter."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the comparison: FILE.json, FILE.md, or a folder (both)."),
    ] = None,
    show: Annotated[int, typer.Option("--show", min=0, help="Changed items to print.")] = 20,
) -> None:
    """Runs side by side, and the items whose answers changed."""
    from aris.eval.harness import load_run
    from aris.eval.report import compare, compare_markdown, compare_runs, compare_runs_markdown, run_label

    if len(runs) < 2:
        raise typer.BadParameter("give at least two runs to compare")
    loaded = [load_run(r) for r in runs]
    letters = [chr(ord("A") + i) for i in range(len(loaded))]
    t = Table(title="eval comparison", title_justify="left")
    t.add_column("metric")
    for k, run in zip(letters, loaded, strict=True):
        t.add_column(f"{k}: {run_label(run)} (%)", justify="right")
    for k in letters[1:]:
        t.add_column(f"{k} − A", justify="right")
    if len(loaded) == 2:
        cmp = compare(loaded[0], loaded[1])
        rows = [([m["a"], m["b"]], [m["delta"]]) for m in cmp["metrics"].values()]
        changed = [(c["id"], [c["a"], c["b"]], c["reference"]) for c in cmp["changed"]]
        markdown = compare_markdown
    else:
        cmp = compare_runs(loaded)
        rows = [(m["values"], m["deltas"]) for m in cmp["metrics"].values()]
        changed = [(c["id"], c["predictions"], c["reference"]) for c in cmp["changed"]]
        markdown = compare_runs_markdown
    for name, (values, deltas) in zip(cmp["metrics"], rows, strict=True):
        t.add_row(
            name, *(_pct(v) for v in values), *("—" if d is None else f"{100 * d:+.1f}" for d in deltas)
        )
    console.print(t)
    console.print(f"{len(changed)} items changed their answer", highlight=False)
    if changed and show:
        ct = Table("id", *letters, "reference")
        for item_id, preds, ref in changed[:show]:
            ct.add_row(str(item_id), *(json.dumps(v, ensure_ascii=False) for v in (*preds, ref)))
        console.print(ct)
        if len(changed) > show:
            console.print(f"… and {len(changed) - show} more (--out FILE to keep them all)")
    if out is not None:
        written = []
        if out.suffix.lower() in (".json", ".md"):
            targets = {out.suffix.lower(): out}
        else:
            out.mkdir(parents=True, exist_ok=True)
            targets = {".json": out / "compare.json", ".md": out / "compare.md"}
        for suffix, path in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(cmp, indent=2, default=str) if suffix == ".json" else markdown(cmp)
            path.write_text(text, encoding="utf-8")
            written.append(path)
        for path in written:
            console.print(f"wrote {path}", highlight=False, markup=False)
