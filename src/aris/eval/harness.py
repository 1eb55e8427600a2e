"""``evaluate``: a dataset through a task as a batch job, scored by the task's protocol, written as reports.

An eval run IS a batch job (:func:`aris.batch.runner.run_batch`): its items are content-keyed, so the
same command run again resumes the job and reuses every finished result (no new generation), and the
report it writes is the same. Runs spread over ``--endpoint`` servers like any batch.

The run record (``run.json``) holds what a reader needs to trust or redo the numbers: the model and
engine, library versions, the dataset's path and sha256, the protocol, every item's prompt hashes and
outputs, and each metric with its bootstrap confidence interval (and the published figure when the
dataset is a named benchmark).
"""

from __future__ import annotations

import json
import logging
import math
import platform
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from aris.batch.manifest import WorkItem
from aris.batch.runner import BatchOptions, Progress, Summary, generation_params, run_batch
from aris.config import ArisSettings
from aris.engines import run_settings
from aris.errors import ConfigError, InputError
from aris.eval.adapters import get_adapter, load_adapted
from aris.eval.datasets import EvalItem, dataset_digest, load_dataset
from aris.eval.metrics import bootstrap_ci
from aris.eval.protocol import Protocol, Scored, first_reply, make_protocol
from aris.eval.published import figure
from aris.eval.report import write_reports
from aris.generate import was_cut
from aris.store import JobView, Store

logger = logging.getLogger(__name__)

RUN_FORMAT = 1
VERSION_PACKAGES = (
    "aris",
    "torch",
    "transformers",
    "llama-cpp-python",
    "openai",
    "pydicom",
    "numpy",
    "pillow",
    "scikit-learn",
    "rouge-score",
)


@dataclass
class EvalRun:
    """What :func:`evaluate` returns: the run record, the batch summary and the files written."""

    run: dict[str, Any]
    summary: Summary
    paths: dict[str, Path]

    @property
    def finished(self) -> bool:
        return self.summary.finished


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSION_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _signature(input_ref: str, question: str | None, kind: str, options: Any, task_options: Any) -> str:
    """What makes two rows the same batch item (the batch keeps one item for identical rows)."""
    return _canon([input_ref, question or "", kind, options or {}, task_options or {}])


def _finite(v: float | None) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def job_rows(store: Store, job_id: str) -> dict[str, dict[str, Any]]:
    """The job's exported rows by item signature (export and items share the worklist order)."""
    items = store.items(job_id)
    rows = store.export(job_id)
    out: dict[str, dict[str, Any]] = {}
    for it, row in zip(items, rows, strict=True):
        out[_signature(it.input_ref, it.question, it.kind, it.options, it.task_options)] = row
    return out


def truncated(result: dict[str, Any], max_new_tokens: int) -> bool:
    """Whether the first reply was cut: it used the whole budget, or it is a thought with no answer
    after it (a cut thought leaves nothing to score; it must not pass as a plain wrong answer)."""
    steps = result.get("steps") or []
    first = steps[0] if steps else {}
    used = int(first.get("completion_tokens") or (result.get("usage") or {}).get("completion_tokens") or 0)
    max_new_tokens = int((result.get("params") or {}).get("max_new_tokens") or max_new_tokens)
    text = first.get("text") if steps else result.get("text")
    thought = first.get("thought") if steps else result.get("thought")
    usage = {"completion_tokens": used, **({"cut": int(first["cut"])} if "cut" in first else {})}
    return was_cut(usage, max_new_tokens) or bool(thought and not (text or "").strip())


def score_items(
    protocol: Protocol,
    items: Sequence[EvalItem],
    work: Sequence[WorkItem],
    rows: dict[str, dict[str, Any]],
    max_new_tokens: int | None = None,
) -> tuple[list[Scored], list[dict[str, Any]]]:
    """Each dataset row's scored item (None-free: rows without a result are left out of the metrics)
    and its record for ``run.json``."""
    scored: list[Scored] = []
    records: list[dict[str, Any]] = []
    for item, w in zip(items, work, strict=True):
        sig = _signature(w.input_ref, w.question, w.kind, w.options, w.task_options)
        row = rows.get(sig) or {}
        result = row.get("result")
        status = row.get("status", "missing")
        rec: dict[str, Any] = {
            "id": item.id,
            "input": w.input_ref,
            "question": item.question,
            "subgroup": item.subgroup,
            "status": status,
            "key": row.get("key"),
            "input_sha256": row.get("input_digest"),
        }
        if result is not None:
            s = protocol.score(item, result)
            scored.append(s)
            rec.update(
                condition=s.condition,
                reference=s.reference,
                prediction=s.prediction,
                score=_finite(s.score),
                output=first_reply(result),
                text=result.get("text"),
                thought=result.get("thought"),
                parsed=result.get("parsed"),
                errors=result.get("errors") or [],
                warnings=result.get("warnings") or [],
                repaired=bool(result.get("repaired")),
                truncated=truncated(result, max_new_tokens) if max_new_tokens else False,
                prompt_sha256=result.get("prompt_sha256"),
                prompt_hashes=[st.get("prompt_sha256") for st in result.get("steps") or []],
                usage=result.get("usage") or {},
            )
        else:
            rec.update(
                reference=protocol.refs.get(item.id),
                prediction=None,
                score=None,
                error=row.get("error") or ("not run yet" if status in ("pending", "running") else status),
            )
        records.append(rec)
    return scored, records


