"""``aris run TASK INPUT...``: a clinical task end to end, answer streamed, structured result shown."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from aris.cli.app import app, console, err_console
from aris.cli.ask import print_stream
from aris.cli.options import engine_options
from aris.config import ArisSettings
from aris.engines import load_engine
from aris.errors import ConfigError
from aris.result import Result
from aris.tasks import TASKS
from aris.types import GenerationParams

TASK_HELP = "One of: " + ", ".join(TASKS) + "."


def parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` with JSON values where they parse (true, 3, ["a"]), else the string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--option takes KEY=VALUE, not {text!r}")
    try:
        return key.strip().replace("-", "_"), json.loads(value)
    except ValueError:
        return key.strip().replace("-", "_"), value


def _cell(value: Any) -> str:
    if isinstance(value, list):
        if all(isinstance(v, str | int | float) for v in value):
            return ", ".join(str(v) for v in value) or "—"
        return f"{len(value)} item(s) (see --json)"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) if len(value) <= 8 else f"{len(value)} fields"
    return "—" if value in (None, "") else str(value)


def _nested(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and any(isinstance(v, dict | list) for v in value)
    )


def _rows_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title, show_lines=False)
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*(Text(_cell(row.get(c))) for c in columns))  # model text is not markup
    return table


def print_result(result: Result) -> None:
    """The structured result as tables: the scalar fields, then any list of records as its own table."""
    parsed = result.parsed
    if isinstance(parsed, dict):
        fields = Table(title=f"{result.task}: structured result")
        fields.add_column("field", style="bold")
        fields.add_column("value", overflow="fold")
        nested: list[tuple[str, list[dict[str, Any]]]] = []
        for k, v in parsed.items():
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                nested.append((k, v))
            else:
                fields.add_row(k, Text(_cell(v)))
        console.print(fields)
        for name, rows in nested:
            columns = [c for c in rows[0] if not _nested(rows[0][c]) or c == "box_px"]
            if name == "series":
                columns = ["name", "unit", "n", "latest", "change_since_last", "slope_per_year", "flags"]
            console.print(_rows_table(name, rows, columns))
    if result.warnings:
        for w in result.warnings:
            err_console.print(f"[yellow]warning:[/] {w}", highlight=False, markup=False)
    if result.errors:
        err_console.print(
            "[bold yellow]The reply did not validate"
            + (" (even after one repair)" if len(result.steps) > 1 else "")
            + ":[/]",
            highlight=False,
        )
        for e in result.errors:
            err_console.print(f"  - {e}", highlight=False, markup=False)


def print_footer(result: Result) -> None:
    steps = f" · {len(result.steps)} calls" if len(result.steps) > 1 else ""
    repaired = " · repaired once" if result.repaired else ""
    console.print(
        f"[dim]model: {result.model} ({result.engine}) · prompt {result.prompt_sha256[:12]}{steps}{repaired} · "
        f"{result.timings.total_s:.1f}s[/]"
    )
    console.print(f"[bold yellow]{result.notice}[/]")


def _script_lines(path: Path) -> list[str]:
    try:
        return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the script ({e.strerror})") from None


def run_intake(
    engine: Any, params: GenerationParams, script: Path | None, as_json: bool, question: str | None
) -> Result:
    """The interview in the terminal: questions printed, answers read from stdin (or the script)."""
    from aris.tasks.intake import IntakeRecord, IntakeSession
    from aris.tasks.redflags import RedFlag

    def escalate(flags: list[RedFlag]) -> None:
        err_console.print(
            Panel(
                f"{flags[0].action}\n\n[dim]Why: {'; '.join(f.label for f in flags)}[/]",
                title="[bold]URGENT[/]",
                border_style="bold red",
            )
        )

    session = IntakeSession(engine, params=params, on_escalation=escalate)
    answers = _script_lines(script) if script else None
    step: str | IntakeRecord = session.start()
    pending = [question] if question else []
    while isinstance(step, str):
        if not as_json:
            console.print(Text.assemble(("Aris: ", "bold cyan"), step))
        if pending:
            answer: str | None = pending.pop(0)
        elif answers is not None:
            answer = answers.pop(0) if answers else None
        else:
            try:
                answer = input("> " if sys.stdin.isatty() else "")
            except EOFError:
                answer = None
        if answer is None:
            step = session.finish()
            break
        if not as_json and (answers is not None or not sys.stdin.isatty()):
            console.print(Text.assemble(("Patient: ", "bold"), answer))
        step = session.reply(answer)
    return session.result()


@app.command("run")
@engine_options
def run_cmd(
    task: Annotated[str, typer.Argument(help=f"The task. {TASK_HELP}")],
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Input files or folders (DICOM, series folder/zip, NIfTI, slide, PDF, FHIR, image)."
        ),
    ] = None,
    question: Annotated[
        str | None, typer.Option("--question", "-q", help="The question (asked last).")
    ] = None,
    choices: Annotated[
        str | None,
        typer.Option(help="classify/text-qa: a,b,c or a built-in set (nct-crc-he, diabetic-retinopathy)."),
    ] = None,
    labels: Annotated[str | None, typer.Option(help="cxr-localize: names to locate, a,b,c.")] = None,
    findings: Annotated[
        str | None, typer.Option(help="ct/mri: yes/no per finding; cxr-compare: findings, a,b,c.")
    ] = None,
    organ: Annotated[str | None, typer.Option(help="wsi: tissue type, e.g. colon.")] = None,
    procedure: Annotated[str | None, typer.Option(help="wsi: e.g. biopsy.")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option", "-o", help="Any task option as KEY=VALUE (mode=navigate, format=json, ...). Repeat."
        ),
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Input kind: auto|cxr|image|ct|mri|wsi|pdf|fhir.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for result.json and files (overlay.png).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result record as JSON.")] = False,
    think: Annotated[
        bool | None, typer.Option("--think/--no-think", help="Thinking mode (default: the task's).")
    ] = None,
    show_thought: Annotated[bool, typer.Option("--show-thought", help="Print the thought (stderr).")] = False,
    script: Annotated[
        Path | None, typer.Option(help="intake: a file of patient answers, one a line.")
    ] = None,
    *,
    settings: ArisSettings,
) -> None:
    """Run a clinical task: answer streamed, structured result as a table, the notice always."""
    from aris.api import prepare_inputs
    from aris.tasks import get_task

    t = get_task(task)
    options: dict[str, Any] = dict(parse_option(o) for o in option or [])
    for key, value in (
        ("choices", choices),
        ("labels", labels),
        ("findings", findings),
        ("organ", organ),
        ("procedure", procedure),
    ):
        if value is not None:
            options[key] = value
    if think is not None:
        options["think"] = think
    if out is not None:
        options["out_dir"] = str(out)
    t.opts(options)  # a bad option fails now, before a model loads
    t0 = time.perf_counter()
    paths: list[Any] = [str(p) for p in inputs or []]
    if t.n_inputs[1] == 1 and len(paths) > 1:
        paths = [paths]  # several files for a one-input task: the files of one series (or slide)
    prepared = prepare_inputs(t, paths, kind=kind)
    prepare_s = time.perf_counter() - t0
    for p in prepared:
        for w in p.provenance.warnings:
            err_console.print(f"[yellow]input warning:[/] {w}", highlight=False, markup=False)
    max_new = settings.max_new_tokens if "max_new_tokens" in settings.model_fields_set else t.max_new_tokens
    params = GenerationParams(max_new_tokens=max_new)
    with err_console.status(f"loading {settings.engine} model…"):
        eng = load_engine(settings)
    try:
        if t.name == "intake" and not options.get("answers"):
            result = run_intake(eng, params, script, as_json, question)
        else:
            if not as_json:
                console.print("[dim]── answer ──[/]")
            result = t.run(
                eng,
                prepared,
                question,
                options=options,
                params=params,
                on_token=None if as_json else print_stream(show_thought),
            )
    finally:
        eng.close()
    result.timings.prepare_s += prepare_s
    result.timings.total_s += prepare_s
    record = result.model_dump_json(indent=2, exclude=None if show_thought else {"thought"})
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(record + "\n")
    if as_json:
        sys.stdout.write(record + "\n")
        return
    sys.stdout.write("\n")
    print_result(result)
    if out is not None:
        console.print(f"[dim]saved: {out / 'result.json'}[/]", highlight=False)
    print_footer(result)
