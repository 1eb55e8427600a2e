"""``aris batch``: run a worklist through a task, resumable; status, retry and export of batches."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from aris.cli.app import app, console, err_console
from aris.cli.options import engine_options
from aris.config import ArisSettings

if TYPE_CHECKING:
    from aris.batch import BatchOptions

batch_app = typer.Typer(
    help="Run many inputs through a task: resumable, with failures recorded, over one or many engines.",
    no_args_is_help=True,
)
app.add_typer(batch_app, name="batch")

DbOpt = Annotated[
    str | None, typer.Option("--db", help="Store URL (env ARIS_DB_URL; default SQLite in ARIS_HOME).")
]
ExecutorOpt = Annotated[
    str,
    typer.Option("--executor", help="local (threads) | ray (Ray tasks; RAY_ADDRESS or a local instance)."),
]
EndpointOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--endpoint", help="OpenAI-compatible server URL (…/v1). Repeat to spread items over several."
    ),
]
PerEndpointOpt = Annotated[
    int, typer.Option("--per-endpoint", min=1, help="Requests in flight per endpoint.")
]
PrepOpt = Annotated[
    int, typer.Option("--prepare-workers", min=1, help="Threads/tasks preparing inputs ahead.")
]
PrefetchOpt = Annotated[
    int | None, typer.Option("--prefetch", min=1, help="Items prepared ahead (default 2 x engine capacity).")
]
RayAddrOpt = Annotated[
    str | None, typer.Option("--ray-address", help="Ray cluster address (default: local).")
]
PaceOpt = Annotated[
    float, typer.Option("--pace", hidden=True, help="Floor on seconds per item (tests, demos).")
]


def _store(db: str | None):  # type: ignore[no-untyped-def]
    from aris.store import Store

    return Store.open(db)


def _graceful_sigterm() -> None:
    """SIGTERM ends the batch like Ctrl-C: items in flight go back to pending before the process exits."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _options(
    executor: str,
    endpoint: list[str] | None,
    per_endpoint: int,
    prepare_workers: int,
    prefetch: int | None,
    ray_address: str | None,
    pace: float,
) -> BatchOptions:
    from aris.batch import BatchOptions

    return BatchOptions(
        executor=executor,
        endpoints=list(endpoint or []),
        per_endpoint=per_endpoint,
        prepare_workers=prepare_workers,
        prefetch=prefetch,
        ray_address=ray_address,
        pace_s=pace,
    )


def _run_with_progress(start: Any) -> Any:
    """Run ``start(on_progress, on_job)`` under a rich progress bar; returns its Summary."""
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed[/] · {task.fields[running]} generating"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        bar = progress.add_task("batch", total=None, failed=0, running=0)

        def on_job(job: Any, resumed: bool) -> None:
            verb = "resuming" if resumed else "batch"
            progress.update(bar, description=f"{verb} {job.id}")

        def on_progress(p: Any) -> None:
            progress.update(
                bar, total=p.total, completed=p.done + p.failed, failed=p.failed, running=p.running
            )

        return start(on_progress, on_job)


def _print_summary(summary: Any, store: Any) -> None:
    c = summary.counts
    t = Table(title=f"batch {summary.job_id}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row(
        "items", f"{c['total']}: {c['done']} done, {c['failed']} failed, {c['pending'] + c['running']} left"
    )
    t.add_row(
        "this run",
        f"{summary.done_now} done, {summary.failed_now} failed, {summary.reused_now} already had a result"
        + (f"; {summary.reset} items of a dead run resumed" if summary.reset else ""),
    )
    t.add_row("time", f"{summary.wall_s:.1f} s, {summary.items_per_s:.2f} items/s")
    t.add_row(
        "engines", f"busy {summary.busy_share:.0%}, idle waiting for preparation {summary.idle_share:.0%}"
    )
    for w in summary.workers:
        state = "ok" if w.healthy else "[red]unhealthy[/]"
        t.add_row(f"  {w.name}", f"{w.served} served, {w.errors} errors, {state}")
    console.print(t)
    if c["failed"]:
        failed = store.items(summary.job_id, "failed")
        console.print(f"[red]{len(failed)} failed:[/]")
        for it in failed[:10]:
            console.print(f"  {it.error}", highlight=False, markup=False)
        if len(failed) > 10:
            console.print(f"  … and {len(failed) - 10} more (aris batch export {summary.job_id} --out FILE)")
    if summary.stopped_reason:
        err_console.print(f"[yellow]stopped:[/] {summary.stopped_reason}", highlight=False)
        err_console.print("run the same command again to continue", highlight=False)


def _finish(summary: Any, store: Any, out: Path | None) -> None:
    from aris.batch.export import write_export

    _print_summary(summary, store)
    if out is not None:
        n = write_export(store.export(summary.job_id), out)
        console.print(f"wrote {n} rows to {out}", highlight=False)
    if not summary.finished:
        raise typer.Exit(1)


