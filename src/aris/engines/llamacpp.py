"""llama.cpp engine: a GGUF model, plus its mmproj projector for images (llama-cpp-python).

Both paths feed llama.cpp the exact string :func:`aris.prompt.render` makes, never a chat
template found in the GGUF: MedGemma GGUFs differ in what metadata they carry (the Gemma 3 270M
one has no template at all, and llama.cpp then silently falls back to the llama-2 format).

* Text: the rendered prompt (without ``<bos>``; llama.cpp adds it) is tokenized with special
  tokens parsed, as llama-cpp-python's raw completion does.
* Images: libmtmd, behind llama-cpp-python's generic ``MTMDChatHandler``, evaluates the same
  rendered prompt with a media marker where each image goes. The handler's own ``__call__`` is
  not used: it re-renders a Jinja template whose text items are trimmed, so it cannot place the
  blank lines transformers' Gemma3Processor puts around every image (``\\n\\n<start_of_image>``
  ... ``<end_of_image>\\n\\n``; libmtmd itself adds only the two image tokens), and it ends in
  ``create_completion``, whose text drops control tokens such as ``<unused94>``. The handler
  still owns the libmtmd context (created with the model's threads, freed with the model); the
  chunk evaluation below follows its source. Images are resized the way transformers does first.

Decoding is a small loop over ``Llama.eval`` rather than ``create_completion``/``generate``:
pieces are decoded with special tokens kept, so MedGemma's thought markers
``<unused94>``/``<unused95>`` reach the stream; ``<end_of_turn>``/``<eos>`` (llama.cpp's
end-of-generation set) end it; a JSON-schema grammar is checked on the chosen token before being
applied to the whole vocabulary (see :class:`_TokenPicker`); every prompt is evaluated whole, so
a reply does not depend on the request before it (see :meth:`LlamaCppEngine._prefill`).
"""

from __future__ import annotations

import codecs
import ctypes
import json
import logging
import os
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from aris.engines.base import IMAGE_TOKENS, Capabilities, Engine, Reply, images_digest
from aris.errors import BudgetError, ConfigError, EngineError, ModelNotFoundError, ProjectorMissingError
from aris.prompt import Turn, count_images, render
from aris.types import GenerationParams, ImagePart

if TYPE_CHECKING:
    from aris.config import ArisSettings

logger = logging.getLogger(__name__)

# Transformers' Gemma3Processor turns each <start_of_image> into
# "\n\n<start_of_image>" + soft tokens + "<end_of_image>\n\n"; libmtmd adds the two image tokens
# around the marker itself, so the blank lines go in the text.
_IMAGE_PAD = "\n\n"


