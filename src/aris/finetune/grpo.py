"""RL tuning with verifiable rewards: TRL's ``GRPOTrainer`` on the task's own scores.

``aris finetune DATASET --task T --method grpo`` samples ``num_generations`` replies per item,
scores each with the task's parser and evaluation protocol (:mod:`aris.finetune.rewards`), and
moves a LoRA adapter towards the better ones. Everything a reply meets at serving time is the same
here:

* the dataset is read as ``aris eval`` reads it (:func:`aris.eval.datasets.load_dataset`, or a folder
  of class folders for ``classify``), and each item becomes the work item eval would run
  (:meth:`aris.eval.protocol.Protocol.work_item`: question, task options, prompt set, thinking);
* inputs are read by :func:`aris.runner.prepare_inputs` and the prompt is the task's ``messages()``
  put into turns by :func:`aris.prompt.build_turns` and rendered by :func:`aris.prompt.render`,
  so the token ids sampled from are those an engine would send (TRL's own chat-template rendering
  is replaced by Aris's, see :func:`aris_processing`);
* a completion is decoded with its thought markers, the thought is split off, and only the answer
  is parsed and scored, as ``aris run`` and ``aris eval`` do.

The output folder is a LoRA adapter (``aris run/serve/batch/eval --adapter OUT``), its
checkpoints (``--resume`` continues at the same step), ``aris-finetune.json`` (resolved settings,
versions, dataset digest, rewards) and ``heldout.jsonl``: the items kept out of training, in eval's
layout, for ``aris eval heldout.jsonl --task T [--adapter OUT]``.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aris.errors import ConfigError, InputError
from aris.eval.datasets import EvalItem, load_dataset
from aris.eval.protocol import PROTOCOLS, Protocol, make_protocol
from aris.finetune.config import FinetuneConfig, GrpoConfig
from aris.finetune.dataset import is_class_folder, load_examples, split
from aris.finetune.rewards import RewardSet, Sample, decode_completion
from aris.inputs.base import PreparedInput
from aris.prompt import Turn, build_turns, render
from aris.tasks.base import Task
from aris.types import ImagePart, Message, Part, TextPart

if TYPE_CHECKING:
    import torch
    from PIL import Image

logger = logging.getLogger(__name__)

HELDOUT = "heldout.jsonl"
THINKING_COMPLETION_LENGTH = 1024  # Google's MedGemma RL notebook: answer MedQA within 1K tokens


# -- items ------------------------------------------------------------------------------------------


def load_items(config: GrpoConfig) -> tuple[list[EvalItem], list[str] | None]:
    """The dataset as eval items (and the classes of a class-folder dataset).

    A folder of class folders is a ``classify`` set: each file is one item whose reference is its
    class and whose choices are the class names (sorted), as SFT reads it. Anything else is read
    by eval's own loader, in eval's columns (``input``, ``question``, ``answer`` + the task's).
    """
    dataset = Path(config.dataset).expanduser()
    if is_class_folder(dataset):
        data = load_examples(dataset, config.task, question=config.question)
        classes = data.classes or []
        items = [
            EvalItem(
                id=str(Path(ex.inputs[0]).relative_to(dataset)),
                inputs=[Path(p) for p in ex.inputs],
                question=ex.question,
                answer=ex.label,
                extra={"choices": classes},
            )
            for ex in data.examples
        ]
        return items, classes
    if not dataset.exists():
        raise InputError(
            dataset, "no such dataset (a folder of class folders, a .csv/.jsonl, or a saved dataset)"
        )
    items = load_dataset(dataset)
    if not items:
        raise InputError(dataset, "the dataset has no rows")
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise InputError(dataset, f"id {it.id!r} appears twice; ids must be unique")
        seen.add(it.id)
    return items, None


@dataclass(frozen=True)
class _Row:
    index: int
    label: str | None


def split_items(
    items: list[EvalItem], classes: list[str] | None, val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Train/held-out indices: SFT's split (:func:`aris.finetune.dataset.split`) of the same items, so
    with the same seed and fraction an SFT adapter never saw the items GRPO holds out either.

    Stratified by class for a class-folder dataset, as SFT's is.
    """
    rows = [_Row(i, str(it.answer) if classes else None) for i, it in enumerate(items)]
    train, held = split(rows, val_fraction, seed)
    return [r.index for r in train], [r.index for r in held]


def write_heldout(path: Path, items: Sequence[EvalItem]) -> None:
    """The held-out items in eval's layout (absolute input paths), so ``aris eval`` runs exactly them."""
    with path.open("w", encoding="utf-8") as f:
        for it in items:
            row: dict[str, Any] = {
                "id": it.id,
                "input": "|".join(str(Path(p).resolve()) for p in it.inputs),
                "question": it.question,
                "answer": it.answer,
            }
            if it.subgroup:
                row["subgroup"] = it.subgroup
            row.update({k: v for k, v in it.extra.items() if k not in row})
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


# -- prompts ----------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """One item ready to sample from: what the rewards need and the exact turns an engine gets."""

    sample: Sample
    turns: list[Turn]


def inference_turns(
    task: Task, inputs: list[PreparedInput], question: str | None, options: dict[str, Any]
) -> list[Turn]:
    """The turns :meth:`aris.tasks.base.Task.run` sends for these inputs (its first call)."""
    from aris.runner import check_options

    opts = check_options(task, options)
    question = task.check(inputs, question, opts)
    messages = task.messages(inputs, question, opts)
    think = opts.think if opts.think is not None else task.think
    return build_turns(messages, think=think)


class RlData:
    """The items of a run and how each becomes a prompt, as ``aris eval`` would run it.

    Inputs are read lazily, one generation batch at a time (a CT is never held for the whole set).
    """

    def __init__(self, task: Task, items: list[EvalItem], protocol: Protocol | None, config: GrpoConfig):
        self.task = task
        self.items = items
        self.protocol = protocol
        self.config = config
        self._cache: dict[int, Prepared] = {}

    def work(self, index: int) -> tuple[tuple[Path | str, ...], str | None, str, dict[str, Any], Any]:
        """(paths, question, kind, task options, reference) of an item."""
        item = self.items[index]
        if self.protocol is not None:
            w = self.protocol.work_item(item)
            ref = self.protocol.refs.get(item.id)
            return w.paths, w.question, w.kind, dict(w.task_options), ref
        options = {k: v for k, v in item.extra.items() if k != "kind" and v not in (None, "")}
        if self.config.think is not None:
            options["think"] = self.config.think
        kind = str(item.extra.get("kind") or "auto")
        return tuple(item.inputs), item.question, kind, options, item.answer

    def prepare(self, index: int) -> Prepared:
        from aris.runner import prepare_inputs

        paths, question, kind, options, ref = self.work(index)
        if self.config.kind != "auto":
            kind = self.config.kind
        inputs = prepare_inputs(self.task, list(paths), kind=kind, read_options=self.config.input_options)
        if self.task.name == "lab-extract" and options.get("prompts", "app") == "app":
            pages = sum(len(i.arrays) or 1 for i in inputs)
            if pages > 1:
                raise InputError(
                    paths[0] if paths else self.config.dataset,
                    f"{pages} pages: lab-extract's app prompts send one call per page, and one sampled "
                    "reply cannot be scored against the whole report; use --prompts report",
                )
        turns = inference_turns(self.task, inputs, question, options)
        return Prepared(Sample(self.items[index], inputs, options, ref), turns)

    def begin_batch(self, rows: Sequence[int]) -> None:
        """Prepare a generation batch's items (each once), dropping the previous batch's."""
        self._cache = {r: self._cache.get(r) or self.prepare(r) for r in dict.fromkeys(rows)}

    def get(self, index: int) -> Prepared:
        if index not in self._cache:
            self._cache[index] = self.prepare(index)
        return self._cache[index]

    def sample(self, index: int) -> Sample:
        return self.get(index).sample


# -- TRL's side of the prompt -----------------------------------------------------------------------


def trl_prompt(turns: list[Turn]) -> tuple[list[dict[str, Any]], list[Image.Image]]:
    """Aris turns as TRL's conversational prompt (image placeholders) and the images in order.

    The folded system text goes back out as a ``system`` message, so :func:`turns_from_trl`
    rebuilds exactly these turns (as :func:`aris.prompt.to_openai_messages` does for servers).
    """
    messages: list[dict[str, Any]] = []
    if turns and turns[0].prefix:
        messages.append({"role": "system", "content": [{"type": "text", "text": turns[0].prefix[:-2]}]})
    images = []
    for turn in turns:
        content: list[dict[str, Any]] = []
        for part in turn.parts:
            if isinstance(part, ImagePart):
                content.append({"type": "image"})
                images.append(part.image)
            else:
                content.append({"type": "text", "text": part.text})
        messages.append({"role": "assistant" if turn.role == "model" else "user", "content": content})
    return messages, images


def turns_from_trl(messages: Sequence[dict[str, Any]]) -> list[Turn]:
    """TRL's conversational prompt (images filled in) back as the Aris turns it came from."""
    out: list[Message] = []
    for m in messages:
        content = m.get("content")
        parts: list[Part] = []
        if isinstance(content, str):
            parts.append(TextPart(content))
        else:
            for c in content or []:
                if c.get("type") == "image":
                    parts.append(ImagePart(c["image"]))
                elif c.get("type") == "text":
                    parts.append(TextPart(str(c.get("text", ""))))
                else:
                    raise ConfigError(f"unsupported prompt part {c.get('type')!r} in a GRPO prompt")
        out.append(Message(m["role"], parts))
    return build_turns(out, think=False)  # the think prefix is already in the system text


def aris_processing(processing_class: Any, pixel_dtype: Any = None) -> Any:
    """A copy of the model's processor (or tokenizer) that renders chats with :func:`aris.prompt.render`.

    TRL renders prompts with the processor's ``apply_chat_template`` and tokenizes the rendered text
    with ``__call__``; here both go through Aris's prompt builder, so generation and the loss see the
    ids an Aris engine sends: ``<bos>`` once (``add_special_tokens`` off, the text starts with it),
    each ``<start_of_image>`` expanded by the processor into its soft tokens.
    """
    base = type(processing_class)
    is_processor = hasattr(processing_class, "tokenizer")

    class ArisRendered(base):  # type: ignore[misc,valid-type]
        def apply_chat_template(
            self,
            conversation: Any,
            chat_template: Any = None,
            *,
            tokenize: bool = False,
            return_dict: bool = False,
            add_generation_prompt: bool = True,
            continue_final_message: bool = False,
            padding: Any = False,
            return_tensors: Any = None,
            **kwargs: Any,
        ) -> Any:
            batched = bool(conversation) and isinstance(conversation[0], list | tuple)
            convs = conversation if batched else [conversation]
            texts, images = [], []
            for conv in convs:
                if continue_final_message or not add_generation_prompt or conv[-1]["role"] != "user":
                    raise ConfigError("GRPO prompts end with the user's turn; the model's reply is sampled")
                turns = turns_from_trl(conv)
                texts.append(render(turns))
                images.append([img for t in turns for img in t.images])
            if not tokenize:
                return texts if batched else texts[0]
            kw: dict[str, Any] = {"padding": padding, "return_tensors": return_tensors}
            if is_processor:
                out = self(text=texts, images=images if any(images) else None, **kw)
            else:
                out = self(texts, **kw)
            if return_dict:
                return out
            return out["input_ids"] if batched else out["input_ids"][0]

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            kwargs["add_special_tokens"] = False  # Aris's rendered text already starts with <bos>
            out = super().__call__(*args, **kwargs)
            pixels = out.get("pixel_values") if hasattr(out, "get") else None
            if pixel_dtype is not None and pixels is not None and hasattr(pixels, "to"):
                out["pixel_values"] = pixels.to(pixel_dtype)
            return out

    ArisRendered.__name__ = ArisRendered.__qualname__ = base.__name__
    shim = copy.copy(processing_class)
    shim.__class__ = ArisRendered
    return shim


# -- training ---------------------------------------------------------------------------------------


def as_grpo(config: FinetuneConfig) -> GrpoConfig:
    """``config`` as a :class:`GrpoConfig` (a plain FinetuneConfig with ``method='grpo'`` is upgraded)."""
    if isinstance(config, GrpoConfig):
        return config
    return GrpoConfig(**config.model_dump(exclude_unset=True))


def completion_length(config: GrpoConfig, task: Task, think: bool) -> int:
    """The sampled reply's token budget: the configured one, else 1024 when the task thinks (Google's
    notebook), else the task's own ``max_new_tokens`` (the budget ``aris run`` gives it)."""
    if config.max_completion_length is not None:
        return config.max_completion_length
    return THINKING_COMPLETION_LENGTH if think else int(task.max_new_tokens)


def _grpo_args(
    config: GrpoConfig, out: Path, device: str, dtype: torch.dtype, max_completion: int, weights: list[float]
) -> Any:
    import torch
    from trl import GRPOConfig as TrlGRPOConfig

    from aris.finetune.train import checkpointing_kwargs

    return TrlGRPOConfig(
        output_dir=str(out),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        **checkpointing_kwargs(TrlGRPOConfig, config.gradient_checkpointing),
        optim=config.optim,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        max_grad_norm=config.max_grad_norm,
        bf16=dtype == torch.bfloat16,
        use_cpu=device == "cpu",
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,  # rows are item indices; prompts are built per batch
        num_generations=config.num_generations,
        max_completion_length=max_completion,
        beta=config.beta,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        reward_weights=weights,
        dataloader_num_workers=config.num_workers,
        dataloader_pin_memory=device == "cuda",
    )


def _trainer_class() -> type:
    """``GRPOTrainer`` with Aris's prompts: each generation batch's items are read and prompted here."""
    from trl import GRPOTrainer

    class ArisGRPOTrainer(GRPOTrainer):  # type: ignore[misc]
        aris_data: RlData

        def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
            rows = [int(x["row"]) for x in inputs]
            self.aris_data.begin_batch(rows)
            ready = []
            for x, row in zip(inputs, rows, strict=True):
                prompt, images = trl_prompt(self.aris_data.get(row).turns)
                ready.append({**x, "prompt": prompt, "images": images})
            return super()._generate_and_score_completions(ready)  # type: ignore[no-any-return]

        def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
            # The processor is written once, beside the final adapter (its tokenizer is 33 MB).
            processing: Any = self.processing_class  # type: ignore[has-type]
            self.processing_class = None
            try:
                super()._save(output_dir, state_dict)
            finally:
                self.processing_class = processing

    return ArisGRPOTrainer


def _reward_lines(state: Any, logs: dict[str, float]) -> list[str]:
    """Step, reward mean and std, KL, loss."""
    if "reward" not in logs:
        return []
    kl = f"{logs['kl']:.4g}" if logs.get("kl") is not None else "off (beta 0)"
    return [
        f"step {state.global_step}/{state.max_steps} reward {logs['reward']:.4f} ± "
        f"{logs.get('reward_std') or 0.0:.4f} kl {kl} loss {logs.get('loss', float('nan')):.4g}"
    ]


def _load_policy(
    config: GrpoConfig, device: str, dtype: Any, quant: Any
) -> tuple[Any, Any, Path, dict[str, Any] | None]:
    """The base model, and with ``from_sft`` the SFT adapter over it, trainable (TRL keeps a frozen
    copy as the KL reference when beta > 0)."""
    from aris.finetune.train import _load_model

    model, processor, folder = _load_model(config, device, dtype, quant)
    if config.from_sft is None:
        return model, processor, folder, None
    from peft import PeftModel

    from aris.digests import folder_digest
    from aris.finetune.merge import _adapter_folder, base_of

    sft = _adapter_folder(Path(config.from_sft))
    trained_on = Path(base_of(sft)).expanduser()
    if trained_on.is_dir() and trained_on.resolve() != folder.resolve():
        raise ConfigError(
            f"{sft}: this SFT adapter was trained on {trained_on}, not on {config.base}; pass --base {trained_on}"
        )
    model = PeftModel.from_pretrained(model, str(sft), is_trainable=True)
    peft_config = model.peft_config["default"]
    info = {
        "path": str(sft),
        "digest": folder_digest(sft),
        "lora_r": peft_config.r,
        "lora_alpha": peft_config.lora_alpha,
        "modules_to_save": sorted(peft_config.modules_to_save or []),
    }
    logger.info("starting from the SFT adapter (r=%d): its LoRA settings apply", peft_config.r)
    return model, processor, folder, info


def train_grpo(config: FinetuneConfig, *, resume: bool = False, callbacks: Sequence[Any] = ()) -> Path:
    """GRPO on ``config.dataset`` with the task's rewards; returns the adapter folder (``config.out``)."""
    from aris.finetune.dataset import dataset_digest
    from aris.finetune.train import (
        RECORD,
        _check_output,
        _lora_config,
        _write_record,
        library_versions,
        log_callback,
        qlora_quantization,
        resolve_device,
        resolve_dtype,
    )
    from aris.tasks import get_task

    cfg = as_grpo(config)
    out = Path(cfg.out).expanduser()
    device = resolve_device(cfg.device)
    quant = qlora_quantization(device) if cfg.qlora else None
    dtype = resolve_dtype(cfg.dtype, device, cfg.qlora)
    if (cfg.batch_size * cfg.grad_accum) % cfg.num_generations:
        raise ConfigError(
            f"batch_size x grad_accum ({cfg.batch_size} x {cfg.grad_accum}) must be a multiple of "
            f"num_generations ({cfg.num_generations}): each step scores whole groups of completions"
        )
    if cfg.from_sft is not None and not (Path(cfg.from_sft).expanduser() / "adapter_config.json").is_file():
        raise ConfigError(f"{cfg.from_sft}: no adapter_config.json; pass the folder `aris finetune` wrote")

    task = get_task(cfg.task)
    items, classes = load_items(cfg)
    protocol = (
        make_protocol(cfg.task, items, Path(cfg.dataset), cfg.think, prompts=cfg.prompts, mode=cfg.mode)
        if cfg.task in PROTOCOLS
        else None
    )
    if protocol is None and (cfg.prompts != "app" or cfg.mode):
        raise ConfigError(f"task {cfg.task} has no eval protocol: --prompts and --mode do not apply")
    data = RlData(task, items, protocol, cfg)
    train_idx, held_idx = split_items(items, classes, cfg.val_fraction, cfg.seed)
    prompts_per_step = cfg.batch_size * cfg.grad_accum // cfg.num_generations
    if len(train_idx) < prompts_per_step:
        raise ConfigError(
            f"{len(train_idx)} training items, but each step samples {prompts_per_step} different prompts "
            f"(batch_size x grad_accum / num_generations); add items or lower batch_size/grad_accum"
        )
    digest = dataset_digest(load_examples(cfg.dataset, cfg.task, question=cfg.question))
    checkpoint = _check_output(out, resume, digest)

    think = bool(data.get(train_idx[0]).sample.options.get("think", task.think))  # fails now on a bad file
    max_completion = completion_length(cfg, task, think)
    logger.info("items: %d train, %d held out", len(train_idx), len(held_idx))

    from datasets import Dataset
    from transformers import PrinterCallback, ProgressCallback

    model, processor, folder, sft_info = _load_policy(cfg, device, dtype, quant)
    tokenizer = getattr(processor, "tokenizer", processor)
    rewards = RewardSet(
        task, protocol, cfg.rewards, sample=data.sample, decode=lambda ids: decode_completion(tokenizer, ids)
    )
    trainer_cls = _trainer_class()
    trainer = trainer_cls(
        model=model,
        reward_funcs=rewards.functions(),
        args=_grpo_args(cfg, out, device, dtype, max_completion, [rewards.weights[n] for n in rewards.names]),
        train_dataset=Dataset.from_list([{"row": i} for i in train_idx]),
        processing_class=aris_processing(processor, dtype),
        peft_config=None if sft_info else _lora_config(cfg, model),
        callbacks=[log_callback(_reward_lines), *callbacks],
    )
    trainer.aris_data = data
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    peft_model: Any = trainer.model
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info("trainable parameters: %d of %d", trainable, total)

    out.mkdir(parents=True, exist_ok=True)
    write_heldout(out / HELDOUT, [items[i] for i in held_idx])
    record: dict[str, Any] = {
        "aris_finetune": 1,
        "method": "grpo",
        "config": cfg.model_dump(mode="json"),
        "base_folder": str(folder),
        "versions": library_versions(),
        "dataset": {
            "digest": digest,
            "examples": len(items),
            "train": len(train_idx),
            "validation": len(held_idx),
            "classes": classes,
            "heldout": HELDOUT if held_idx else None,
        },
        "prompt": {"task": cfg.task, "think": think, "prompts": cfg.prompts, "mode": cfg.mode},
        "grpo": {
            "rewards": dict(rewards.weights),  # the weights in effect (no "correct" without a protocol)
            "num_generations": cfg.num_generations,
            "max_completion_length": max_completion,
            "beta": cfg.beta,
            "temperature": cfg.temperature,
            "protocol": protocol.record() if protocol else None,
        },
        "from_sft": sft_info,
        "hardware": {"device": device, "dtype": str(dtype).removeprefix("torch."), "qlora": cfg.qlora},
        "trainable_parameters": trainable,
        "complete": False,
    }
    _write_record(out, record)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    final = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in getattr(final, "peft_config", {}):
        final.delete_adapter("ref")  # TRL's frozen KL reference; the engine loads the trained one
    trainer.save_model(str(out))
    processor.save_pretrained(str(out))
    trainer.save_state()
    history = [h for h in trainer.state.log_history if "reward" in h]
    record["complete"] = True
    record["result"] = {
        "global_step": trainer.state.global_step,
        "reward_first": history[0]["reward"] if history else None,
        "reward_last": history[-1]["reward"] if history else None,
        "seconds": round(time.perf_counter() - t0, 2),
        "resumed_from_step": int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint else None,
    }
    _write_record(out, record)
    logger.info(
        "GRPO adapter written after %d steps in %.1fs (%s)",
        trainer.state.global_step,
        time.perf_counter() - t0,
        RECORD,
    )
    return out