@batch_app.command("run")
@engine_options
def run_cmd(
    worklist: Annotated[
        str,
        typer.Argument(
            help="A folder (one item per sub-folder or file), a .csv/.jsonl worklist, or a batch id."
        ),
    ],
    task: Annotated[str, typer.Option("--task", "-t", help="The task every item runs (aris tasks).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write results to .jsonl or .csv.")] = None,
    question: Annotated[
        str | None, typer.Option("--question", "-q", help="Question for rows without one.")
    ] = None,
    kind: Annotated[
        str, typer.Option("--kind", help="Input kind for rows without one (auto|cxr|ct|…).")
    ] = "auto",
    endpoint: EndpointOpt = None,
    executor: ExecutorOpt = "local",
    per_endpoint: PerEndpointOpt = 2,
    prepare_workers: PrepOpt = 2,
    prefetch: PrefetchOpt = None,
    ray_address: RayAddrOpt = None,
    pace: PaceOpt = 0.0,
    db: DbOpt = None,
    *,
    settings: ArisSettings,
) -> None:
    """Run every item of WORKLIST through TASK. Run the same command again to resume after a stop."""
    from aris.batch import run_batch

    _graceful_sigterm()
    opts = _options(executor, endpoint, per_endpoint, prepare_workers, prefetch, ray_address, pace)
    with _store(db) as store:
        try:
            summary = _run_with_progress(
                lambda on_progress, on_job: run_batch(
                    worklist,
                    task,
                    settings,
                    store=store,
                    options=opts,
                    question=question,
                    kind=kind,
                    on_progress=on_progress,
                    on_job=on_job,
                )
            )
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: run the same command again to resume")
            sys.exit(130)
        _finish(summary, store, out)


@batch_app.command("retry")
@engine_options
def retry_cmd(
    job_id: Annotated[str, typer.Argument(help="The batch id (or a unique prefix).")],
    failed: Annotated[bool, typer.Option("--failed", help="Run the failed items again.")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write results to .jsonl or .csv.")] = None,
    endpoint: EndpointOpt = None,
    executor: ExecutorOpt = "local",
    per_endpoint: PerEndpointOpt = 2,
    prepare_workers: PrepOpt = 2,
    prefetch: PrefetchOpt = None,
    ray_address: RayAddrOpt = None,
    db: DbOpt = None,
    *,
    settings: ArisSettings,
) -> None:
    """Run a batch's failed items again (and any left pending), with the engine it was made with."""
    from aris.batch import run_job

    if not failed:
        raise typer.BadParameter("say what to retry: --failed", param_hint="--failed")
    _graceful_sigterm()
    opts = _options(executor, endpoint, per_endpoint, prepare_workers, prefetch, ray_address, 0.0)
    with _store(db) as store:
        job = store.get_job(job_id)
        n = store.retry_failed(job.id)
        err_console.print(f"{n} failed items of batch {job.id} set back to pending")
        try:
            summary = _run_with_progress(
                lambda on_progress, on_job: run_job(
                    job.id, settings, store=store, options=opts, on_progress=on_progress
                )
            )
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: run the same command again to resume")
            sys.exit(130)
        _finish(summary, store, out)


@batch_app.command("status")
def status_cmd(
    job_id: Annotated[str | None, typer.Argument(help="A batch id; without one, the latest batches.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many batches to list.")] = 20,
    db: DbOpt = None,
) -> None:
    """Counts per status of one batch (with its failures), or of the latest batches."""
    with _store(db) as store:
        if job_id:
            _print_job(store, store.get_job(job_id))
            return
        t = Table("created", "task", "model", "status", "done", "failed", "left", "total")
        t.add_column("id", no_wrap=True, min_width=12)  # last, whole: it is what the other commands take
        for j in store.jobs(limit):
            c = store.counts(j.id)
            t.add_row(
                j.created.strftime("%Y-%m-%d %H:%M"), j.task, Path(j.model).name, j.status,
                str(c["done"]), str(c["failed"]), str(c["pending"] + c["running"]), str(c["total"]), j.id,
            )  # fmt: skip
        console.print(t)


def _print_job(store: Any, job: Any) -> None:
    c = store.counts(job.id)
    console.print(f"batch {job.id}: {job.status}", highlight=False)
    console.print(f"  task {job.task} · model {job.model} ({job.engine})", highlight=False)
    console.print(f"  created {job.created:%Y-%m-%d %H:%M:%S} UTC · from {job.source}", highlight=False)
    console.print(
        f"  items {c['total']}: {c['done']} done, {c['failed']} failed, {c['pending']} pending, "
        f"{c['running']} running",
        highlight=False,
    )
    failed = store.items(job.id, "failed")
    for it in failed[:20]:
        console.print(f"  failed (attempt {it.attempts}): {it.error}", highlight=False, markup=False)
    if len(failed) > 20:
        console.print(f"  … and {len(failed) - 20} more (aris batch export {job.id} --out FILE)")


@batch_app.command("export")
def export_cmd(
    job_id: Annotated[str, typer.Argument(help="The batch id (or a unique prefix).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="A .jsonl (full records) or .csv (flat) file.")],
    db: DbOpt = None,
) -> None:
    """Write a batch's items, results and errors to JSONL or CSV."""
    from aris.batch.export import write_export

    with _store(db) as store:
        job = store.get_job(job_id)
        n = write_export(store.export(job.id), out)
        store.audit(
            "job.export", job_id=job.id, task=job.task, model=job.model, engine=job.engine, detail=f"{n} rows"
        )
        console.print(f"wrote {n} rows to {out}", highlight=False)