class LlamaCppEngine(Engine):
    """A GGUF model on llama.cpp; images need the model's ``mmproj-*.gguf`` projector.

    Parameters
    ----------
    model:
        A ``.gguf`` file, a folder holding one model ``.gguf`` (what ``aris pull`` makes), or the
        id of a GGUF repository already pulled into ``$ARIS_HOME/models``.
    mmproj:
        The vision projector GGUF. Without it the engine is text-only.
    n_ctx:
        Context in tokens, prompt and reply together. An image costs 256 tokens, so CT/MRI
        volumes (up to 85 slices) need 32768.
    n_threads:
        CPU threads; llama.cpp's default (half the cores) when ``None``.
    max_images:
        Images one prompt may hold.
    """

    kind = "llamacpp"
    settings_used = ("model", "mmproj", "n_ctx", "n_threads")

    @classmethod
    def from_settings(cls, settings: ArisSettings) -> LlamaCppEngine:
        if not settings.model:
            raise ConfigError(
                "no model: pass --model (a .gguf file, plus --mmproj for images) or set ARIS_MODEL"
            )
        return cls(settings.model, mmproj=settings.mmproj, n_ctx=settings.n_ctx, n_threads=settings.n_threads)

    def identity(self) -> dict[str, Any]:
        from aris.digests import file_digest

        return {
            "engine": self.kind,
            "model": self.path.name,
            "weights": file_digest(self.path),
            "mmproj": file_digest(self.mmproj) if self.mmproj else None,
            "n_ctx": self.n_ctx,
        }

    def __init__(
        self,
        model: str,
        *,
        mmproj: str | None = None,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        max_images: int = 128,
        prefix_cache: bool = True,
    ) -> None:
        super().__init__(model)
        path = resolve_gguf(model)
        projector = _check_projector(mmproj) if mmproj else None
        self.path = path
        self.mmproj = projector
        self.n_ctx = n_ctx
        self.max_images = max_images
        self._closed = False
        self.prefix_cache = prefix_cache
        # ((prompt head, images digest), the LlamaState after it, the tokens libmtmd puts before the tail)
        self._prefix: tuple[tuple[str, str], Any, list[int]] | None = None
        self.prefix_stats = {"hits": 0, "misses": 0}

        import llama_cpp
        from llama_cpp.llama_chat_format import MTMDChatHandler

        _route_native_logs()
        t0 = time.perf_counter()
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False
            )
        except ValueError as e:
            raise EngineError(f"{path}: llama.cpp could not load this GGUF ({e})") from e
        self._handler: Any = None
        self._image_tokens = IMAGE_TOKENS
        self._image_size: int | None = None
        if projector is not None:
            self._handler = MTMDChatHandler(clip_model_path=str(projector), verbose=False)
            try:
                # Now rather than at the first image: a wrong projector fails at load.
                self._handler._init_mtmd_context(self._llama)
            except ValueError as e:
                self._llama.close()
                raise EngineError(
                    f"{projector}: llama.cpp could not load this projector for {path.name} ({e}); "
                    "use the mmproj file from the same repository as the model"
                ) from e
            self._image_size = _projector_image_size(projector)
            self._image_tokens = self._measure_image_tokens()
        logger.info(
            "llama.cpp model loaded in %.1fs (n_ctx %d, vision %s)",
            time.perf_counter() - t0,
            n_ctx,
            bool(projector),
        )

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            vision=self._handler is not None,
            max_context=self.n_ctx,
            max_images=self.max_images,
            json_schema=True,
            image_tokens=self._image_tokens,
        )

    def count_text_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def check_budget(self, turns: list[Turn], params: GenerationParams) -> None:
        if count_images(turns) and self._handler is None:
            raise ProjectorMissingError(self._projector_missing())
        super().check_budget(turns, params)

    def stream(self, turns: list[Turn], params: GenerationParams) -> Reply:
        """Validate now, then return the token stream (nothing runs until it is iterated)."""
        if self._closed:
            raise EngineError("this llama.cpp engine is closed")
        n_images = count_images(turns)
        if n_images and self._handler is None:
            raise ProjectorMissingError(self._projector_missing())
        if n_images > self.max_images:
            raise BudgetError(f"{n_images} images exceed this engine's limit of {self.max_images} per prompt")
        gbnf = None
        if params.json_schema is not None:
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            try:
                gbnf = json_schema_to_gbnf(json.dumps(params.json_schema))
            except Exception as e:  # the converter raises bare Exceptions for what it cannot express
                raise EngineError(f"llama.cpp cannot turn this JSON schema into a grammar: {e}") from e
        picker = _TokenPicker(self._llama, params, gbnf)
        usage: dict[str, int] = {}
        return Reply(self._stream(turns, n_images > 0, params, picker, usage), usage)

    def prompt_tokens(self, turns: list[Turn]) -> list[int]:
        """The token ids llama.cpp evaluates for ``turns``; each image is ``-1`` x its soft tokens."""
        if not count_images(turns):
            return self._text_tokens(turns)
        if self._handler is None:
            raise ProjectorMissingError(self._projector_missing())
        out: list[int] = []
        for kind, value in self._mtmd_chunks(turns, evaluate=False):
            out.extend(value if kind == "text" else [-1] * value)
        return out

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._prefix = None
            self._llama.close()  # also frees the libmtmd context, registered on the model's exit stack

    # -- internals --------------------------------------------------------------------------

    def _text_tokens(self, turns: list[Turn]) -> list[int]:
        ids: list[int] = self._llama.tokenize(
            render(turns, bos=False).encode("utf-8"), add_bos=True, special=True
        )
        return ids

    def _stream(
        self,
        turns: list[Turn],
        has_images: bool,
        params: GenerationParams,
        picker: _TokenPicker,
        usage: dict[str, int],
    ) -> Generator[str, None, None]:
        import llama_cpp

        llama = self._llama
        n = 0
        n_prompt = 0
        t0 = t1 = time.perf_counter()
        try:
            if has_images:
                if not self._resume_prefix(turns):
                    self._mtmd_chunks(turns, evaluate=True)
                n_prompt = llama.n_tokens
            else:
                prompt = self._text_tokens(turns)
                n_prompt = len(prompt)
                self._check_fits(n_prompt)
                self._prefill(prompt)
            t1 = time.perf_counter()
            pieces = _Detokenizer(llama)
            stops = _StopFilter(params.stop)
            vocab = llama._model.vocab
            stopped = ended = False
            while n < params.max_new_tokens:
                token = picker.pick()
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    ended = True
                    break
                picker.accept(token)
                n += 1
                text, stopped = stops.feed(pieces.feed(token))
                if text:
                    yield text
                if stopped or n >= params.max_new_tokens or llama.n_tokens >= self.n_ctx:
                    break
                llama.eval([token])
            if not stopped:
                tail = stops.finish(pieces.finish())
                if tail:
                    yield tail
            # Counted here, not re-tokenized from the text (which need not give the same ids); out of
            # tokens or out of context is a cut reply, however few tokens that was.
            usage.update(prompt_tokens=n_prompt, completion_tokens=n, cut=int(not (ended or stopped)))
        finally:
            picker.close()
            logger.info(
                "llama.cpp: %d prompt tokens (%d images) in %.2fs, %d new tokens in %.2fs",
                n_prompt,
                count_images(turns),
                t1 - t0,
                n,
                time.perf_counter() - t1,
            )

    def _prefill(self, prompt: list[int]) -> None:
        """Evaluate ``prompt`` from an empty cache.

        No prefix reuse between requests: on CPU, Q4_K logits depend on how a prompt is split into
        batches (up to 0.7 apart on the 270M GGUF), so a reused prefix would make a reply depend on
        the request before it. Aris keeps replies reproducible instead.
        """
        self._llama.reset()
        self._llama.eval(prompt)

    def _check_fits(self, n_prompt: int) -> None:
        if n_prompt >= self.n_ctx:
            raise BudgetError(
                f"the prompt is {n_prompt} tokens but the llama.cpp context is {self.n_ctx}; "
                "raise it with --n-ctx (CT/MRI volumes need >= 32768) or send fewer images"
            )

    def _mtmd_chunks(self, turns: list[Turn], *, evaluate: bool) -> list[tuple[str, Any]]:
        """libmtmd's chunks for the rendered prompt: ``("text", ids)`` and ``("image", n_tokens)``.

        With ``evaluate`` they are also run through the model (:meth:`_evaluate`).
        """
        import llama_cpp.mtmd_cpp as mtmd

        ctx = self._handler.mtmd_ctx
        marker = mtmd.mtmd_default_marker().decode("utf-8")
        text = render(turns, bos=False, image_token=_IMAGE_PAD + marker + _IMAGE_PAD).encode("utf-8")
        bitmaps: list[Any] = []
        out: list[tuple[str, Any]] = []
        chunks = None
        try:
            for pixels in (a for turn in turns for a in turn.arrays):  # one Pillow copy at a time
                bitmaps.append(_bitmap(mtmd, Image.fromarray(pixels, "RGB"), self._image_size))
            input_text = mtmd.mtmd_input_text()
            input_text.text = text
            input_text.text_len = len(text)
            input_text.add_special = True  # the <bos>
            input_text.parse_special = True
            chunks = mtmd.mtmd_input_chunks_init()
            if chunks is None:
                raise EngineError("libmtmd could not allocate input chunks")
            array = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            result = mtmd.mtmd_tokenize(ctx, chunks, ctypes.byref(input_text), array, len(bitmaps))
            if result != 0:
                raise EngineError(f"libmtmd could not tokenize the prompt (error {result})")
            parts = [
                mtmd.mtmd_input_chunks_get(chunks, i) for i in range(mtmd.mtmd_input_chunks_size(chunks))
            ]
            for chunk in parts:
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    count = ctypes.c_size_t()
                    ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                    out.append(("text", [ptr[j] for j in range(count.value)]))
                else:
                    out.append(("image", mtmd.mtmd_input_chunk_get_n_tokens(chunk)))
            if evaluate:
                self._check_fits(mtmd.mtmd_helper_get_n_tokens(chunks))
                self._evaluate(mtmd, parts, out, self._prefix_key(text.decode("utf-8"), turns, marker))
        finally:
            if chunks is not None:
                mtmd.mtmd_input_chunks_free(chunks)
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)
        return out

    @staticmethod
    def _prefix_key(text: str, turns: list[Turn], marker: str) -> tuple[tuple[str, str], str]:
        """((the prompt up to its last image, the images' digest), the text after the last image)."""
        cut = text.rindex(marker) + len(marker)
        return (text[:cut], images_digest(a for turn in turns for a in turn.arrays)), text[cut:]

    def _resume_prefix(self, turns: list[Turn]) -> bool:
        """Restore the kept prefix if this prompt starts with it; then only the text after the last
        image is evaluated: no image is converted, tokenized or encoded again."""
        if not self.prefix_cache or self._prefix is None:
            return False
        import llama_cpp.mtmd_cpp as mtmd

        marker = mtmd.mtmd_default_marker().decode("utf-8")
        text = render(turns, bos=False, image_token=_IMAGE_PAD + marker + _IMAGE_PAD)
        key, tail = self._prefix_key(text, turns, marker)
        kept_key, state, lead = self._prefix
        if kept_key != key:
            return False
        ids = lead + self._tail_tokens(tail)
        self._llama.load_state(state)
        self._check_fits(self._llama.n_tokens + len(ids))
        self._llama.eval(ids)
        self.prefix_stats["hits"] += 1
        return True

    def _tail_tokens(self, tail: str) -> list[int]:
        ids: list[int] = self._llama.tokenize(tail.encode("utf-8"), add_bos=False, special=True)
        return ids

    def _evaluate(
        self,
        mtmd: Any,
        parts: list[Any],
        described: list[tuple[str, Any]],
        prefix: tuple[tuple[str, str], str],
    ) -> None:
        """Run the chunks through the model: the prefix (everything up to the last image), then the rest.

        The prefix's state is kept; a later prompt with the same text AND the same images (by digest:
        image positions carry no token ids) restores it (:meth:`_resume_prefix`) instead of encoding
        the images again, so N questions about one volume encode its slices once. The first prompt
        takes the same two steps, so a reply never depends on whether the state was warm.
        """
        llama = self._llama
        split = max((i + 1 for i, (kind, _) in enumerate(described) if kind == "image"), default=0)
        key, tail = prefix
        self._prefix = None
        llama.reset()
        for chunk, (kind, value) in zip(parts[:split], described[:split], strict=True):
            self._eval_chunk(mtmd, chunk, kind, value)
        rest = described[split:]
        # Kept only when the text after the images tokenizes alone as libmtmd tokenized it (libmtmd
        # starts that chunk with the image's closing token, kept as ``lead``), so a resumed prompt
        # evaluates exactly the tokens this one does.
        tail_ids = self._tail_tokens(tail)
        last = rest[0][1] if len(rest) == 1 and rest[0][0] == "text" else None
        if split and self.prefix_cache and last is not None and last[len(last) - len(tail_ids) :] == tail_ids:
            self._prefix = (key, llama.save_state(), list(last[: len(last) - len(tail_ids)]))
            self.prefix_stats["misses"] += 1
        for chunk, (kind, value) in zip(parts[split:], rest, strict=True):
            self._eval_chunk(mtmd, chunk, kind, value)

    def _eval_chunk(self, mtmd: Any, chunk: Any, kind: str, value: Any) -> None:
        """One chunk: text by ``Llama.eval``, an image by libmtmd's helper (which encodes it and decodes
        its embeddings with the non-causal attention Gemma 3 needs), as MTMDChatHandler does."""
        import llama_cpp

        llama = self._llama
        if kind == "text":
            llama.eval(value)
            return
        start = llama.n_tokens
        n_past = llama_cpp.llama_pos(0)
        result = mtmd.mtmd_helper_eval_chunk_single(
            self._handler.mtmd_ctx,
            llama._ctx.ctx,
            chunk,
            llama_cpp.llama_pos(start),
            llama_cpp.llama_seq_id(0),
            llama.n_batch,
            False,  # logits: only the prompt's last (text) token needs them
            ctypes.byref(n_past),
        )
        if result != 0:
            raise EngineError(f"libmtmd could not evaluate an image (error {result})")
        llama.input_ids[start : n_past.value] = -1  # image positions have no token id
        llama.n_tokens = n_past.value

    def _measure_image_tokens(self) -> int:
        """Soft tokens per image for this projector (256 for MedGemma), from libmtmd itself."""
        probe = [Turn("user", [ImagePart(Image.new("RGB", (8, 8)))])]
        return sum(n for kind, n in self._mtmd_chunks(probe, evaluate=False) if kind == "image")

    def _projector_missing(self) -> str:
        from aris.models import find_mmproj

        beside = find_mmproj(self.path)
        hint = (
            f" {beside.name} sits beside this model; if it came with it: --mmproj {beside}" if beside else ""
        )
        return (
            f"{self.path.name} was loaded without a vision projector, so it cannot take images. Images need "
            "the model's mmproj-*.gguf file, which usually sits in the same repository as the model "
            "(e.g. mmproj-F16.gguf or mmproj-model-f16.gguf; `aris pull <gguf repo> --quant Q4_K_M` downloads "
            f"it beside the model). Load it with --mmproj FILE.{hint}"
        )


