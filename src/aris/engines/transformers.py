"""MedGemma on Hugging Face transformers: the reference engine, images and text, on CPU or CUDA.

The model is loaded only from this machine (``local_files_only``): a local folder, the folder
``aris pull`` wrote under ``$ARIS_HOME/models``, or the Hugging Face cache. Generation runs on a
worker thread feeding a ``TextIteratorStreamer``; closing the stream sets an event that a
stopping criterion watches, so an abandoned request stops after the current forward step.
"""

from __future__ import annotations

import copy
import gc
import logging
import os
import re
import threading
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aris.engines.base import IMAGE_TOKENS, Capabilities, Engine, Reply, images_digest
from aris.errors import BudgetError, ConfigError, EngineError, ModelNotFoundError, UnsupportedDtypeError
from aris.prompt import Turn, render
from aris.types import GenerationParams

if TYPE_CHECKING:
    import torch
    import xgrammar

    from aris.config import ArisSettings

logger = logging.getLogger(__name__)

EOS_IDS = (1, 106)  # <eos>, <end_of_turn>: Gemma 3 ends a reply with either
END_OF_IMAGE_ID = 256000
IMAGE_SOFT_TOKEN_ID = 262144
# Removed from replies. The thought markers <unused94>/<unused95> are special tokens too, so
# decoding keeps every special token and drops only these: the thought splitter needs the markers.
END_MARKERS = ("<end_of_turn>", "<eos>", "<pad>")
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

FP16_REFUSAL = (
    "float16 is refused: Gemma 3 models (MedGemma included) give empty or garbage output in fp16 because "
    "activations overflow its range (transformers issue 36822). Use dtype bfloat16 (CUDA) or float32 (CPU), "
    "or quantization 4bit on CUDA to save memory."
)


def clean_reply(text: str) -> str:
    """Drop end-of-turn, eos and pad markers; keep everything else, thought markers included."""
    for marker in END_MARKERS:
        text = text.replace(marker, "")
    return text


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the earliest stop string (OpenAI semantics: the stop string is not returned)."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return text if cut < 0 else text[:cut]


class _StopFilter:
    """Streaming counterpart of :func:`truncate_at_stop`.

    Holds back only a tail that could still become a stop string, so nothing past a stop
    string is ever emitted, however the chunks split it.
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = [s for s in stop if s]
        self.buf = ""
        self.done = False

    def feed(self, chunk: str) -> str:
        if not self.stop:
            return chunk
        self.buf += chunk
        cut = truncate_at_stop(self.buf, self.stop)
        if len(cut) < len(self.buf):
            self.done = True
            self.buf = ""
            return cut
        hold = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self.buf)), hold, -1):
                if s.startswith(self.buf[-n:]):
                    hold = n
                    break
        out, self.buf = self.buf[: len(self.buf) - hold], self.buf[len(self.buf) - hold :]
        return out

    def finish(self) -> str:
        out, self.buf = self.buf, ""
        return out


def resolve_model(model: str) -> Path:
    """The folder holding ``model``, found on this machine only; never downloads.

    Looks at a local path, then ``$ARIS_HOME/models/<org>--<name>`` (where ``aris pull`` puts
    a release), then the Hugging Face cache.
    """
    from aris.models import not_found

    path = Path(model).expanduser()
    if path.is_file():
        hint = " (a GGUF file: use --engine llamacpp)" if path.suffix == ".gguf" else ""
        raise EngineError(f"{model}: the transformers engine loads a model folder, not a file{hint}")
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{model}: no config.json; this is not a transformers model folder")
        return path
    if not _HF_ID.match(model):
        raise ModelNotFoundError(
            f"{model}: no such folder. Pass a local model folder, or a Hugging Face id that is already "
            "on this machine (aris pull <id>)"
        )
    pulled = _models_dir() / model.replace("/", "--")
    if (pulled / "config.json").exists():
        return pulled
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        cached = Path(snapshot_download(model, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise not_found(model) from None
    if not (cached / "config.json").exists():
        raise not_found(model)
    return cached


def _models_dir() -> Path:
    try:
        from aris.config import ArisSettings

        return ArisSettings().models_dir
    except Exception:  # an unreadable config file must not hide the model lookup
        from aris.config import default_home

        return Path(os.environ.get("ARIS_HOME", default_home())) / "models"


def _torch_dtype(dtype: str, device: str) -> torch.dtype:
    import torch

    name = str(dtype).removeprefix("torch.").lower()
    if name in ("float16", "fp16", "half"):
        raise UnsupportedDtypeError(FP16_REFUSAL)
    if name == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    table = {
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float32": torch.float32,
        "fp32": torch.float32,
    }
    if name not in table:
        raise EngineError(f"unknown dtype {dtype!r}; use auto, bfloat16 or float32")
    return table[name]


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise EngineError(
            "device cuda was asked for but torch sees no CUDA GPU (a CPU build of torch, or no driver); "
            "use --device cpu or install the CUDA build of torch"
        )
    if device not in ("cpu", "cuda"):
        raise EngineError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


def nf4_config() -> Any:
    """Google's QLoRA quantization: 4-bit NF4, double quantization, bf16 compute."""
    try:
        import bitsandbytes  # noqa: F401 - transformers needs it at load; fail here with the fix
    except ImportError:
        raise EngineError(
            "quantization 4bit needs bitsandbytes, which is not installed: pip install 'aris[cuda]'"
        ) from None
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def _check_adapter(adapter: str | os.PathLike[str]) -> Path:
    path = Path(adapter).expanduser()
    if not path.is_dir():
        raise EngineError(
            f"{adapter}: adapter folder not found; pass the folder `aris finetune` wrote "
            "(it holds adapter_config.json and adapter_model.safetensors)"
        )
    if not (path / "adapter_config.json").exists():
        raise EngineError(f"{adapter}: no adapter_config.json; this is not a PEFT LoRA adapter folder")
    return path


