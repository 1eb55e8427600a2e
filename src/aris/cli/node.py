"""``aris node``: Aris as a DICOM node. Receive studies, route them to tasks, send SRs back.

``serve`` runs the Storage SCP; ``status`` shows received studies, routed jobs, sent results and
failures; ``echo`` checks a configured PACS; ``find`` queries one; ``pull`` asks one to C-MOVE a
study here; ``send`` stores a finished batch's results as SRs; ``retry`` sends failed ones again.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from aris.cli.app import app, console, err_console
from aris.cli.options import engine_options
from aris.config import ArisSettings

node_app = typer.Typer(
    help="Aris as a DICOM node: studies in from a PACS (C-STORE, DICOMweb), results back as SR.",
    no_args_is_help=True,
)
app.add_typer(node_app, name="node")

DbOpt = Annotated[
    str | None, typer.Option("--db", help="Store URL (env ARIS_DB_URL; default SQLite in ARIS_HOME).")
]


def _settings() -> ArisSettings:
    return ArisSettings.from_flags()


def _state(db: str | None):  # type: ignore[no-untyped-def]
    from aris.pacs.state import PacsState

    return PacsState.open(db)


def _print_event(event: dict[str, Any]) -> None:
    kind = event["type"]
    e = {k: escape(str(v)) for k, v in event.items()}  # reasons and errors are text, not markup
    study = e.get("study_uid", "")
    if kind == "received":
        return  # one line per instance is too many; studies are reported when complete
    text = {
        "started": f"listening as {e.get('ae_title')} on port {e.get('port')}",
        "interrupted": f"study {study}: the push broke off",
        "waiting": f"study {study}: waiting ({e.get('reason')})",
        "study.failed": f"[red]study {study} failed:[/] {e.get('reason')}",
        "no_rule": f"study {study}: {e.get('reason')}",
        "routed": f"study {study}: {e.get('jobs')} job(s), {e.get('new')} new",
        "job.start": f"job {e.get('job')} ({e.get('task')}, rule {e.get('rule')}) started",
        "job.done": f"job {e.get('job')} done: SR {e.get('sr_uid')}",
        "job.failed": f"[red]job {e.get('job')} failed:[/] {e.get('error')}",
        "sent": f"{e.get('what')} {e.get('sop_uid')} stored on {e.get('destination')} ({e.get('method')})",
        "send.failed": f"[yellow]send to {e.get('destination')} failed[/] "
        f"({'will retry' if event.get('retry') else 'refused'}): {e.get('error')}",
    }.get(kind, kind)
    console.print(f"[dim]{e['at'][11:19]}[/] {text}", highlight=False)


@node_app.command("serve")
@engine_options
def serve_cmd(
    ae_title: Annotated[
        str | None, typer.Option("--ae-title", help="AE title (default: [node] ae_title).")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Listen address (default: [node] host, 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="DICOM port (default: [node] port, 11112).")] = None,
    db: DbOpt = None,
    *,
    settings: ArisSettings,
) -> None:
    """Receive studies (C-STORE), run the routing rules' tasks when a study is complete, send SRs back."""
    from aris.engines import load_engine
    from aris.notice import NOTICE
    from aris.pacs.node import Node

    update = {k: v for k, v in {"ae_title": ae_title, "host": host, "port": port}.items() if v is not None}
    if update:
        node_cfg = settings.node.model_validate({**settings.node.model_dump(), **update})
        settings = settings.model_copy(update={"node": node_cfg})
    if not settings.node.rules:
        err_console.print(
            "[yellow]no routing rules (\\[\\[node.rules]] in the config): studies are kept, not run[/]"
        )
    elif not (settings.node.send_to or settings.node.results_dir) and any(
        r.send_to is None for r in settings.node.rules
    ):
        err_console.print(
            "[yellow]no send_to or results_dir in \\[node]: some SRs will stay in the outbox[/]"
        )
    from aris.pacs import rules

    rules.check_rules(settings.node.rules, list(settings.pacs), settings.node.send_to)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = None
    if settings.node.rules:
        with err_console.status(f"loading {settings.engine} model…"):
            engine = load_engine(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(f"[yellow]{NOTICE}[/]")
    try:
        with Node(settings, models=engine, db=db, on_event=_print_event):
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
    finally:
        if engine is not None:
            engine.close()
    console.print("node stopped")


@node_app.command("status")
def status_cmd(
    limit: Annotated[int, typer.Option("--limit", "-n", help="Rows per table.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON.")] = False,
    db: DbOpt = None,
) -> None:
    """Received studies, routed jobs, sent results and failures (from the store; the node may be running)."""
    state = _state(db)
    try:
        studies, jobs, sends = state.studies(limit), state.jobs(limit), state.sends(limit)
        counts = state.counts()
    finally:
        state.close()
    if as_json:
        from dataclasses import asdict

        data = {
            "counts": counts,
            "studies": [asdict(s) for s in studies],
            "jobs": [asdict(j) for j in jobs],
            "sends": [asdict(s) for s in sends],
        }
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return

    def line(name: str) -> str:
        c = counts.get(name, {})
        return ", ".join(f"{n} {k}" for k, n in sorted(c.items())) or "none"

    console.print(
        f"studies: {line('studies')} · jobs: {line('jobs')} · sends: {line('sends')}", highlight=False
    )
    t = Table("last received", "instances", "state", "reason", title="received studies", title_justify="left")
    t.add_column("study", overflow="fold")
    for s in studies:
        state_txt = f"[red]{s.state}[/]" if s.state == "failed" else s.state
        t.add_row(
            f"{s.last_received:%Y-%m-%d %H:%M:%S}",
            str(s.n_instances),
            state_txt,
            escape(s.reason or ""),
            s.study_uid,
        )
    console.print(t)
    t = Table("id", "rule", "task", "status", "SR / error", title="routed jobs", title_justify="left")
    t.add_column("study", overflow="fold")
    for j in jobs:
        status = f"[red]{j.status}[/]" if j.status == "failed" else j.status
        t.add_row(
            str(j.id),
            j.rule,
            j.task,
            status,
            escape((j.error or j.sr_uid or "") + (f" ({j.note})" if j.note else "")),
            j.study_uid,
        )
    console.print(t)
    t = Table(
        "id", "what", "to", "status", "attempts", "last error", title="results sent", title_justify="left"
    )
    t.add_column("SOP instance", overflow="fold")
    for s in sends:
        status = s.status
        if s.status == "pending" and s.attempts:
            status = f"[yellow]retrying[/] (next {s.next_at:%H:%M:%S})"
        elif s.status == "failed":
            status = "[red]failed[/] (aris node retry)"
        t.add_row(
            str(s.id), s.what, s.destination, status, str(s.attempts), escape(s.last_error or ""), s.sop_uid
        )
    console.print(t)


@node_app.command("echo")
def echo_cmd(name: Annotated[str, typer.Argument(help="A [pacs.NAME] connection.")]) -> None:
    """Check a configured PACS: C-ECHO to its DICOM address and a QIDO search on its DICOMweb root."""
    from aris.pacs import dimse
    from aris.pacs.dicomweb import Client
    from aris.pacs.urls import connection

    settings = _settings()
    conn = connection(name, settings)
    if conn.has_dimse:
        dimse.echo(dimse.peer(name, settings.node.ae_title, settings))
        console.print(f"C-ECHO {conn.ae_title}@{conn.host}:{conn.port}: ok", highlight=False)
    if conn.has_dicomweb:
        with Client(name, conn) as client:
            client.ping()
        console.print(f"DICOMweb {conn.url}: ok", highlight=False)


@node_app.command("find")
def find_cmd(
    name: Annotated[str, typer.Argument(help="A [pacs.NAME] connection.")],
    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", "-f", help="KEY=VALUE, e.g. ModalitiesInStudy=CT (repeat)."),
    ] = None,
    level: Annotated[str, typer.Option(help="study or series.")] = "study",
    dimse_: Annotated[bool, typer.Option("--dimse", help="Query with C-FIND instead of QIDO-RS.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the matches as JSON.")] = False,
) -> None:
    """List the studies (or series) a PACS has that match: UIDs, modalities and sizes (no patient data)."""
    from pydicom.multival import MultiValue

    from aris.pacs import dimse

    if level not in ("study", "series"):
        raise typer.BadParameter("study or series", param_hint="--level")
    pairs = []
    for f in filters or []:
        k, sep, v = f.partition("=")
        if not sep:
            raise typer.BadParameter(f"{f!r} is not KEY=VALUE", param_hint="--filter")
        pairs.append((k.strip(), v.strip()))
    settings = _settings()
    rows: list[tuple[str, str, str]] = []
    if dimse_:
        keys: dict[str, Any] = {
            "StudyInstanceUID": "",
            "ModalitiesInStudy": "",
            "NumberOfStudyRelatedInstances": "",
        }
        if level == "series":
            keys = {
                "StudyInstanceUID": "",
                "SeriesInstanceUID": "",
                "Modality": "",
                "NumberOfSeriesRelatedInstances": "",
            }
        keys.update(dict(pairs))
        for ds in dimse.find(dimse.peer(name, settings.node.ae_title, settings), level.upper(), keys):
            if level == "series":
                rows.append(
                    (
                        str(ds.get("SeriesInstanceUID", "")),
                        str(ds.get("Modality", "")),
                        str(ds.get("NumberOfSeriesRelatedInstances", "")),
                    )
                )
            else:
                value = ds.get("ModalitiesInStudy", "")
                mods = "\\".join(value) if isinstance(value, MultiValue) else str(value)
                rows.append(
                    (
                        str(ds.get("StudyInstanceUID", "")),
                        mods,
                        str(ds.get("NumberOfStudyRelatedInstances", "")),
                    )
                )
    else:
        from aris.pacs.dicomweb import Client, attr
        from aris.pacs.urls import connection

        with Client(name, connection(name, settings)) as client:
            if level == "series":
                for s in client.search_series(None, pairs):
                    rows.append(
                        (
                            str(attr(s, "0020000E")),
                            str(attr(s, "00080060") or ""),
                            str(attr(s, "00201209") or ""),
                        )
                    )
            else:
                for s in client.search_studies(pairs):
                    listed = (s.get("00080061") or {}).get("Value") or []
                    rows.append((str(attr(s, "0020000D")), "\\".join(listed), str(attr(s, "00201208") or "")))
    if as_json:
        found = [
            {"uid": uid, "modalities": mods.split("\\") if mods else [], "instances": n}
            for uid, mods, n in rows
        ]
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return
    t = Table("modalities" if level == "study" else "modality", "instances")
    t.add_column(f"{level} UID", overflow="fold")
    for uid, mods, n in rows:
        t.add_row(mods, n, uid)
    console.print(t)
    console.print(f"{len(rows)} {level}{'' if level == 'series' else 'ies' if len(rows) != 1 else 'y'}")