def resolve_gguf(model: str) -> Path:
    """The model ``.gguf`` for ``model``: a file, a pulled folder, or a pulled repository id."""
    path = Path(model).expanduser()
    if not path.exists() and "/" in model and not model.endswith(".gguf"):
        pulled = _models_dir() / model.replace("/", "--")
        if pulled.is_dir():
            path = pulled
    if path.is_dir():
        found = sorted(p for p in path.glob("*.gguf") if not p.name.lower().startswith("mmproj"))
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise ModelNotFoundError(
                f"{path}: expected one model .gguf in this folder, found {names}; pass the file"
            )
        return found[0]
    if not path.is_file():
        raise ModelNotFoundError(
            f"{model}: GGUF file not found. Download a GGUF build with "
            "`aris pull <gguf repo> --quant Q4_K_M` (e.g. unsloth/medgemma-4b-it-GGUF; it fetches the "
            "model and its mmproj projector), or pass the path of a local .gguf file"
        )
    if path.name.lower().startswith("mmproj"):
        raise EngineError(
            f"{path}: this is a vision projector; pass it with --mmproj and the model .gguf as --model"
        )
    return path


def _check_projector(mmproj: str) -> Path:
    path = Path(mmproj).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(
            f"{mmproj}: projector file not found. Pass the mmproj-*.gguf from the model's own repository "
            "(`aris pull <gguf repo> --quant Q4_K_M` downloads it beside the model)"
        )
    return path