def compute_metrics(
    protocol: Protocol,
    scored: Sequence[Scored],
    benchmark: str | None,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Each metric's value, its percentile bootstrap CI over items, and the published figure."""
    out: dict[str, dict[str, Any]] = {}
    with warnings.catch_warnings():
        # resamples with one class make scikit-learn warn (and score 0/NaN): expected, not news
        warnings.simplefilter("ignore")
        for name, fn in protocol.metrics().items():
            value = fn(scored) if scored else float("nan")
            ci = bootstrap_ci(list(scored), fn, n=n_boot, level=level) if scored and n_boot > 0 else None
            ci_out = [_finite(ci[0]), _finite(ci[1])] if ci else None
            fig = figure(benchmark, name)
            out[name] = {
                "value": _finite(value),
                "ci": ci_out if ci_out and None not in ci_out else None,
                "published": fig.value if fig else None,
                "published_source": fig.cite() if fig else None,
                "n": protocol.metric_n(name, scored),
            }
    return out


def subgroup_metrics(protocol: Protocol, scored: Sequence[Scored]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Scored]] = {}
    for s in scored:
        if s.subgroup:
            groups.setdefault(str(s.subgroup), []).append(s)
    out: dict[str, dict[str, Any]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, members in sorted(groups.items()):
            vals: dict[str, Any] = {"n": len(members)}
            for metric, fn in protocol.metrics().items():
                vals[metric] = _finite(fn(members))
            out[name] = vals
    return out


def build_run(
    *,
    protocol: Protocol,
    dataset: Path,
    items: Sequence[EvalItem],
    work: Sequence[WorkItem],
    rows: dict[str, dict[str, Any]],
    job: JobView,
    settings: ArisSettings,
    summary: Summary | None,
    benchmark: str | None,
    n_boot: int = 1000,
    limit: int | None = None,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run record: everything the reports show, and what a reader needs to check them."""
    from aris.tasks import get_task

    gen = generation_params(settings)
    budget = int((gen or {}).get("max_new_tokens", get_task(protocol.task).max_new_tokens))
    scored, records = score_items(protocol, items, work, rows, budget)
    proto = protocol.record()
    proto["max_new_tokens"] = budget
    proto["failed_items"] = "left out of the metrics (listed with their errors)"
    proto["bootstrap"] = {"resamples": n_boot, "level": 0.95, "seed": 0, "unit": "item"}
    counts = {
        "items": len(records),
        "scored": len(scored),
        "failed": sum(1 for r in records if r["status"] == "failed"),
        "not_run": sum(1 for r in records if r["status"] in ("pending", "running", "missing")),
        "no_answer": sum(1 for s in scored if s.prediction is None),
        "repaired": sum(1 for r in records if r.get("repaired")),
        "truncated": sum(1 for r in records if r.get("truncated")),
    }
    run: dict[str, Any] = {
        "format": RUN_FORMAT,
        "task": protocol.task,
        "dataset": str(dataset),
        "dataset_sha256": dataset_digest(dataset),
        "limit": limit,
        "source": source or {"layout": "aris"},
        "benchmark": benchmark,
        "model": job.model,
        "engine": job.engine,
        "job_id": job.id,
        "settings": run_settings(settings),
        "versions": versions(),
        "protocol": proto,
        "counts": counts,
        "metrics": compute_metrics(protocol, scored, benchmark, n_boot=n_boot),
        "subgroups": subgroup_metrics(protocol, scored),
        "items": records,
    }
    if summary is not None:
        # how THIS invocation went (differs between a run and its resume; the reports do not show it)
        run["batch"] = {
            "resumed": summary.resumed,
            "done_now": summary.done_now,
            "reused_now": summary.reused_now,
            "failed_now": summary.failed_now,
            "wall_s": round(summary.wall_s, 3),
            "finished": summary.finished,
            "stopped_reason": summary.stopped_reason,
        }
    return run


def load_items(
    dataset: Path,
    task: str | None,
    limit: int | None,
    think: bool | None,
    *,
    prompts: str = "report",
    mode: str | None = None,
    adapter: str | None = None,
    split: str | None = None,
    image_dir: Path | None = None,
) -> tuple[list[EvalItem], Protocol, dict[str, Any]]:
    """The dataset's rows (the first ``limit``), their protocol, and where they came from; bad rows
    fail here, before any model.

    ``adapter`` reads a benchmark's standard layout (:mod:`aris.eval.adapters`), which also fixes the
    task and the mode; without one the dataset is in Aris's own layout and ``task`` is required.
    """
    source: dict[str, Any] = {"layout": "aris", "split": split}
    if adapter:
        a = get_adapter(adapter)
        if task and task != a.task:
            raise ConfigError(f"the {a.name} adapter runs task {a.task!r}, not {task!r}")
        if mode and mode != a.mode:
            raise ConfigError(f"the {a.name} adapter runs mode {a.mode!r}, not {mode!r}")
        task, mode = a.task, a.mode
        images = image_dir or ArisSettings().home / "eval" / "images"
        items, counts = load_adapted(dataset, a, split=split, image_dir=images)
        source = {"layout": a.name, "split": split or a.split, **counts}
    else:
        if not task:
            raise ConfigError("give --task (or --benchmark with a standard layout)")
        items = load_dataset(dataset, split)
    if limit is not None:
        items = items[: max(0, limit)]
    if not items:
        raise InputError(dataset, "the dataset has no rows")
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise InputError(dataset, f"id {it.id!r} appears twice; ids must be unique")
        seen.add(it.id)
    return items, make_protocol(task, items, dataset, think, prompts=prompts, mode=mode), source


def with_budget(settings: ArisSettings, protocol: Protocol) -> ArisSettings:
    """The settings with the report mode's token budget, unless the user chose one."""
    budget = protocol.max_new_tokens()
    if budget is None or "max_new_tokens" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"max_new_tokens": budget})


