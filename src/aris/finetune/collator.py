"""Batches for training: the prompt from :func:`aris.prompt.render`, the answer, and the labels.

Labels follow Google's MedGemma fine-tuning collator: a copy of the input ids with -100 on
padding, on ``<start_of_image>`` and on the image soft tokens, because those positions carry no
text to predict (the soft tokens are replaced by image embeddings). Like Google's, the prompt is
learned too; ``mask_prompt=True`` sets -100 on everything up to and including the model-turn
header, so only the answer and its ``<end_of_turn>`` are learned.

``<end_of_image>`` keeps its label, as in the recipe: after the last soft token it is certain, so
it costs the loss nothing and teaches nothing wrong. Padding is on the right for training (the
engine pads on the left for batched generation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aris.errors import BudgetError
from aris.prompt import END_OF_TURN, START_OF_IMAGE, START_OF_TURN, Turn, render

IGNORE = -100
IMAGE_SOFT_TOKEN = "<image_soft_token>"
MODEL_HEADER = f"{START_OF_TURN}model\n"


def training_text(turns: list[Turn], answer: str) -> str:
    """The rendered prompt (ending in the model-turn header), the answer, ``<end_of_turn>``.

    This is what Gemma 3's chat template gives for the conversation with the answer as the model
    turn, trailing newline stripped as Google's collator strips it.
    """
    return render(turns) + answer.strip() + END_OF_TURN


class Collator:
    """Callable that turns dataset rows into a model batch with labels.

    ``to_turns`` prepares a row (reads its inputs, applies the task prompt); ``rows`` may be any
    objects it accepts, so tests pass turns directly with ``to_turns=lambda r: r``.
    """

    def __init__(
        self,
        processor: Any,
        to_turns: Callable[[Any], tuple[list[Turn], str]],
        *,
        mask_prompt: bool = False,
        pixel_dtype: Any = None,
    ) -> None:
        self.processor = processor
        # A vision processor has a tokenizer; a text-only model passes its tokenizer itself.
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.vision = self.tokenizer is not processor
        self.to_turns = to_turns
        self.mask_prompt = mask_prompt
        self.pixel_dtype = pixel_dtype
        tok = self.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        self.boi_id = tok.convert_tokens_to_ids(START_OF_IMAGE)
        self.image_id = tok.convert_tokens_to_ids(IMAGE_SOFT_TOKEN)
        self.header_ids = tok(MODEL_HEADER, add_special_tokens=False)["input_ids"]

    def __call__(self, rows: list[Any]) -> Any:
        pairs = [self.to_turns(r) for r in rows]
        texts = [training_text(turns, answer) for turns, answer in pairs]
        images = [[img for t in turns for img in t.images] for turns, _ in pairs]
        n_images = sum(len(i) for i in images)
        self.tokenizer.padding_side = "right"
        if not self.vision:
            if n_images:
                raise BudgetError("this base model is text-only and cannot train on images")
            batch = self.tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        else:
            # The rendered text starts with <bos>: the processor must not add another.
            batch = self.processor(
                text=texts,
                images=images if n_images else None,
                add_special_tokens=False,
                padding=True,
                return_tensors="pt",
            )
        ids = batch["input_ids"]
        if self.vision and "token_type_ids" not in batch:
            batch["token_type_ids"] = (ids == self.image_id).long()
        if "pixel_values" in batch and self.pixel_dtype is not None:
            batch["pixel_values"] = batch["pixel_values"].to(self.pixel_dtype)
        batch["labels"] = self.labels(ids, batch["attention_mask"])
        return batch

    def labels(self, input_ids: Any, attention_mask: Any) -> Any:
        """-100 on padding, ``<start_of_image>`` and soft tokens; on the whole prompt with mask_prompt."""
        labels = input_ids.clone()
        labels[attention_mask == 0] = IGNORE
        labels[input_ids == self.pad_id] = IGNORE
        labels[input_ids == self.boi_id] = IGNORE
        labels[input_ids == self.image_id] = IGNORE
        if self.mask_prompt:
            for row in range(input_ids.shape[0]):
                labels[row, : self._answer_start(input_ids[row].tolist())] = IGNORE
        return labels

    def _answer_start(self, ids: list[int]) -> int:
        """Index of the first answer token: just after the last ``<start_of_turn>model\\n``."""
        n = len(self.header_ids)
        for i in range(len(ids) - n, -1, -1):
            if ids[i : i + n] == self.header_ids:
                return i + n
        raise ValueError("no model-turn header in a training example; cannot mask the prompt")