def _models_dir() -> Path:
    try:
        from aris.config import ArisSettings

        return ArisSettings().models_dir
    except Exception:  # an unreadable config file must not hide the model lookup
        from aris.config import default_home

        return Path(os.environ.get("ARIS_HOME", default_home())) / "models"


def _bitmap(mtmd: Any, image: Image.Image, size: int | None) -> Any:
    """A libmtmd bitmap holding the pixels transformers would give the model.

    Gemma 3 squashes every image to size x size. Resizing here with PIL's bilinear filter, as
    transformers' Gemma 3 image processor does, makes libmtmd's own resize a no-op; its resampler
    differs (first-token logits 0.7 apart on the tiny model for a 500x300 image, 4e-4 when the
    pixels match). Raw RGB goes in: no encode/decode round trip.
    """
    rgb = image.convert("RGB")
    if size and rgb.size != (size, size):
        rgb = rgb.resize((size, size), resample=Image.Resampling.BILINEAR)
    data = rgb.tobytes()
    bitmap = mtmd.mtmd_bitmap_init(rgb.width, rgb.height, (ctypes.c_uint8 * len(data)).from_buffer_copy(data))
    if bitmap is None:
        raise EngineError(f"libmtmd could not take a {rgb.width}x{rgb.height} image")
    return bitmap


