"""MedSigLIP commands: ``aris embed``, ``aris zero-shot``, ``aris probe ...``, ``aris index ...``.

``aris zero-shot`` and ``aris probe predict`` run the registered tasks through the one task path
(the same as ``aris run zero-shot`` / ``aris run probe``); the rest work on embeddings directly.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aris.cli.app import app, console, err_console
from aris.cli.options import engine_options
from aris.config import ArisSettings
from aris.errors import ArisError, ConfigError
from aris.notice import NOTICE

probe_app = typer.Typer(
    name="probe",
    help="Linear probes on frozen MedSigLIP embeddings: train, predict, eval.",
    no_args_is_help=True,
)
index_app = typer.Typer(
    name="index",
    help="Image search over your own archive with MedSigLIP: add, search, delete, reindex.",
    no_args_is_help=True,
)
app.add_typer(probe_app)
app.add_typer(index_app)

IndexOpt = Annotated[str, typer.Option("--index", help="Index name (several can live side by side).")]
KindOpt = Annotated[str, typer.Option(help="Input kind: auto|cxr|image|ct|mri|wsi.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


@contextmanager
def _embedding(settings: ArisSettings) -> Iterator[tuple[Any, Any]]:
    """The embedder (loaded with a spinner) and the embedding store, both closed afterwards."""
    from aris.embed import load_embedder
    from aris.embed.store import EmbeddingStore

    with err_console.status(f"loading {settings.embed_model} ({settings.embed_engine})…"):
        embedder = load_embedder(settings)
    store = EmbeddingStore.open(settings)
    try:
        yield embedder, store
    finally:
        store.close()
        embedder.close()


def _short(name: str, width: int = 60) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


# -- aris embed -------------------------------------------------------------------------------------


@app.command("embed")
@engine_options
def embed_cmd(
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(help="Images, DICOM files, series folders, slides, or folders of them."),
    ] = None,
    text: Annotated[list[str] | None, typer.Option("--text", help="Text to embed (repeat).")] = None,
    kind: KindOpt = "auto",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the embeddings to this .npz (pooled, parts, names).")
    ] = None,
    as_json: JsonOpt = False,
    *,
    settings: ArisSettings,
) -> None:
    """MedSigLIP embeddings of images (a CT's slices and a slide's tiles, pooled per input) and texts.

    Embeddings are kept with their provenance in $ARIS_HOME/embed: the same pixels are never
    embedded twice by the same model.
    """
    import numpy as np

    from aris.embed.embedding import embed_prepared
    from aris.embed.index import discover
    from aris.inputs import read

    if not inputs and not text:
        raise ConfigError("give inputs to embed, or --text")
    found = list(discover(inputs or []))
    rows: list[dict[str, Any]] = []
    arrays: dict[str, Any] = {}
    pooled, names = [], []
    with _embedding(settings) as (embedder, store), _progress() as progress:
        overall = progress.add_task("embedding", total=len(found))
        for item in found:
            display = item.display
            progress.update(overall, description=f"embedding {escape(_short(display, 40))}")
            try:
                prepared = read(item.path, kind=kind, **item.options)
                part = progress.add_task("  images", total=len(prepared.arrays))

                def on_batch(n: int, _total: int, part: Any = part) -> None:
                    progress.update(part, completed=n)

                emb = embed_prepared(embedder, prepared, store=store, on_batch=on_batch)
                progress.remove_task(part)
            except ConfigError:
                raise
            except ArisError as e:
                rows.append({"input": display, "error": str(e)})
                err_console.print(f"[red]skipped:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
                progress.advance(overall)
                continue
            rows.append(
                {
                    "input": display,
                    "kind": emb.kind,
                    "parts": len(emb.labels),
                    "from_store": emb.cached,
                    "digest": emb.digest,
                    "dim": int(emb.pooled.shape[0]),
                }
            )
            pooled.append(emb.pooled)
            names.append(display)
            arrays[f"parts_{len(names) - 1}"] = emb.parts
            progress.advance(overall)
        texts = list(text or [])
        text_emb = embedder.embed_texts(texts) if texts else None
        identity = embedder.identity()
    if out is not None:
        np.savez(
            out,
            pooled=np.stack(pooled) if pooled else np.zeros((0, 0), np.float32),
            names=np.array(names),
            texts=np.array(texts),
            text_embeddings=text_emb if text_emb is not None else np.zeros((0, 0), np.float32),
            identity=np.array(json.dumps(identity, default=str)),
            **arrays,
        )
    if as_json:
        record = {"inputs": rows, "texts": texts, "identity": identity}
        if out is None:
            record["pooled"] = [p.tolist() for p in pooled]
            record["text_embeddings"] = text_emb.tolist() if text_emb is not None else []
        sys.stdout.write(json.dumps(record, default=str) + "\n")
        return
    table = Table(title=f"MedSigLIP embeddings · {escape(str(identity.get('model')))}", title_justify="left")
    for col in ("input", "kind", "parts", "dim", "from store", "digest"):
        table.add_column(col)
    for r in rows:
        if "error" in r:
            table.add_row(escape(_short(r["input"])), "[red]failed[/]", "", "", "", "")
        else:
            table.add_row(
                escape(_short(r["input"])),
                r["kind"],
                str(r["parts"]),
                str(r["dim"]),
                "yes" if r["from_store"] else "no",
                r["digest"][:12],
            )
    console.print(table)
    if texts:
        console.print(f"{len(texts)} text(s) embedded.")
    if out is not None:
        console.print(f"[dim]saved: {escape(str(out))}[/]", highlight=False)


# -- aris zero-shot ---------------------------------------------------------------------------------


@app.command("zero-shot")
@engine_options
def zero_shot_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="One image, DICOM file, series folder or slide.")],
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="A candidate label (repeat).")
    ] = None,
    label_set: Annotated[
        str | None, typer.Option(help="Built-in set: cxr, skin, pathology (or one from your config).")
    ] = None,
    template: Annotated[
        list[str] | None, typer.Option("--template", help="Prompt template with {label} (repeat).")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Input kind: auto|cxr|image|ct|mri|wsi.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for result.json.")] = None,
    as_json: JsonOpt = False,
    *,
    settings: ArisSettings,
) -> None:
    """Zero-shot classification with MedSigLIP: sigmoid per label and softmax across labels.

    The same as `aris run zero-shot`.
    """
    from aris.cli.run import run_one
    from aris.tasks import get_task

    options: dict[str, Any] = {}
    if label:
        options["labels"] = list(label)
    if label_set:
        options["label_set"] = label_set
    if template:
        options["templates"] = list(template)
    run_one(
        get_task("zero-shot"),
        inputs,
        question=None,
        kind=kind,
        out=out,
        as_json=as_json,
        show_thought=False,
        script=None,
        options=options,
        settings=settings,
    )


# -- aris probe -------------------------------------------------------------------------------------


def _embed_dataset(dataset: Path, settings: ArisSettings) -> tuple[Any, Any]:
    from aris.embed.probe import embed_samples, load_samples

    samples = load_samples(dataset)
    with _embedding(settings) as (embedder, store), _progress() as progress:
        task = progress.add_task("embedding the dataset", total=len(samples))
        data = embed_samples(
            samples, embedder, store, on_item=lambda n, _t: progress.update(task, completed=n)
        )
        identity = embedder.identity()
    for _src, err in data.failed:
        err_console.print(f"[red]skipped:[/] {escape(err)}", highlight=False, soft_wrap=True)
    return data, identity


def _metrics_table(title: str, m: dict[str, Any]) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for key in ("n", "accuracy", "balanced_accuracy", "macro_auc", "folds"):
        if key in m:
            t.add_row(key, f"{m[key]}")
    for cls, n in m.get("per_class", {}).items():
        t.add_row(f"n[{escape(cls)}]", str(n))
    return t


@probe_app.command("train")
@engine_options
def probe_train(
    dataset: Annotated[
        Path, typer.Argument(help="A folder of class folders, or a CSV/JSONL (input, answer=class).")
    ],
    name: Annotated[str, typer.Option("--name", help="Save as this probe name (used by aris run probe).")],
    seed: Annotated[int, typer.Option(help="Cross-validation shuffle seed.")] = 0,
    folds: Annotated[int, typer.Option(help="Cross-validation folds (fewer when a class is small).")] = 5,
    force: Annotated[bool, typer.Option("--force", help="Replace a probe of the same name.")] = False,
    as_json: JsonOpt = False,
    *,
    settings: ArisSettings,
) -> None:
    """Train a logistic-regression probe (cross-validated C, balanced class weights) on MedSigLIP embeddings."""
    from aris.embed.probe import Probe, train
    from aris.eval.datasets import dataset_digest

    path = Probe.path_for(settings, name)
    if path.exists() and not force:
        raise ConfigError(f"a probe named {name!r} exists; use --force to replace it")
    data, identity = _embed_dataset(dataset, settings)
    with err_console.status("training (cross-validating C)…"):
        probe = train(data.X, data.y, identity, seed=seed, folds=folds)
    probe.dataset = {
        "name": dataset.name,
        "digest": dataset_digest(dataset),
        "n": len(data.y),
        "skipped": len(data.failed),
    }
    probe.save(path)
    if as_json:
        sys.stdout.write(
            json.dumps({"probe": name, "classes": probe.classes, "C": probe.C, "metrics": probe.metrics})
            + "\n"
        )
        return
    console.print(_metrics_table(f"probe {escape(name)}: cross-validated (C={probe.C:.3g})", probe.metrics))
    console.print(
        f"[dim]saved: {escape(str(path))} · use it with `aris run probe INPUT --probe {escape(name)}`[/]"
    )
    console.print(f"[bold yellow]{NOTICE}[/]")


@probe_app.command("predict")
@engine_options
def probe_predict(
    name: Annotated[str, typer.Argument(help="The probe's name.")],
    inputs: Annotated[list[Path], typer.Argument(help="One image, DICOM file, series folder or slide.")],
    kind: Annotated[str | None, typer.Option(help="Input kind: auto|cxr|image|ct|mri|wsi.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for result.json.")] = None,
    as_json: JsonOpt = False,
    *,
    settings: ArisSettings,
) -> None:
    """Class probabilities from a saved probe (the same as `aris run probe INPUT --probe NAME`)."""
    from aris.cli.run import run_one
    from aris.tasks import get_task

    run_one(
        get_task("probe"),
        inputs,
        question=None,
        kind=kind,
        out=out,
        as_json=as_json,
        show_thought=False,
        script=None,
        options={"probe": name},
        settings=settings,
    )


@probe_app.command("eval")
@engine_options
def probe_eval(
    name: Annotated[str, typer.Argument(help="The probe's name.")],
    dataset: Annotated[Path, typer.Argument(help="Held-out data: a class-folder or CSV/JSONL dataset.")],
    as_json: JsonOpt = False,
    *,
    settings: ArisSettings,
) -> None:
    """Score a saved probe on held-out data: accuracy, balanced accuracy, macro ROC AUC, confusion matrix."""
    from aris.embed.probe import Probe, metrics

    probe = Probe.load_named(settings, name)
    data, identity = _embed_dataset(dataset, settings)
    from aris.embed import identity_key

    if identity_key(identity) != probe.model_key:
        raise ConfigError(
            f"probe {name!r} was trained on another embedder ({probe.identity.get('model')!r}); "
            "evaluate it with that model (--embed-model)"
        )
    unknown = sorted(set(data.y) - set(probe.classes))
    if unknown:
        raise ConfigError(f"the dataset has classes the probe does not know: {', '.join(unknown)}")
    if not data.y:
        raise ConfigError("no dataset item could be embedded")
    m = metrics(data.y, probe.predict_proba(data.X), probe.classes)
    if as_json:
        sys.stdout.write(json.dumps({"probe": name, "metrics": m}) + "\n")
        return
    console.print(_metrics_table(f"probe {escape(name)} on {escape(dataset.name)}", m))
    conf = Table(title="confusion (rows: truth, columns: predicted)", title_justify="left")
    conf.add_column("")
    for c in probe.classes:
        conf.add_column(escape(c), justify="right")
    for c, row in zip(probe.classes, m["confusion"]["matrix"], strict=True):
        conf.add_row(escape(c), *(str(x) for x in row))
    console.print(conf)
    console.print(f"[bold yellow]{NOTICE}[/]")


@probe_app.command("list")
def probe_list() -> None:
    """The saved probes."""
    from aris.embed.probe import Probe

    settings = ArisSettings.from_flags()
    root = settings.home / "embed" / "probes"
    t = Table(title="probes", title_justify="left")
    for col in ("name", "classes", "n", "cv accuracy", "model"):
        t.add_column(col)
    for f in sorted(root.glob("*/probe.json")) if root.exists() else []:
        p = Probe.load(f)
        t.add_row(
            escape(f.parent.name),
            escape(", ".join(p.classes)),
            str(p.dataset.get("n", "")),
            str(p.metrics.get("accuracy", "")),
            escape(str(p.identity.get("model"))),
        )
    console.print(t)


# -- aris index -------------------------------------------------------------------------------------


def _open_index(settings: ArisSettings, name: str) -> Any:
    from aris.embed.index import ImageIndex

    return ImageIndex.open(settings, name)


def _report(report: Any, verb: str) -> None:
    console.print(
        f"{verb} {len(report.added)} · already indexed {len(report.skipped)} · failed {len(report.failed)} · "
        f"model ran on {report.embedded} (the rest came from the embedding store)"
    )
    for display, err in report.failed[:20]:
        err_console.print(
            f"[red]failed:[/] {escape(display)}: {escape(err)}", highlight=False, soft_wrap=True
        )


@index_app.command("add")
@engine_options
def index_add(
    paths: Annotated[list[Path], typer.Argument(help="Files, series folders, slides, or folders of them.")],
    index: IndexOpt = "default",
    kind: KindOpt = "auto",
    *,
    settings: ArisSettings,
) -> None:
    """Add studies to the index (already indexed ones are skipped; unreadable ones reported)."""
    ix = _open_index(settings, index)
    try:
        with _embedding(settings) as (embedder, store), _progress() as progress:
            task = progress.add_task("indexing", total=None)

            def on_item(n: int, total: int, display: str) -> None:
                progress.update(
                    task, completed=n, total=total, description=f"indexing {escape(_short(display, 40))}"
                )

            report = ix.add(paths, embedder, store, kind=kind, on_item=on_item)
        _report(report, "added")
        console.print(f"[dim]index {escape(index)} ({ix.backend_name}): {ix.count()} items[/]")
    finally:
        ix.close()


@index_app.command("search")
@engine_options
def index_search(
    text: Annotated[str | None, typer.Option("--text", help="Search by text.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Search by an image or study.")] = None,
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 10,
    index: IndexOpt = "default",
    kind: KindOpt = "auto",
    as_json: JsonOpt = False,
    *,
    settings: ArisSettings,
) -> None:
    """The most similar indexed items, by text or by image (cosine similarity of MedSigLIP embeddings)."""
    from aris.inputs import read

    if (text is None) == (image is None):
        raise ConfigError("give exactly one of --text or --image")
    ix = _open_index(settings, index)
    try:
        with _embedding(settings) as (embedder, store):
            if text is not None:
                hits = ix.search_text(text, embedder, k)
            else:
                assert image is not None
                hits = ix.search_image(read(image, kind=kind), embedder, store, k)
    finally:
        ix.close()
    if as_json:
        sys.stdout.write(json.dumps({"results": [{**h.public(), "source": h.source} for h in hits]}) + "\n")
        return
    t = Table(title=f"search · index {escape(index)}", title_justify="left")
    for col in ("#", "score", "id", "item", "kind", "study / series UID"):
        t.add_column(col)
    for rank, h in enumerate(hits, 1):
        uid = h.uids.get("SeriesInstanceUID") or h.uids.get("StudyInstanceUID") or ""
        t.add_row(str(rank), f"{h.score:.4f}", str(h.id), escape(_short(h.display)), h.kind, escape(uid))
    console.print(t)


@index_app.command("delete")
def index_delete(
    ids: Annotated[list[int] | None, typer.Argument(help="Item ids (from search or list).")] = None,
    path: Annotated[list[Path] | None, typer.Option("--path", help="Delete by source path (repeat).")] = None,
    index: IndexOpt = "default",
) -> None:
    """Remove items from the index."""
    settings = ArisSettings.from_flags()
    ix = _open_index(settings, index)
    try:
        n = ix.delete(ids or [], path or [])
    finally:
        ix.close()
    console.print(f"deleted {n} item(s) from index {escape(index)}")


@index_app.command("reindex")
@engine_options
def index_reindex(
    index: IndexOpt = "default",
    *,
    settings: ArisSettings,
) -> None:
    """Re-embed every item with the current model (after a model or recipe change), into the configured backend."""
    ix = _open_index(settings, index)
    try:
        with _embedding(settings) as (embedder, store), _progress() as progress:
            task = progress.add_task("re-indexing", total=ix.count())
            report = ix.reindex(embedder, store, on_item=lambda n, _t, _d: progress.update(task, completed=n))
        _report(report, "re-embedded")
    finally:
        ix.close()


@index_app.command("list")
def index_list(index: IndexOpt = "default", as_json: JsonOpt = False) -> None:
    """The items of an index."""
    settings = ArisSettings.from_flags()
    ix = _open_index(settings, index)
    try:
        items, model, backend = ix.items(), (ix.identity or {}).get("model"), ix.backend_name
    finally:
        ix.close()
    if as_json:
        sys.stdout.write(
            json.dumps({"index": index, "model": model, "backend": backend, "items": items}) + "\n"
        )
        return
    t = Table(
        title=f"index {escape(index)} · {backend} · {escape(str(model))} · {len(items)} items",
        title_justify="left",
    )
    for col in ("id", "item", "kind", "parts", "UIDs"):
        t.add_column(col)
    for it in items:
        t.add_row(
            str(it["id"]),
            escape(_short(it["display"])),
            it["kind"],
            str(it["parts"]),
            escape(", ".join(it["uids"].values())),
        )
    console.print(t)