@node_app.command("pull")
def pull_cmd(
    name: Annotated[str, typer.Argument(help="A [pacs.NAME] connection with a DICOM address.")],
    study: Annotated[str, typer.Argument(help="Study Instance UID.")],
    series: Annotated[str | None, typer.Option(help="Only this Series Instance UID.")] = None,
    to: Annotated[str | None, typer.Option(help="Destination AE title (default: this node's).")] = None,
) -> None:
    """Ask a PACS to C-MOVE a study to the node (which must be running to receive it)."""
    from aris.pacs import dimse

    settings = _settings()
    counts = dimse.move(
        dimse.peer(name, settings.node.ae_title, settings), to or settings.node.ae_title, study, series
    )
    console.print(
        f"C-MOVE: {counts['completed']} sent, {counts['failed']} failed, {counts['warning']} warnings"
    )
    if counts["failed"]:
        raise typer.Exit(1)


@node_app.command("send")
def send_cmd(
    batch: Annotated[
        str, typer.Argument(help="A batch id (aris batch status) run over a dicomweb:// worklist.")
    ],
    to: Annotated[
        list[str] | None, typer.Option("--to", help="A [pacs.NAME] to store the SRs on (repeat).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the SR files to this folder.")] = None,
    gsps: Annotated[bool, typer.Option(help="Localization: also a GSPS with the boxes.")] = False,
    db: DbOpt = None,
) -> None:
    """Store a batch's results in the PACS as SRs referencing their source studies."""
    from aris.pacs.results import send_batch

    if not to and out is None:
        raise typer.BadParameter("say where: --to NAME and/or --out FOLDER", param_hint="--to")
    settings = _settings()
    state = _state(db)
    try:
        report = send_batch(batch, to or [], settings=settings, state=state, out_dir=out, gsps_too=gsps)
    finally:
        state.close()
    t = Table("status", "SR / reason", title=f"batch {report.job_id}", title_justify="left")
    t.add_column("input", overflow="fold")
    for r in report.rows:
        t.add_row(r["status"], escape(r.get("sr_uid") or r.get("reason", "")), r["input"])
    console.print(t)
    console.print(f"{report.sent} sent, {report.failed} pending or failed (aris node status)")
    if report.failed:
        raise typer.Exit(1)


@node_app.command("retry")
def retry_cmd(
    jobs: Annotated[
        bool, typer.Option("--jobs", help="Also run failed jobs again (on the running node).")
    ] = False,
    now: Annotated[
        bool, typer.Option("--now", help="Send from this process now instead of leaving it to the node.")
    ] = False,
    db: DbOpt = None,
) -> None:
    """Queue failed sends (and with --jobs, failed jobs) again."""
    from aris.pacs.send import Sender

    state = _state(db)
    try:
        n = state.retry_sends()
        console.print(f"{n} send(s) due now")
        if jobs:
            console.print(f"{state.retry_jobs()} failed job(s) set back to pending")
        if now:
            sent = Sender(state, _settings()).send_due()
            console.print(f"{sent} stored")
            left = state.counts()["sends"]
            if left.get("pending") or left.get("failed"):
                raise typer.Exit(1)
    finally:
        state.close()
