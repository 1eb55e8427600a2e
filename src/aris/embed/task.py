"""MedSigLIP tasks for :func:`aris.runner.run_task`: ``zero-shot`` and ``probe``.

Both need only the ``embedder`` model role, so the runner hands them no generator (``engine`` is None)
and they run from every front end (``aris run``, the server's jobs, MCP's ``run_task``) like the
MedGemma recipes. The same readers prepare the input: a CT's slices and a slide's tiles are embedded
one by one and pooled; per-part scores are kept.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

from aris.context import RunContext
from aris.embed import Embedder
from aris.engines.base import Engine
from aris.errors import ConfigError
from aris.inputs.base import PreparedInput
from aris.result import Result, Timings
from aris.tasks.base import OnToken, Task, TaskOptions, _prov
from aris.types import GenerationParams, Message

# Options that every task has but that mean nothing without a generator: kept off the command line.
_HIDDEN: dict[str, Any] = {"cli": False}
MAX_PART_ROWS = 126  # a slide's tile count: per-part scores are kept for any input the readers make
PROBE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class EmbedOptions(TaskOptions):
    think: bool | None = Field(
        default=None, description="Unused: MedSigLIP does not generate.", json_schema_extra=_HIDDEN
    )
    constrain: bool = Field(
        default=True, description="Unused: MedSigLIP does not generate.", json_schema_extra=_HIDDEN
    )
    system: str | None = Field(
        default=None, description="Unused: MedSigLIP does not generate.", json_schema_extra=_HIDDEN
    )


class ZeroShotOptions(EmbedOptions):
    labels: list[str] = Field(
        default_factory=list,
        description="Candidate labels (two or more), e.g. 'pleural effusion,no finding'.",
    )
    label_set: str | None = Field(
        default=None,
        description="Built-in label set (cxr, skin, pathology) or one from the config's embed_label_sets.",
    )
    templates: list[str] = Field(
        default_factory=list,
        description="Prompt templates with {label} (default: the set's own, else '{label}').",
    )

    @field_validator("templates")
    @classmethod
    def _placeholders(cls, v: list[str]) -> list[str]:
        for t in v:
            if "{label}" not in t:
                raise ValueError(f"template {t!r} has no {{label}} placeholder")
        return v


def _settings(ctx: RunContext) -> Any:
    return ctx.models.settings


def _embedder(ctx: RunContext) -> tuple[Embedder, Any, bool]:
    """The run's embedder (under ``aris serve``, the server's, loaded once), the embedding store, and
    whether the store is this run's to close."""
    from aris.embed.store import EmbeddingStore

    embedder: Embedder = ctx.models.get("embedder")
    return embedder, EmbeddingStore.open(ctx.models.settings), True


def _round(x: float) -> float:
    """Six significant digits: a sigmoid of 3e-9 must not print as 0."""
    return float(f"{float(x):.6g}")


class _EmbedTask(Task):
    input_kinds = ("cxr", "image", "ct", "mri", "wsi")
    needs = ("embedder",)
    max_new_tokens = 1

    def messages(self, inputs: list[PreparedInput], question: str | None, options: Any) -> list[Message]:
        """No conversation: MedSigLIP embeds, it does not generate."""
        return []

    def parse(self, text: str, inputs: list[PreparedInput], options: Any) -> Any:
        return text

    def _embed(self, inputs: list[PreparedInput], ctx: RunContext) -> tuple[Embedder, Any]:
        from aris.embed.embedding import embed_prepared

        embedder, store, own = _embedder(ctx)
        try:
            ctx.check_cancelled()
            emb = embed_prepared(embedder, inputs[0], store=store, on_batch=lambda *_: ctx.check_cancelled())
        finally:
            if own:
                store.close()
        return embedder, emb

    def _result(
        self,
        embedder: Embedder,
        inputs: list[PreparedInput],
        text: str,
        parsed: Any,
        key: str,
        t0: float,
        n: int,
    ) -> Result:
        total = time.perf_counter() - t0
        return Result(
            task=self.name,
            model=embedder.model_id,
            engine=embedder.kind,
            text=text,
            raw="",
            parsed=parsed,
            prompt_sha256=hashlib.sha256(key.encode()).hexdigest(),
            provenance=[_prov(i) for i in inputs],
            usage={"images": n},
            timings=Timings(generate_s=total, total_s=total),
        )


