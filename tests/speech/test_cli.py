"""``aris transcribe``: text, --json, --words, several files, a bad file among good ones."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from aris.cli import app
from aris.errors import ModelNotFoundError
from aris.notice import NOTICE


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["transcribe", *args, "--device", "cpu"])


def test_prints_the_text(tiny_asr: Path, clips: dict[str, Path], heard) -> None:  # type: ignore[no-untyped-def]
    out = invoke(str(clips["short"]), "--asr-model", str(tiny_asr))
    assert out.exit_code == 0, out.output
    expected = heard("short")
    assert out.stdout.splitlines()[0] == expected.text
    assert "1 window(s)" in out.stdout
    assert " ".join(NOTICE.split()) in " ".join(out.stdout.split())


def test_json_lines_with_words_for_each_file(tiny_asr: Path, clips: dict[str, Path]) -> None:
    out = invoke(str(clips["short"]), str(clips["long"]), "--asr-model", str(tiny_asr), "--json")
    assert out.exit_code == 0, out.output
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["file"] for r in records] == [str(clips["short"]), str(clips["long"])]
    assert records[0]["audio_sha256"] == hashlib.sha256(clips["short"].read_bytes()).hexdigest()
    assert len(records[1]["chunks"]) == 4
    assert records[1]["raw_text"] == " ".join(w["text"] for w in records[1]["words"])
    assert {"text", "start", "end", "confidence"} <= set(records[1]["words"][0])
    assert records[1]["model"]["decoder"] == "greedy"


def test_words_table_and_raw_text(tiny_asr: Path, clips: dict[str, Path], heard) -> None:  # type: ignore[no-untyped-def]
    out = invoke(str(clips["ogg"]), "--asr-model", str(tiny_asr), "--words", "--raw")
    assert out.exit_code == 0, out.output
    expected = heard("ogg")
    assert out.stdout.splitlines()[0] == expected.raw_text
    assert "start" in out.stdout
    assert f"{expected.words[0].start:.2f}" in out.stdout


def test_a_bad_file_is_one_line_and_the_rest_go_on(
    tiny_asr: Path, clips: dict[str, Path], tmp_path: Path
) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    out = invoke(str(empty), str(clips["short"]), "--asr-model", str(tiny_asr), "--json")
    assert out.exit_code == 2
    assert f"error: {empty}: the file is empty (0 bytes); nothing to transcribe" in " ".join(
        out.stderr.split()
    )
    assert [json.loads(line)["file"] for line in out.stdout.splitlines()] == [str(clips["short"])]


def test_absent_model(clips: dict[str, Path], tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    out = invoke(str(clips["short"]))
    assert isinstance(out.exception, ModelNotFoundError)
    assert "aris pull google/medasr" in str(out.exception)


def test_a_long_recording_shows_progress_and_runs_in_windows(
    tiny_asr: Path, clips: dict[str, Path], heard
) -> None:  # type: ignore[no-untyped-def]
    out = invoke(str(clips["long"]), "--asr-model", str(tiny_asr))
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith(heard("long").text + "\n")
    assert "4 window(s)" in out.stdout
