"""``aris transcribe AUDIO...``: dictation to text with MedASR, progress shown on long recordings.

Also gives ``aris run dictation-report`` its ``--image STUDY`` flag: the study becomes the task's second
input, read on this machine like the recording (the server and MCP take it as a second upload/path).
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from aris.cli.app import app, console, err_console
from aris.cli.options import engine_options
from aris.cli.run import run_app, task_command
from aris.config import ArisSettings
from aris.errors import ArisError
from aris.notice import NOTICE


def _words_table(transcript: Any) -> Table:
    table = Table(title="words", show_lines=False)
    for col in ("start", "end", "word", "conf"):
        table.add_column(col, justify="right" if col != "word" else "left")
    for w in transcript.words:
        table.add_row(f"{w.start:.2f}", f"{w.end:.2f}", Text(w.text), f"{w.confidence:.2f}")
    return table


@app.command("transcribe")
@engine_options
def transcribe_cmd(
    audio: Annotated[
        list[Path], typer.Argument(help="Recordings: WAV, FLAC, Ogg (MP3/M4A/WebM with ffmpeg).")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per recording (text, words with times, chunks).")
    ] = False,
    words: Annotated[
        bool, typer.Option("--words", help="Show each word with its start and end time.")
    ] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print the words as recognised (spoken punctuation not applied).")
    ] = False,
    asr_lm: Annotated[
        str | None,
        typer.Option(
            "--lm",
            "--asr-lm",
            help="KenLM file for beam search ('auto': lm_6.kenlm beside MedASR); default greedy decoding.",
        ),
    ] = None,
    *,
    settings: ArisSettings,
) -> None:
    """Transcribe dictation with MedASR (google/medasr, or --asr-model FOLDER)."""
    from aris.speech import load_transcriber
    from aris.speech.audio import load_audio

    updates: dict[str, Any] = {}
    if asr_lm is not None:
        updates["asr_lm"] = asr_lm
    settings = settings.model_copy(update=updates)
    with err_console.status(f"loading {settings.asr_model}…"):
        transcriber = load_transcriber(settings)
    failed = 0
    try:
        for path in audio:
            try:
                recording = load_audio(path, max_seconds=settings.asr_max_seconds)
                transcript = _run(transcriber, recording, path, quiet=as_json)
            except ArisError as e:
                failed += 1
                err_console.print(Text.assemble(("error: ", "bold red"), str(e)), soft_wrap=True)
                continue
            if as_json:
                record = {"file": str(path), "audio_sha256": recording.sha256, **transcript.to_dict()}
                record["model"] = transcriber.identity()
                record["notice"] = NOTICE
                sys.stdout.write(json.dumps(record) + "\n")
                continue
            if len(audio) > 1:
                console.print(f"[bold]{path}[/]", highlight=False, markup=False)
            sys.stdout.write((transcript.raw_text if raw else transcript.text) + "\n")
            if words:
                console.print(_words_table(transcript))
            console.print(
                f"[dim]{transcript.duration:.1f}s · {len(transcript.words)} words · {transcript.decoder} · "
                f"{len(transcript.chunks)} window(s)[/]"
            )
    finally:
        transcriber.close()
    if not as_json:
        console.print(f"[bold yellow]{NOTICE}[/]")
    if failed:
        raise typer.Exit(2)


def _run(transcriber: Any, recording: Any, path: Path, *, quiet: bool) -> Any:
    """Transcribe with a progress bar over the recording's seconds (stderr; none for --json)."""
    if quiet or recording.duration <= 20:
        return transcriber.transcribe(recording)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(path.name, total=recording.duration)
        return transcriber.transcribe(
            recording, on_progress=lambda p: bar.update(task, completed=p.seconds_done)
        )


# -- aris run dictation-report --image STUDY ------------------------------------------------------


def _with_image(command: Any) -> Any:
    """The generic task command with ``--image``: its value is appended to the inputs."""
    sig = inspect.signature(command)
    image = inspect.Parameter(
        "image",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            Path | None,
            typer.Option(
                "--image", help="The study's images (X-ray, DICOM, CT/MRI folder or zip): a second input."
            ),
        ],
    )

    def wrapper(**kwargs: Any) -> Any:
        study = kwargs.pop("image", None)
        if study is not None:
            kwargs["inputs"] = [*(kwargs.get("inputs") or []), study]
        return command(**kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), image])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**command.__annotations__, "image": image.annotation}
    wrapper.__doc__ = command.__doc__
    return wrapper


run_app.registered_commands = [c for c in run_app.registered_commands if c.name != "dictation-report"]
run_app.command("dictation-report", help=task_command("dictation-report").__doc__)(
    _with_image(task_command("dictation-report"))
)