class ZeroShot(_EmbedTask):
    name = "zero-shot"
    description = (
        "MedSigLIP zero-shot: an image (or CT/slide, pooled) against text labels; sigmoid per label "
        "and softmax across labels, both reported."
    )
    Options: ClassVar[type[TaskOptions]] = ZeroShotOptions

    def plan(self, options: ZeroShotOptions, ctx: RunContext | None) -> tuple[list[str], list[str]]:
        """The labels and templates a run will use (options, else the label set's)."""
        from aris.embed.labels import label_set

        if options.labels and options.label_set:
            raise ConfigError("task zero-shot: give labels or label_set, not both")
        if options.label_set:
            ls = label_set(options.label_set, _settings(ctx) if ctx else None)
            labels, templates = list(ls.labels), list(options.templates or ls.templates)
        else:
            labels, templates = (
                [x.strip() for x in options.labels if x.strip()],
                list(options.templates or ["{label}"]),
            )
        if len(labels) < 2:
            raise ConfigError("task zero-shot: give at least two labels (--labels a,b) or a --label-set")
        return labels, templates

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
        from aris.embed.zeroshot import label_embeddings, score

        t0 = time.perf_counter()
        opts: ZeroShotOptions = self.opts(options)
        self.check(inputs, question, opts)
        ctx = ctx or RunContext()
        labels, templates = self.plan(opts, ctx)
        embedder, emb = self._embed(inputs, ctx)
        text_emb = label_embeddings(embedder, labels, templates)
        scale, bias = embedder.score_params()
        s = score(emb.pooled, text_emb, labels, scale, bias)
        order = np.argsort(-s.sigmoid)
        parsed: dict[str, Any] = {
            "top": labels[int(np.argmax(s.softmax))],
            "sigmoid": {lab: _round(s.sigmoid[i]) for i, lab in enumerate(labels)},
            "softmax": {lab: _round(s.softmax[i]) for i, lab in enumerate(labels)},
            "logits": {lab: _round(s.logits[i]) for i, lab in enumerate(labels)},
            "labels": labels,
            "templates": templates,
            "parts": len(emb.labels),
            "pooled": len(emb.labels) > 1,
        }
        if 1 < len(emb.labels) <= MAX_PART_ROWS:
            per = score(emb.parts, text_emb, labels, scale, bias)
            parsed["per_part"] = [
                {
                    "part": emb.labels[j],
                    "top": labels[int(np.argmax(per.softmax[j]))],
                    "sigmoid": {lab: _round(per.sigmoid[j, i]) for i, lab in enumerate(labels)},
                }
                for j in range(len(emb.labels))
            ]
        lines = [f"{labels[i]}: sigmoid {s.sigmoid[i]:.3g}, softmax {s.softmax[i]:.3f}" for i in order[:5]]
        pooled = (
            f" (pooled over {len(emb.labels)} {'slices' if inputs[0].kind in ('ct', 'mri') else 'parts'})"
        )
        text = f"Closest label: {parsed['top']}{pooled if len(emb.labels) > 1 else ''}.\n" + "\n".join(lines)
        key = json.dumps(["zero-shot", labels, templates], ensure_ascii=False)
        return self._result(embedder, inputs, text, parsed, key, t0, len(emb.labels))


class ProbeOptions(EmbedOptions):
    probe: str = Field(
        default="", description="Name of a probe saved by `aris probe train` (in $ARIS_HOME/embed/probes)."
    )

    @field_validator("probe")
    @classmethod
    def _name(cls, v: str) -> str:
        # A name, never a path: server and MCP clients must not choose files on the server.
        if v and not PROBE_NAME.match(v):
            raise ValueError("a probe name: letters, digits, '.', '_' and '-' only")
        return v


class ProbePredict(_EmbedTask):
    name = "probe"
    description = "A linear probe trained on MedSigLIP embeddings (aris probe train): class probabilities."
    Options: ClassVar[type[TaskOptions]] = ProbeOptions

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
        from aris.embed.probe import Probe, identity_check

        t0 = time.perf_counter()
        opts: ProbeOptions = self.opts(options)
        self.check(inputs, question, opts)
        if not opts.probe:
            raise ConfigError("task probe: name the probe (--probe NAME; see aris probe train)")
        ctx = ctx or RunContext()
        probe = Probe.load_named(_settings(ctx), opts.probe)
        embedder, emb = self._embed(inputs, ctx)
        identity_check(probe, embedder)
        proba = probe.predict_proba(emb.pooled[None, :])[0]
        top = int(np.argmax(proba))
        parsed = {
            "probe": opts.probe,
            "prediction": probe.classes[top],
            "probabilities": {c: _round(proba[i]) for i, c in enumerate(probe.classes)},
            "classes": probe.classes,
            "parts": len(emb.labels),
            "trained_metrics": probe.metrics,
        }
        text = f"{probe.classes[top]} ({proba[top]:.3f}) by probe {opts.probe!r} over {len(probe.classes)} classes."
        key = json.dumps(["probe", opts.probe, probe.digest], ensure_ascii=False)
        return self._result(embedder, inputs, text, parsed, key, t0, len(emb.labels))
