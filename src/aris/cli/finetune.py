"""``aris finetune DATASET --task T --out DIR`` (LoRA/QLoRA) and ``aris finetune merge ADAPTER --out DIR``.

Every setting has a flag; flags win over ``--config FILE.yaml|.toml``, which wins over Google's
recipe defaults (:mod:`aris.finetune.config`). ``--method grpo`` is RL tuning on the task's own
scores (:mod:`aris.finetune.grpo`). Progress is a rich bar driven by a TrainerCallback: the loss for
SFT, the reward mean ± std and the KL for GRPO.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from aris.cli.app import app, console, err_console


class _TrainByDefault(TyperGroup):
    """``aris finetune DATASET ...`` means ``aris finetune train DATASET ...``; ``merge`` is the other verb."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["train", *args]
        return super().parse_args(ctx, args)


finetune_app = typer.Typer(
    cls=_TrainByDefault,
    help="Fine-tune MedGemma on your own studies (LoRA/QLoRA), and merge an adapter into its base.",
    no_args_is_help=True,
)
app.add_typer(finetune_app, name="finetune")


def _progress_callback() -> Any:
    """A transformers TrainerCallback drawing a rich progress bar with the latest loss and eval loss."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.progress: Progress | None = None
            self.task: Any = None
            self.loss = "loss –"
            self.eval = ""
            self.reward = ""  # GRPO: reward mean ± std and KL, per logged step

        def _describe(self) -> str:
            if self.reward:
                return f"grpo  {self.reward}"
            return f"training  {self.loss}{self.eval}"

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=err_console,
            )
            self.progress.start()
            # On --resume the state already holds the checkpoint's step: the bar starts there.
            self.task = self.progress.add_task(
                self._describe(), total=state.max_steps, completed=state.global_step
            )

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step, description=self._describe())

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
        ) -> None:
            logs = logs or {}
            if "loss" in logs:
                self.loss = f"loss {logs['loss']:.4f}"
            if "eval_loss" in logs:
                self.eval = f"  eval {logs['eval_loss']:.4f}"
            if "reward" in logs:
                kl = logs.get("kl")
                no_kl = "off (beta 0)" if getattr(args, "beta", None) == 0 else "–"
                self.reward = (
                    f"reward {logs['reward']:.3f} ± {logs.get('reward_std') or 0.0:.3f}  "
                    f"kl {no_kl if kl is None else f'{kl:.4f}'}"
                )
            if self.progress is not None:
                self.progress.update(self.task, description=self._describe())

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    return RichProgress()


def _key_value(option: str) -> tuple[str, Any]:
    import json

    key, sep, value = option.partition("=")
    if not sep or not key.strip():
        raise typer.BadParameter(f"{option!r}: expected KEY=VALUE", param_hint="--input-option")
    try:
        return key.strip(), json.loads(value)  # numbers and booleans keep their type
    except json.JSONDecodeError:
        return key.strip(), value


def _reward_weight(option: str) -> tuple[str, float]:
    name, sep, value = option.rpartition("=")
    try:
        if not sep or not name.strip():
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise typer.BadParameter(
            f"{option!r}: expected NAME=WEIGHT (correct=1, format=0.2, mymodule:myfn=0.5)",
            param_hint="--reward",
        ) from None


@finetune_app.command("train")
def train_cmd(
    dataset: Annotated[
        Path,
        typer.Argument(help="Class folders, a .csv/.jsonl (input, question, answer), or a saved HF dataset."),
    ],
    method: Annotated[
        str | None,
        typer.Option("--method", help="sft (learn the answers) or grpo (RL on the task's scores) \\[sft]."),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option("--task", "-t", help="Task whose prompt the examples use (classify, vqa, ask...)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for the adapter, checkpoints and aris-finetune.json."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML or TOML file of settings (flags win).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out.")
    ] = False,
    base: Annotated[
        str | None, typer.Option("--base", help="Base model: HF id on this machine or a folder.")
    ] = None,
    qlora: Annotated[
        bool | None, typer.Option("--qlora/--no-qlora", help="4-bit NF4 base (CUDA, bitsandbytes).")
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Input kind: auto|cxr|image|ct|mri|wsi|pdf.")
    ] = None,
    input_option: Annotated[
        list[str] | None,
        typer.Option("--input-option", help="Reader option KEY=VALUE, as inference takes it. Repeat."),
    ] = None,
    question: Annotated[
        str | None, typer.Option("--question", help="Question for class-folder examples.")
    ] = None,
    val_fraction: Annotated[
        float | None, typer.Option("--val-fraction", help="Held out for eval loss [0.1].")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Split, init and data order [42].")] = None,
    mask_prompt: Annotated[
        bool | None, typer.Option("--mask-prompt/--no-mask-prompt", help="Learn only the answer.")
    ] = None,
    lora_r: Annotated[int | None, typer.Option("--lora-r", help="LoRA rank [16; grpo 64].")] = None,
    lora_alpha: Annotated[int | None, typer.Option("--lora-alpha", help="LoRA alpha [16; grpo 64].")] = None,
    lora_dropout: Annotated[float | None, typer.Option("--lora-dropout", help="LoRA dropout [0.05].")] = None,
    target_modules: Annotated[
        str | None, typer.Option("--target-modules", help="'all-linear' or comma-separated names.")
    ] = None,
    modules_to_save: Annotated[
        str | None,
        typer.Option(
            "--modules-to-save",
            help="Comma-separated \\[lm_head,embed_tokens; grpo none]; 'none' for a LoRA-only adapter (vLLM).",
        ),
    ] = None,
    tie_embeddings: Annotated[
        bool | None,
        typer.Option("--tie-embeddings/--no-tie-embeddings", help="Keep lm_head tied to embed_tokens."),
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option("--lr", help="Peak learning rate [2e-4; grpo 5e-6].")
    ] = None,
    lr_scheduler: Annotated[str | None, typer.Option("--lr-scheduler", help="Scheduler \\[linear].")] = None,
    warmup_ratio: Annotated[
        float | None, typer.Option("--warmup-ratio", help="Warm-up share [0.03; grpo 0].")
    ] = None,
    max_grad_norm: Annotated[
        float | None, typer.Option("--max-grad-norm", help="Clipping [0.3; grpo 1.0].")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Per-device batch [4; grpo 3 completions].")
    ] = None,
    grad_accum: Annotated[int | None, typer.Option("--grad-accum", help="Gradient accumulation [4].")] = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="Epochs [1].")] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="Stop after N steps (overrides epochs).")
    ] = None,
    gradient_checkpointing: Annotated[
        bool | None, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="\\[on]")
    ] = None,
    attn_implementation: Annotated[
        str | None, typer.Option("--attn", help="Attention implementation \\[eager].")
    ] = None,
    optim: Annotated[str | None, typer.Option("--optim", help="Optimizer \\[adamw_torch_fused].")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda.")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="auto | bfloat16 | float32.")] = None,
    logging_steps: Annotated[int | None, typer.Option("--logging-steps", help="[10; grpo 1]")] = None,
    eval_steps: Annotated[int | None, typer.Option("--eval-steps", help="[50]")] = None,
    save_steps: Annotated[
        int | None, typer.Option("--save-steps", help="Checkpoint every N steps [50].")
    ] = None,
    save_total_limit: Annotated[
        int | None, typer.Option("--save-total-limit", help="Checkpoints kept [2].")
    ] = None,
    eval_batch_size: Annotated[int | None, typer.Option("--eval-batch-size", help="\\[batch size]")] = None,
    num_workers: Annotated[int | None, typer.Option("--num-workers", help="DataLoader workers [0].")] = None,
    # -- GRPO (--method grpo) --
    num_generations: Annotated[
        int | None, typer.Option("--num-generations", help="GRPO group size: replies per prompt [4].")
    ] = None,
    max_completion_length: Annotated[
        int | None,
        typer.Option(
            "--max-completion-length", help="GRPO reply budget [1024 when the task thinks, else the task's]."
        ),
    ] = None,
    beta: Annotated[
        float | None, typer.Option("--beta", help="GRPO KL coefficient [0: TRL's default, no KL].")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option("--temperature", help="GRPO sampling temperature [1.0].")
    ] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", help="GRPO nucleus sampling [1.0].")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="GRPO top-k sampling [0: off].")] = None,
    think: Annotated[
        bool | None, typer.Option("--think/--no-think", help="GRPO: thinking while sampling \\[the task's].")
    ] = None,
    prompts: Annotated[
        str | None,
        typer.Option("--prompts", help="GRPO: app (aris run's prompts) or report (aris eval's) \\[app]."),
    ] = None,
    mode: Annotated[
        str | None, typer.Option("--mode", help="GRPO: the eval protocol's mode (vqa: open|yes-no ...).")
    ] = None,
    reward: Annotated[
        list[str] | None,
        typer.Option(
            "--reward",
            help="GRPO reward weight NAME=WEIGHT: correct, format or module:function \\[correct=1, format=0]. Repeat.",
        ),
    ] = None,
    from_sft: Annotated[
        Path | None, typer.Option("--from-sft", help="GRPO: start from this SFT adapter folder.")
    ] = None,
) -> None:
    """Train a LoRA (or QLoRA) adapter on DATASET; `aris finetune merge` folds it into the base."""
    # Every parameter but these is a setting; None means the flag was not given.
    flags = {k: v for k, v in locals().items() if k not in ("config", "resume", "input_option", "reward")}
    from aris.finetune.config import GrpoConfig, resolve_config
    from aris.finetune.train import RECORD, train

    if input_option:
        flags["input_options"] = dict(_key_value(o) for o in input_option)
    if reward:
        flags["rewards"] = dict(_reward_weight(r) for r in reward)
    cfg = resolve_config(config, **flags)
    where = train(cfg, resume=resume, callbacks=[_progress_callback()])
    console.print(f"adapter: [bold]{where}[/]  (settings and versions in {RECORD})", highlight=False)
    console.print(
        f"use it: aris ask --model {cfg.base} --adapter {where} ...  ·  merge: aris finetune merge {where} --out DIR",
        highlight=False,
    )
    held = where / "heldout.jsonl"
    if isinstance(cfg, GrpoConfig) and held.is_file() and held.stat().st_size:
        mode = f" --mode {cfg.mode}" if cfg.mode else ""
        console.print(  # one unwrapped line, to copy
            f"held-out items: aris eval {held} --task {cfg.task} --prompts {cfg.prompts}{mode} "
            f"--engine transformers --model {cfg.base} --adapter {where}  (and without --adapter for the base)",
            highlight=False,
            soft_wrap=True,
        )


@finetune_app.command("merge")
def merge_cmd(
    adapter: Annotated[Path, typer.Argument(help="The adapter folder `aris finetune` wrote.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the merged model.")],
    base: Annotated[
        str | None, typer.Option("--base", help="Base model (default: the one the adapter was trained on).")
    ] = None,
    dtype: Annotated[
        str, typer.Option("--dtype", help="auto (the base's own) | bfloat16 | float32.")
    ] = "auto",
) -> None:
    """Write base + adapter as one plain model folder (weights and processor)."""
    from aris.finetune.merge import merge

    with err_console.status("merging adapter into base…"):
        where = merge(adapter, out, base=base, dtype=dtype)
    console.print(f"merged model: [bold]{where}[/]  (aris ask --model {where} ...)", highlight=False)
