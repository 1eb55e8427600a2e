"""Spoken punctuation and layout commands, in one go and word by word."""

from __future__ import annotations

import pytest

from aris.speech.formatting import Formatter, format_text, format_words, normalize_for_wer

GOOGLE_SAMPLE = (
    "Exam type CT chest PE protocol period. Indication 54 year old female, shortness of breath, evaluate for "
    "PE period. Technique standard protocol period. Findings colon. Pulmonary vasculature colon. The main PA "
    "is patent period. There are filling defects in the segmental branches of the right lower lobe comma "
    "compatible with acute PE period. No saddle embolus period. Lungs colon. No pneumothorax period. Small "
    "bilateral effusions comma right greater than left period. New paragraph. Impression colon Acute "
    "segmental PE right lower lobe period."
)


@pytest.mark.parametrize(
    ("spoken", "written"),
    [
        ("no acute findings period", "No acute findings."),
        ("lungs colon clear period", "Lungs: Clear."),
        ("small effusion comma stable period", "Small effusion, stable."),
        ("heart normal period next line lungs clear", "Heart normal.\nLungs clear"),
        ("findings period new paragraph impression colon normal", "Findings.\n\nImpression: Normal"),
        ("is it stable question mark yes exclamation point", "Is it stable? Yes!"),
        ("nodule open paren 4 mm close paren in the apex", "Nodule (4 mm) in the apex"),
        ("first semicolon second full stop", "First; second."),
    ],
)
def test_commands(spoken: str, written: str) -> None:
    assert format_text(spoken) == written


@pytest.mark.parametrize(
    ("spoken", "written"),
    [
        ("the sigmoid colon is normal period", "The sigmoid colon is normal."),
        ("colon wall thickening period", "Colon wall thickening."),
        ("uneventful postoperative period period", "Uneventful postoperative period."),
        ("a period of rest period", "A period of rest."),
        ("findings colon the colon is normal period", "Findings: The colon is normal."),
    ],
)
def test_punctuation_words_used_as_nouns_stay_words(spoken: str, written: str) -> None:
    assert format_text(spoken) == written


def test_braced_commands_are_always_commands() -> None:
    assert format_text("the sigmoid {colon} normal {period}") == "The sigmoid: Normal."


def test_marks_are_not_doubled_and_leading_commands_dropped() -> None:
    assert format_text("period comma normal period .") == "Normal."
    assert format_text("new paragraph normal new paragraph new paragraph next line end") == "Normal\n\nEnd"


def test_googles_reference_transcript_reads_as_a_report() -> None:
    text = format_text(GOOGLE_SAMPLE)
    assert text.startswith(
        "Exam type CT chest PE protocol. Indication 54 year old female, shortness of breath"
    )
    assert "Findings:. Pulmonary" not in text
    assert "\n\nImpression: Acute segmental PE right lower lobe." in text
    assert " period" not in text
    assert " comma" not in text


def test_streaming_in_any_split_equals_the_whole() -> None:
    words = GOOGLE_SAMPLE.split()
    whole = format_words(words)
    for size in (1, 2, 3, 7):
        f = Formatter()
        pieces = [f.feed(words[i : i + size]) for i in range(0, len(words), size)]
        pieces.append(f.finish())
        assert "".join(pieces) == whole


def test_wer_normalisation_is_googles() -> None:
    assert (
        normalize_for_wer("Findings: the PA's patent.</s>  New-line") == "findings the pa's patent new line"
    )