def _projector_image_size(projector: Path) -> int | None:
    """The square input size the projector was trained at (896 for MedGemma), from its GGUF metadata."""
    from gguf import GGUFReader

    field = GGUFReader(projector).fields.get("clip.vision.image_size")
    return int(field.contents()) if field is not None else None


_NATIVE_LOG: list[Any] = []  # the installed callback, kept alive for as long as the libraries may call it
_native = logging.getLogger("aris.engines.llamacpp.native")


def _route_native_logs() -> None:
    """Send llama.cpp's and libmtmd's own log lines to a Python logger, at DEBUG, instead of stderr.

    They print even when not verbose (libmtmd every prompt fragment, which may hold patient text), and
    llama-cpp-python's own callback reads ggml's log levels from an older numbering and lets warnings
    through as errors. At DEBUG they stay out of every default log; failures still surface as the
    exceptions raised here.
    """
    if _NATIVE_LOG:
        return
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def route(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if _native.isEnabledFor(logging.DEBUG):
            _native.debug("%s", text.decode("utf-8", "replace").rstrip())

    llama_cpp.llama_log_set(route, ctypes.c_void_p(0))
    mtmd.mtmd_helper_log_set(route, ctypes.c_void_p(0))  # also sets libmtmd's own log
    _NATIVE_LOG.append(route)


class _TokenPicker:
    """Chooses each next token: greedy, or llama.cpp's top-p/temperature/dist chain; inside a grammar if given.

    The grammar checks the chosen token first and is applied to the whole vocabulary only when it
    refuses that token, as llama.cpp's own common sampler does. Applied to all of Gemma's 262k
    tokens it costs 0.1-0.5 s a step on two cores (llama-cpp-python's ``generate`` does that every
    step); checking one token costs microseconds.
    """

    def __init__(self, llama: Any, params: GenerationParams, gbnf: str | None) -> None:
        import llama_cpp

        self._lc = llama_cpp
        self._llama = llama
        self._n_vocab = llama.n_vocab()
        self._grammar = None
        self._chain = None
        if gbnf is not None:
            self._grammar = llama_cpp.llama_sampler_init_grammar(llama._model.vocab, gbnf.encode(), b"root")
            if not self._grammar:
                raise EngineError("llama.cpp could not parse the grammar made from the JSON schema")
        if params.temperature > 0:
            seed = params.seed if params.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
            chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
            self._chain = chain
        self._data: Any = None  # the whole-vocabulary candidate array, made on first need (3 MB)
        self._view: Any = None
        self._one = (llama_cpp.llama_token_data * 1)()

    def pick(self) -> int:
        logits = np.ctypeslib.as_array(self._llama._ctx.get_logits_ith(-1), shape=(self._n_vocab,))
        token = self._choose(logits)
        if self._grammar is None or self._allows(token):
            return token
        cur = self._candidates(logits)
        self._lc.llama_sampler_apply(self._grammar, ctypes.byref(cur))
        masked = np.full(self._n_vocab, -np.inf, dtype=np.float32)
        masked[self._view["id"][: cur.size]] = self._view["logit"][: cur.size]
        if not np.isfinite(masked).any():
            raise EngineError("the JSON-schema grammar allows no next token")
        return self._choose(masked)

    def accept(self, token: int) -> None:
        if self._grammar is not None:
            self._lc.llama_sampler_accept(self._grammar, token)

    def close(self) -> None:
        for name in ("_grammar", "_chain"):
            smpl = getattr(self, name, None)
            if smpl:
                self._lc.llama_sampler_free(smpl)
                setattr(self, name, None)

    def __del__(self) -> None:
        self.close()

    def _choose(self, logits: np.ndarray[Any, Any]) -> int:
        if self._chain is None:
            return int(np.argmax(logits))
        cur = self._candidates(logits)
        self._lc.llama_sampler_apply(self._chain, ctypes.byref(cur))
        return int(cur.data[cur.selected].id)  # a sampler may point ``data`` elsewhere

    def _allows(self, token: int) -> bool:
        self._one[0] = self._lc.llama_token_data(token, 0.0, 0.0)
        cur = self._lc.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        self._lc.llama_sampler_apply(self._grammar, ctypes.byref(cur))
        return bool(np.isfinite(self._one[0].logit))

    def _candidates(self, logits: np.ndarray[Any, Any]) -> Any:
        if self._data is None:
            self._data = (self._lc.llama_token_data * self._n_vocab)()
            self._view = np.ctypeslib.as_array(self._data)
        self._view["id"] = np.arange(self._n_vocab)
        self._view["logit"] = logits
        self._view["p"] = 0.0
        return self._lc.llama_token_data_array(data=self._data, size=self._n_vocab, selected=-1, sorted=False)


class _Detokenizer:
    """Token ids to text as they come, special tokens spelled out (``<unused94>``), UTF-8 kept whole.

    A character split over byte-fallback tokens is held until its last byte arrives.
    """

    def __init__(self, llama: Any) -> None:
        import llama_cpp

        self._piece = llama_cpp.llama_token_to_piece
        self._vocab = llama._model.vocab
        self._buf = ctypes.create_string_buffer(256)
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token: int) -> str:
        return str(self._utf8.decode(self.piece(token)))

    def piece(self, token: int) -> bytes:
        # Not llama-cpp-python's detokenize: its 32-byte buffer turns a longer piece (379 Gemma 3
        # tokens: whole Bengali, Devanagari, Tamil... words) into b"" without a word.
        n = self._piece(self._vocab, token, self._buf, len(self._buf), 0, True)
        if n < 0:  # -n: the size the piece needs
            self._buf = ctypes.create_string_buffer(-n)
            n = self._piece(self._vocab, token, self._buf, len(self._buf), 0, True)
        return bytes(self._buf.raw[:n])

    def finish(self) -> str:
        return str(self._utf8.decode(b"", final=True))


class _StopFilter:
    """Streams text until a stop string, holding back any tail that may begin one."""

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = [s for s in stop if s]
        self.pending = ""

    def feed(self, chunk: str) -> tuple[str, bool]:
        """``(text safe to emit, stopped)``."""
        self.pending += chunk
        if not self.stop:
            out, self.pending = self.pending, ""
            return out, False
        hits = [i for i in (self.pending.find(s) for s in self.stop) if i >= 0]
        if hits:
            out, self.pending = self.pending[: min(hits)], ""
            return out, True
        keep = max(
            (k for s in self.stop for k in range(1, len(s)) if self.pending.endswith(s[:k])), default=0
        )
        cut = len(self.pending) - keep
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def finish(self, chunk: str = "") -> str:
        out, stopped = self.feed(chunk)
        if not stopped:
            out += self.pending
        self.pending = ""
        return out