def default_out_dir(job_id: str) -> Path:
    return Path("aris-eval") / job_id


def evaluate(
    dataset: Path | str,
    task: str | None,
    settings: ArisSettings,
    *,
    out_dir: Path | None = None,
    benchmark: str | None = None,
    think: bool | None = None,
    limit: int | None = None,
    prompts: str = "report",
    mode: str | None = None,
    adapter: str | None = None,
    split: str | None = None,
    options: BatchOptions | None = None,
    store: Store | None = None,
    n_boot: int = 1000,
    on_progress: Callable[[Progress], None] | None = None,
    on_job: Callable[[JobView, bool], None] | None = None,
) -> EvalRun:
    """Run (or resume) ``task`` over a dataset and write ``run.json``, ``report.md`` and ``report.html``.

    ``out_dir`` defaults to ``aris-eval/<job id>``: the same command gives the same job, so a resumed
    run rewrites the same folder. Items that failed (unreadable input, engine error) are listed and
    left out of the metrics; an item whose reply has no readable answer scores as wrong.
    """
    dataset = Path(dataset).expanduser().absolute()  # stored input refs must not depend on the cwd
    items, protocol, source = load_items(
        dataset,
        task,
        limit,
        think,
        prompts=prompts,
        mode=mode,
        adapter=adapter,
        split=split,
        image_dir=settings.home / "eval" / "images",
    )
    task = protocol.task
    settings = with_budget(settings, protocol)
    work = [protocol.work_item(it) for it in items]
    own_store = store is None
    store = store or Store.open()
    try:
        jobs: list[JobView] = []

        def remember(job: JobView, resumed: bool) -> None:
            jobs.append(job)
            if on_job is not None:
                on_job(job, resumed)

        summary = run_batch(
            work, task, settings, store=store, options=options, on_progress=on_progress, on_job=remember
        )
        job = jobs[-1] if jobs else store.get_job(summary.job_id)
        rows = job_rows(store, job.id)
        run = build_run(
            protocol=protocol,
            dataset=dataset,
            items=items,
            work=work,
            rows=rows,
            job=job,
            settings=settings,
            summary=summary,
            benchmark=benchmark,
            n_boot=n_boot,
            limit=limit,
            source=source,
        )
    finally:
        if own_store:
            store.close()
    paths = write_reports(run, out_dir or default_out_dir(job.id))
    logger.info(
        "eval job %s: %d items, %d scored, %d generated now, %d reused",
        job.id,
        len(items),
        run["counts"]["scored"],
        summary.done_now,
        summary.reused_now,
    )
    return EvalRun(run, summary, paths)


def load_run(path: Path | str) -> dict[str, Any]:
    """A run record from its ``run.json`` or the folder holding it."""
    p = Path(path)
    if p.is_dir():
        p = p / "run.json"
    if not p.exists():
        raise InputError(p, "no such eval run (give a run.json or the folder holding it)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(p, f"not a run record: {e.msg}") from None
    if not isinstance(data, dict) or not {"metrics", "items", "model"} <= set(data):
        raise InputError(p, "not an Aris eval run record (no metrics/items/model)")
    return data