def _event_stop(event: threading.Event) -> Any:
    """A stopping criterion that ends every sequence once ``event`` is set (client gone, stop string)."""
    import torch
    from transformers import StoppingCriteria

    class EventStop(StoppingCriteria):  # type: ignore[misc]  # transformers is typed as Any here
        def __call__(
            self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kw: Any
        ) -> torch.BoolTensor:
            return torch.full(  # type: ignore[return-value]
                (input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device
            )

    return EventStop()


class TransformersEngine(Engine):
    """A MedGemma checkpoint (or any Gemma 3) loaded with transformers.

    Vision checkpoints load with ``AutoModelForImageTextToText`` + ``AutoProcessor``; text-only
    ones (MedGemma 27B text) with ``AutoModelForCausalLM`` + ``AutoTokenizer``.
    """

    kind = "transformers"
    settings_used = ("model", "device", "dtype", "quantization", "adapter")

    @classmethod
    def from_settings(cls, settings: ArisSettings) -> TransformersEngine:
        if not settings.model:
            raise ConfigError(
                "no model: pass --model (a Hugging Face id already on this machine, or a local folder) "
                "or set ARIS_MODEL"
            )
        return cls(
            settings.model,
            device=settings.device,
            dtype=settings.dtype,
            quantization=settings.quantization,
            adapter=settings.adapter,
        )

    def identity(self) -> dict[str, Any]:
        from aris.digests import folder_digest

        return {
            "engine": self.kind,
            "model": self.model_id,
            "weights": folder_digest(self.folder),
            "adapter": folder_digest(self.adapter) if self.adapter else None,
            "quantization": self.quantization,
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        quantization: str = "none",
        adapter: str | os.PathLike[str] | None = None,
        max_images: int = 128,
        prefix_cache: bool = True,
    ) -> None:
        super().__init__(model)
        # Settings are checked before anything heavy loads, so a wrong flag fails in a second.
        self.device = _resolve_device(device)
        self.dtype = _torch_dtype(dtype, self.device)
        if quantization not in ("none", "4bit"):
            raise EngineError(f"unknown quantization {quantization!r}; use none or 4bit")
        self.quantization = quantization
        if quantization == "4bit":
            if self.device != "cuda":
                raise EngineError(
                    "quantization 4bit (NF4 via bitsandbytes) needs a CUDA GPU and none is in use here; "
                    "use quantization none (float32 on CPU), or a quantized GGUF with --engine llamacpp"
                )
            quant_config = nf4_config()
            self.dtype = _torch_dtype("bfloat16", self.device)
        adapter_dir = _check_adapter(adapter) if adapter is not None else None
        self.adapter = str(adapter_dir) if adapter_dir else None
        if adapter_dir is not None:
            # The answers are the adapter's: a result, an SR and the server's model list say so.
            self.model_id = f"{model}+{adapter_dir.name}"
        self.max_images = max_images
        self.model: Any = None
        folder = resolve_model(model)
        self.folder = folder

        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForImageTextToText,
            AutoProcessor,
            AutoTokenizer,
        )

        t0 = time.perf_counter()
        kwargs: dict[str, Any] = {"local_files_only": True, "dtype": self.dtype}
        if quantization == "4bit":
            kwargs.update(quantization_config=quant_config, device_map={"": 0})
        elif self.device == "cuda":
            kwargs["device_map"] = "cuda"  # weights go straight to the GPU, no CPU copy first
        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
            self.vision = getattr(config, "vision_config", None) is not None
            if self.vision:
                self.model = AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
                self.processor: Any = AutoProcessor.from_pretrained(folder, local_files_only=True)
                self.tokenizer: Any = self.processor.tokenizer
            else:
                self.model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
                self.processor = None
                self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise EngineError(f"{model}: cannot load with transformers: {e}") from e
        if adapter_dir is not None:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, str(adapter_dir), is_trainable=False)
            if quantization == "none":
                # Folding the LoRA into the weights makes inference as fast as the base model.
                self.model = self.model.merge_and_unload()
        self.model.eval()
        # Batched generation pads on the left so every prompt ends where generation starts.
        self.tokenizer.padding_side = "left"
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        text_config = config.get_text_config()
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])
        self._caps = Capabilities(
            vision=self.vision,
            max_context=int(text_config.max_position_embeddings),
            max_images=max_images if self.vision else 0,
            json_schema=True,
            image_tokens=int(getattr(self.processor, "image_seq_length", IMAGE_TOKENS)),
        )
        self._grammar_lock = threading.Lock()
        self._grammar_compiler: xgrammar.GrammarCompiler | None = None
        self.prefix_cache = prefix_cache
        self._prefix_lock = threading.Lock()
        self._prefix: tuple[tuple[Any, str], Any] | None = None  # ((prefix ids, images digest), KV cache)
        self.prefix_stats = {"hits": 0, "misses": 0}
        n_params = sum(p.numel() for p in self.model.parameters())
        logger.info(
            "loaded %s (%.0fM parameters%s) on %s as %s%s in %.2fs",
            type(self.model).__name__,
            n_params / 1e6,
            ", LoRA adapter" if adapter_dir else "",
            self.device,
            str(self.dtype).removeprefix("torch."),
            ", 4-bit NF4" if quantization == "4bit" else "",
            time.perf_counter() - t0,
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def count_text_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- inputs -------------------------------------------------------------------------------

    def encode(self, prompts: list[list[Turn]]) -> Any:
        """Model inputs for one or more prompts, left-padded, on the model's device.

        The rendered prompt already starts with ``<bos>``, so the tokenizer adds no special tokens;
        the processor expands each ``<start_of_image>`` into the image's soft tokens, in order.
        """
        texts = [render(turns) for turns in prompts]
        images = [[img for turn in turns for img in turn.images] for turns in prompts]
        n_images = sum(len(i) for i in images)
        if self.processor is None:
            if n_images:
                raise BudgetError(
                    f"model {self.model_id!r} is text-only and cannot take images; use a vision build"
                )
            inputs = self.tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        else:
            inputs = self.processor(
                text=texts,
                images=images if n_images else None,
                add_special_tokens=False,
                padding=True,
                return_tensors="pt",
            )
        inputs = inputs.to(self.model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return inputs

    # -- decoding settings --------------------------------------------------------------------

    def _generate_kwargs(
        self, params: GenerationParams, stop_event: threading.Event, extra_processors: Sequence[Any] = ()
    ) -> dict[str, Any]:
        from transformers import LogitsProcessorList, StoppingCriteriaList

        config = copy.deepcopy(self.model.generation_config)
        config.max_new_tokens = params.max_new_tokens
        config.eos_token_id = list(EOS_IDS)
        config.pad_token_id = self.pad_id
        if params.temperature > 0:
            config.do_sample = True
            config.temperature = params.temperature
            config.top_p = params.top_p
        else:
            # Greedy, as MedGemma was evaluated; clear the checkpoint's sampling defaults
            # (MedGemma ships top_k 64 / top_p 0.95) so they do not apply or warn.
            config.do_sample = False
            config.temperature = None
            config.top_p = None
            config.top_k = None
        processors = list(extra_processors)
        if params.json_schema is not None:
            from xgrammar.contrib.hf import LogitsProcessor

            processors.append(LogitsProcessor(self._compiled_schema(params.json_schema)))
        return {
            "generation_config": config,
            "logits_processor": LogitsProcessorList(processors),
            "stopping_criteria": StoppingCriteriaList([_event_stop(stop_event)]),
        }

    def _compiled_schema(self, schema: dict[str, Any]) -> xgrammar.CompiledGrammar:
        """The schema compiled against this tokenizer; the compiler caches by schema."""
        import json

        import xgrammar as xgr

        with self._grammar_lock:
            if self._grammar_compiler is None:
                t0 = time.perf_counter()
                info = xgr.TokenizerInfo.from_huggingface(
                    self.tokenizer, vocab_size=self.vocab_size, stop_token_ids=list(EOS_IDS)
                )
                self._grammar_compiler = xgr.GrammarCompiler(info)
                logger.info("JSON grammar compiler ready in %.2fs", time.perf_counter() - t0)
            try:
                # Compact JSON: free whitespace lets a weak model pad forever instead of closing.
                return self._grammar_compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
            except RuntimeError as e:
                raise EngineError(f"JSON schema not supported for constrained output: {e}") from e

    def _streamer(self) -> Any:
        from transformers import TextIteratorStreamer

        class CountingStreamer(TextIteratorStreamer):  # type: ignore[misc]
            """Also keeps the generated ids: the reply's token count, and whether it reached its end."""

            def __init__(self, tokenizer: Any) -> None:
                super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=False)
                self.ids: list[int] = []

            def put(self, value: Any) -> None:
                if not (self.skip_prompt and self.next_tokens_are_prompt):
                    self.ids.extend(int(t) for t in value.reshape(-1).tolist())
                super().put(value)

        return CountingStreamer(self.tokenizer)

    # -- generation ---------------------------------------------------------------------------

    def stream(self, turns: list[Turn], params: GenerationParams) -> Reply:
        usage: dict[str, int] = {}
        return Reply(self._stream(turns, params, usage=usage), usage)

    def _generation_inputs(self, turns: list[Turn]) -> dict[str, Any]:
        """Generation inputs, continuing from the KV cache of the prompt's images when it is kept.

        Everything up to the last image's ``<end_of_image>`` (the instruction and every slice with its
        label) is prefilled once and kept; a later prompt with the same tokens AND the same images (by
        digest: image soft tokens all have one id) continues from a copy of that cache, so N questions
        about one volume encode its 85 slices once, and the hit needs no image preprocessing either (its
        ids are tokenized from text alone). The first prompt takes the same two-step path as the later
        ones, so an answer never depends on whether the cache was warm.
        """
        import torch

        images = [a for turn in turns for a in turn.arrays]
        if not (self.prefix_cache and images and self.processor is not None):
            return dict(self.encode([turns]))
        p = self.processor
        text = render(turns).replace(p.boi_token, p.full_image_sequence)
        tok = self.tokenizer([text], add_special_tokens=False, return_tensors="pt").to(self.model.device)
        ids = tok["input_ids"]
        boundary = int((ids[0] == END_OF_IMAGE_ID).nonzero().max()) + 1
        key = (tuple(ids[0, :boundary].tolist()), images_digest(images))
        with self._prefix_lock:
            if self._prefix is None or self._prefix[0] != key:
                self._prefix = None  # free the old cache before building the new one
                full = self.encode([turns])
                if not torch.equal(full["input_ids"], ids):  # the processor expanded otherwise: no cache
                    logger.warning("prompt ids differ from the processor's; prefix cache not used")
                    return dict(full)
                head = {
                    k: (v[:, :boundary] if k in ("input_ids", "attention_mask", "token_type_ids") else v)
                    for k, v in full.items()
                }
                with torch.inference_mode():
                    # logits_to_keep=1: the prefix needs its cache, not 262k logits for each of its tokens
                    out = self.model(**head, use_cache=True, logits_to_keep=1)
                self._prefix = (key, out.cache)
                self.prefix_stats["misses"] += 1
            else:
                self.prefix_stats["hits"] += 1
            cache = copy.deepcopy(self._prefix[1])
        return {
            "input_ids": ids,
            "attention_mask": tok["attention_mask"],
            "token_type_ids": (ids == IMAGE_SOFT_TOKEN_ID).long(),
            "cache": cache,  # the images are in it: no pixel values
        }

    def _stream(
        self,
        turns: list[Turn],
        params: GenerationParams,
        extra_processors: Sequence[Any] = (),
        usage: dict[str, int] | None = None,
    ) -> Generator[str, None, None]:
        import torch

        inputs = self._generation_inputs(turns)
        stop_event = threading.Event()
        kwargs = self._generate_kwargs(params, stop_event, extra_processors)
        streamer = self._streamer()
        failure: list[BaseException] = []
        prompt_len = int(inputs["input_ids"].shape[1])

        def work() -> None:
            try:
                if params.temperature > 0 and params.seed is not None:
                    torch.manual_seed(params.seed)
                with torch.inference_mode():
                    self.model.generate(**inputs, streamer=streamer, **kwargs)
            except BaseException as e:  # handed to the consumer, which re-raises it
                failure.append(e)
                streamer.end()  # unblocks the consumer

        t0 = time.perf_counter()
        thread = threading.Thread(target=work, name="aris-generate", daemon=True)
        thread.start()
        stops = _StopFilter(params.stop)
        try:
            for chunk in streamer:
                text = stops.feed(clean_reply(chunk))
                if text:
                    yield text
                if stops.done:
                    break
            else:
                tail = stops.finish()
                if tail:
                    yield tail
        finally:
            # Reached on completion, on a stop string and when the consumer closes us early
            # (GeneratorExit): the criterion ends generation after the current step.
            stop_event.set()
            thread.join()
            logger.debug("prompt of %d tokens, generation ran %.2fs", prompt_len, time.perf_counter() - t0)
        if failure:
            raise EngineError(f"generation failed: {failure[0]}") from failure[0]
        if usage is not None:
            # The ids generated, not the text re-tokenized (which need not give them back); a reply
            # that neither ended its turn nor met a stop string ran out of max_new_tokens.
            ids = streamer.ids
            ended = bool(ids) and ids[-1] in EOS_IDS
            usage.update(
                prompt_tokens=prompt_len,
                completion_tokens=len(ids) - int(ended),
                cut=int(not ended and not stops.done),
            )

    def generate_batch(self, prompts: list[list[Turn]], params: GenerationParams) -> list[str]:
        """One ``generate`` over all prompts (left-padded); each reply as :meth:`stream` would give it."""
        import torch

        if not prompts:
            return []
        inputs = self.encode(prompts)
        kwargs = self._generate_kwargs(params, threading.Event())
        t0 = time.perf_counter()
        if params.temperature > 0 and params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1] :]
        replies = [
            truncate_at_stop(clean_reply(self.tokenizer.decode(row, skip_special_tokens=False)), params.stop)
            for row in new
        ]
        logger.info("batch of %d prompts generated in %.2fs", len(prompts), time.perf_counter() - t0)
        return replies

    def close(self) -> None:
        if getattr(self, "model", None) is None:
            return
        self._prefix = None
        self.model = None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
