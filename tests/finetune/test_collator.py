"""The collator's text and labels, token by token, on the tiny VLM's real processor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from aris.finetune.collator import IGNORE, Collator, training_text
from aris.prompt import build_turns
from aris.types import ImagePart, Message

BOI, EOI, SOFT, PAD = 255999, 256000, 262144, 0


@pytest.fixture(scope="module")
def processor(tiny_vlm: Path):  # type: ignore[no-untyped-def]
    return AutoProcessor.from_pretrained(tiny_vlm, local_files_only=True)


@pytest.fixture(scope="module")
def rows(class_images: dict[str, list[Image.Image]]) -> list[tuple[list, str]]:
    cxr = class_images["chest_xray"][0]
    ct = class_images["ct_slice"][0]
    long_answer = '{"answer": "a much longer answer that forces padding on the other row"}'
    return [
        (build_turns([Message.user(ImagePart(cxr), "What is this?")]), '{"answer": "chest_xray"}'),
        (build_turns([Message.system("Be brief."), Message.user(ImagePart(ct), "And this?")]), long_answer),
    ]


def test_training_text_is_the_chat_template_with_the_answer(processor, rows) -> None:  # type: ignore[no-untyped-def]
    turns, answer = rows[1]
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "And this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]
    expected = processor.apply_chat_template(messages, tokenize=False).strip()  # Google's collator strips
    assert training_text(turns, answer) == expected


def test_labels_mask_pad_boi_and_soft_tokens_only(processor, rows) -> None:  # type: ignore[no-untyped-def]
    batch = Collator(processor, lambda r: r)(rows)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == labels.shape
    assert (ids == SOFT).sum(dim=1).tolist() == [16, 16]  # the tiny VLM's 16 soft tokens per image
    assert (ids == BOI).sum(dim=1).tolist() == [1, 1]
    # right padding: the shorter row ends in pad with attention 0
    short = int(mask[0].sum())
    assert mask[0, :short].all()
    assert not mask[0, short:].any()
    assert (ids[0, short:] == PAD).all()
    assert short < ids.shape[1]
    for r in range(ids.shape[0]):
        for i in range(ids.shape[1]):
            tok, lab = int(ids[r, i]), int(labels[r, i])
            if tok in (BOI, SOFT) or mask[r, i] == 0:
                assert lab == IGNORE, (r, i, tok)
            else:
                assert lab == tok, (r, i, tok)  # <end_of_image>, the prompt and the answer are learned
    assert (labels == EOI).sum() == 2
    # token_type_ids mark exactly the soft tokens (bidirectional image attention)
    assert torch.equal(batch["token_type_ids"], (ids == SOFT).long())
    assert batch["pixel_values"].shape[0] == 2


def test_mask_prompt_leaves_only_the_answer(processor, rows) -> None:  # type: ignore[no-untyped-def]
    batch = Collator(processor, lambda r: r, mask_prompt=True)(rows)
    tok = processor.tokenizer
    for r, (_, answer) in enumerate(rows):
        labels = batch["labels"][r].tolist()
        ids = batch["input_ids"][r].tolist()
        kept = [i for i, lab in enumerate(labels) if lab != IGNORE]
        # the kept labels are exactly the answer's tokens and <end_of_turn>, with their own ids
        expected = tok(answer + "<end_of_turn>", add_special_tokens=False)["input_ids"]
        assert [labels[i] for i in kept] == expected
        assert [ids[i] for i in kept] == expected
        # contiguous, right after "<start_of_turn>model\n"
        start = kept[0]
        assert kept == list(range(start, start + len(expected)))
        assert tok.decode(ids[start - 3 : start]) == "<start_of_turn>model\n"
        assert all(lab == IGNORE for lab in labels[:start])
        assert all(lab == IGNORE for lab in labels[start + len(expected) :])  # padding


def test_pixel_dtype_is_applied(processor, rows) -> None:  # type: ignore[no-untyped-def]
    batch = Collator(processor, lambda r: r, pixel_dtype=torch.bfloat16)(rows[:1])
    assert batch["pixel_values"].dtype == torch.bfloat16
