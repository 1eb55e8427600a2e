"""``dictation-report``: a dictated recording (and optionally the study's images) into a report draft.

MedASR transcribes the recording (model role ``transcriber``); MedGemma (``generator``) turns the
transcript into the ``cxr-report`` schema, ``{findings, impression}``, parsed and repaired the same way.
The result record keeps what the draft was made from: the transcript (text, raw words with times,
the transcriber's identity) and the recording's sha256, beside the provenance of every input.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from aris.context import RunContext
from aris.engines.base import Engine
from aris.errors import ConfigError, InputError
from aris.inputs.base import Kind, PreparedInput
from aris.result import Result
from aris.speech.types import Progress, Transcript
from aris.tasks.base import OnToken, Outcome, TaskOptions, Trace, system_messages
from aris.tasks.cxr import CxrReport, CxrReportOptions
from aris.types import GenerationParams, Message, TextPart

IMAGE_KINDS = ("cxr", "image", "ct", "mri")

DICTATION_PROMPT = (
    "Below is a radiologist's dictated report, transcribed by speech recognition: it may contain "
    "recognition errors and spoken formatting. Write it as a radiology report with exactly two sections, "
    '"FINDINGS:" and "IMPRESSION:". Keep every finding the radiologist dictated and add none; fix only '
    'obvious recognition errors. If no impression was dictated, write "IMPRESSION: Not dictated."'
)
DICTATION_JSON_PROMPT = (
    "Below is a radiologist's dictated report, transcribed by speech recognition: it may contain "
    "recognition errors and spoken formatting. Reply with a JSON object with two string fields: "
    '{"findings": "...", "impression": "..."}. Keep every finding the radiologist dictated and add none; '
    'fix only obvious recognition errors. If no impression was dictated, write "Not dictated."'
)
WITH_IMAGES = (
    "The study's images are shown above: use them only to resolve words the recognition got wrong, "
    "not to add findings."
)


class DictationReportOptions(CxrReportOptions):
    pass


def transcript_of(prepared: PreparedInput) -> Transcript:
    """The transcript the task stored on the audio input before prompting."""
    t = prepared.extra.get("transcript")
    if not isinstance(t, Transcript):
        raise ConfigError("dictation-report: the audio input has no transcript yet (run it through the task)")
    return t


class DictationReport(CxrReport):
    name = "dictation-report"
    description = (
        "Dictated recording (+ optional study images, --image) -> transcript (MedASR) -> draft report "
        "{findings, impression}; the transcript and audio digest are kept in the result."
    )
    input_kinds: ClassVar[tuple[Kind, ...]] = ("audio", *IMAGE_KINDS)
    n_inputs = (1, 2)
    Options = DictationReportOptions
    needs = ("transcriber", "generator")
    max_new_tokens = 768

    def check(self, inputs: list[PreparedInput], question: str | None, options: Any) -> str | None:
        question = super().check(inputs, question, options)
        first = inputs[0]
        if first.kind != "audio":
            src = first.provenance.sources[0] if first.provenance.sources else None
            raise InputError(src, f"read as {first.kind!r}; dictation-report takes the recording first")
        if len(inputs) > 1 and inputs[1].kind not in IMAGE_KINDS:
            src = inputs[1].provenance.sources[0] if inputs[1].provenance.sources else None
            raise InputError(
                src,
                f"read as {inputs[1].kind!r}; the second input is the study's images ({'/'.join(IMAGE_KINDS)})",
            )
        return question

    def messages(self, inputs: list[PreparedInput], question: str | None, options: Any) -> list[Message]:
        o = self.opts(options)
        transcript = transcript_of(inputs[0])
        prompt = DICTATION_JSON_PROMPT if o.format == "json" else DICTATION_PROMPT
        if len(inputs) > 1:
            prompt += " " + WITH_IMAGES
        if question:
            prompt += f"\nClinical indication: {question.strip()}"
        prompt += f"\n\nDictation:\n{transcript.text}"
        images = inputs[1].parts if len(inputs) > 1 else []
        return [*system_messages(o), Message("user", [*images, TextPart(prompt)])]

    def run(
        self,
        engine: Engine,
        inputs: list[PreparedInput],
        question: str | None = None,
        *,
        options: dict[str, Any] | TaskOptions | None = None,
        params: GenerationParams | None = None,
        on_token: OnToken | None = None,
        ctx: RunContext | None = None,
    ) -> Result:
        """Transcribe, then prompt, generate, parse and repair once as ``cxr-report`` does."""
        ctx = ctx or RunContext()
        t0 = time.perf_counter()
        opts = self.opts(options)
        question = self.check(inputs, question, opts)
        audio = inputs[0]
        if "transcript" not in audio.extra:
            audio.extra["transcript"] = self._transcribe(audio, ctx)
        transcript = transcript_of(audio)
        if not transcript.raw_text.strip():
            src = audio.provenance.sources[0] if audio.provenance.sources else None
            raise InputError(src, "no speech was recognised in the recording; there is nothing to report")
        messages = self.messages(inputs, question, opts)
        gp = self.generation_params(engine, params, opts, inputs)
        trace = Trace(self, engine, inputs, on_token, ctx)
        trace.prepare_s = time.perf_counter() - t0
        first = trace.generate("answer", messages, gp)
        outcome = self.parse_with_repair(trace, messages, gp, first.text, inputs, opts)
        return self.build(trace, outcome, inputs, opts)

    def _transcribe(self, audio: PreparedInput, ctx: RunContext) -> Transcript:
        transcriber = ctx.models.get("transcriber")

        def progress(p: Progress) -> None:
            ctx.check_cancelled()
            if ctx.on_event is not None:
                ctx.on_event(
                    {
                        "type": "transcription",
                        "chunk": p.chunk,
                        "chunks": p.chunks,
                        "seconds_done": round(p.seconds_done, 2),
                        "seconds_total": round(p.seconds_total, 2),
                        "delta": p.delta,
                    }
                )

        transcript: Transcript = transcriber.transcribe(audio, on_progress=progress)
        transcript.model = {**transcript.model, **transcriber.identity()}
        return transcript

    def build(self, trace: Trace, outcome: Outcome, inputs: list[PreparedInput], options: Any) -> Result:
        """The report, with what it was made from: the transcript and the recording's digest.

        The whole transcript (words with times, the transcriber's identity) goes into the audio input's
        provenance, so it is kept even when the reply did not validate; a valid report also carries the
        transcript text and the audio digest beside its findings and impression.
        """
        result = super().build(trace, outcome, inputs, options)
        transcript = transcript_of(inputs[0])
        if result.provenance:
            prov = result.provenance[0]
            result.provenance[0] = {
                **prov,
                "details": {**prov.get("details", {}), "transcript": transcript.to_dict()},
            }
        if isinstance(result.parsed, dict):
            result.parsed = {
                **result.parsed,
                "transcript": transcript.text,
                "audio_sha256": inputs[0].provenance.details.get("sha256"),
            }
        return result
