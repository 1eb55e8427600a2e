"""A tiny, randomly initialised SigLIP for tests and demos: the real transformers path in seconds.

It has MedSigLIP's structure (``SiglipModel`` with both towers, a SentencePiece ``SiglipTokenizer``, 64
text positions) at toy sizes. The tokenizer is trained here with ``sentencepiece`` on the built-in
label prompts, so nothing comes from a model hub. Its weights are noise: it proves the path, never
the medicine. :func:`medsiglip_config` is ``google/medsiglip-448``'s architecture written by hand,
for benchmarks with random weights at full size.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TINY_SIGLIP_NAME = "tiny-siglip"
_BUILD_VERSION = "2"


def medsiglip_config() -> Any:
    """``google/medsiglip-448``'s architecture: SigLIP so400m towers (27 layers, hidden 1152, 16 heads,
    FFN 4304), 448 px input with 14 px patches (1024 patches), 64 text positions, 32k vocabulary."""
    from transformers import SiglipConfig

    tower = {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "hidden_act": "gelu_pytorch_tanh",
        "layer_norm_eps": 1e-6,
    }
    return SiglipConfig(
        text_config={
            **tower,
            "vocab_size": 32000,
            "max_position_embeddings": 64,
            "pad_token_id": 1,
            "bos_token_id": None,
            "eos_token_id": 1,
        },
        vision_config={**tower, "image_size": 448, "patch_size": 14, "num_channels": 3},
    )


def _corpus() -> list[str]:
    from aris.embed.labels import LABEL_SETS

    lines = []
    for ls in LABEL_SETS.values():
        for label in ls.labels:
            lines += [t.replace("{label}", label) for t in ls.templates]
            lines.append(label)
    lines += ["a photo of an arm with a rash", "normal", "abnormal", "no finding", "tissue", "slide"]
    return lines


def train_tokenizer(folder: Path, vocab_size: int = 200) -> None:
    """A SentencePiece unigram model trained on the label prompts, saved as a ``SiglipTokenizer``."""
    import sentencepiece as spm
    from transformers import SiglipTokenizer

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="unigram",
        hard_vocab_limit=False,
        unk_id=2,
        bos_id=-1,
        eos_id=1,
        pad_id=0,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        minloglevel=2,
    )
    spiece = folder / "spiece.model"
    spiece.write_bytes(buf.getvalue())
    tok = SiglipTokenizer(vocab_file=str(spiece), model_max_length=64)
    tok.save_pretrained(folder)


def build_tiny_siglip(root: Path, *, image_size: int = 32, seed: int = 0) -> Path:
    """The folder of the tiny SigLIP (built once under ``root``, then reused)."""
    seeded = f"-seed{seed}" if seed else ""
    target = Path(root) / f"{TINY_SIGLIP_NAME}-v{_BUILD_VERSION}-{image_size}{seeded}"
    if (target / "config.json").exists() and (target / "spiece.model").exists():
        return target
    import torch
    from transformers import SiglipConfig, SiglipModel

    Path(root).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-siglip-", dir=root))
    try:
        train_tokenizer(tmp)
        from transformers import SiglipTokenizer

        vocab = SiglipTokenizer.from_pretrained(tmp).vocab_size
        tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
        config = SiglipConfig(
            text_config={
                **tower,
                "vocab_size": vocab,
                "max_position_embeddings": 64,
                "pad_token_id": 1,
                "bos_token_id": None,
                "eos_token_id": 1,
            },
            vision_config={**tower, "image_size": image_size, "patch_size": 8},
        )
        torch.manual_seed(seed)
        model = SiglipModel(config)
        model.eval()
        with torch.no_grad():  # SigLIP's initial temperature and bias (log 10, -10)
            model.logit_scale.fill_(float(torch.log(torch.tensor(10.0))))
            model.logit_bias.fill_(-10.0)
        model.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process built it first
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built the tiny SigLIP")
    return target
