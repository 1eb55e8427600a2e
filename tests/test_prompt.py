from __future__ import annotations

import copy
import pickle

import jinja2
import numpy as np
import pytest
from PIL import Image

from aris.demo.tiny import chat_template
from aris.errors import PromptError
from aris.prompt import THINK_PREFIX, build_turns, prompt_hash, render, to_openai_messages
from aris.types import ImagePart, Message, TextPart


def _reference(messages: list[dict]) -> str:
    """Gemma 3's own Jinja template, rendered independently of Aris's builder."""
    env = jinja2.Environment()

    def raise_exception(msg: str) -> None:
        raise ValueError(msg)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(chat_template()).render(
        messages=messages, bos_token="<bos>", add_generation_prompt=True
    )


IMG = Image.new("RGB", (8, 8), (10, 20, 30))


def test_system_is_folded_into_the_first_user_turn_exactly_as_the_template_does() -> None:
    msgs = [
        Message.system("You are an expert radiologist."),
        Message.user(ImagePart(IMG), TextPart("  Describe this X-ray.  ")),
    ]
    got = render(build_turns(msgs))
    want = _reference(
        [
            {"role": "system", "content": [{"type": "text", "text": "You are an expert radiologist."}]},
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": "  Describe this X-ray.  "}],
            },
        ]
    )
    assert got == want
    assert got == (
        "<bos><start_of_turn>user\nYou are an expert radiologist.\n\n<start_of_image>Describe this X-ray."
        "<end_of_turn>\n<start_of_turn>model\n"
    )


def test_multi_turn_and_ct_layout_match_the_template() -> None:
    parts: list = [TextPart("Instruction.")]
    for i in range(3):
        parts += [ImagePart(IMG), TextPart(f"SLICE {i + 1}")]
    parts.append(TextPart("Is there a bleed?"))
    msgs = [Message("user", parts), Message.assistant("No."), Message.user("Sure?")]
    ref_content = [
        {"type": "image"} if isinstance(p, ImagePart) else {"type": "text", "text": p.text} for p in parts
    ]
    want = _reference(
        [
            {"role": "user", "content": ref_content},
            {"role": "assistant", "content": "No."},
            {"role": "user", "content": "Sure?"},
        ]
    )
    assert render(build_turns(msgs)) == want
    assert "<start_of_image>SLICE 1<start_of_image>SLICE 2<start_of_image>SLICE 3Is there a bleed?" in want


def test_thinking_prefix_goes_before_system_text() -> None:
    turns = build_turns([Message.system("Be brief."), Message.user("Q?")], think=True)
    assert render(turns).startswith(f"<bos><start_of_turn>user\n{THINK_PREFIX}Be brief.\n\nQ?")
    turns = build_turns([Message.user("Q?")], think=True)
    assert (
        render(turns)
        == "<bos><start_of_turn>user\nSYSTEM INSTRUCTION: think silently if needed.\n\nQ?<end_of_turn>\n<start_of_turn>model\n"
    )


def test_openai_messages_reproduce_the_template_on_the_server_side() -> None:
    msgs = [Message.system("Sys."), Message.user(ImagePart(IMG), "Look.")]
    turns = build_turns(msgs, think=True)
    oai = to_openai_messages(turns)
    assert oai[0] == {"role": "system", "content": THINK_PREFIX + "Sys."}
    assert oai[1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    server_side = [
        oai[0],
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Look."}]},
    ]
    assert _reference(server_side) == render(turns)


def test_a_text_turn_of_several_parts_reaches_the_server_as_render_has_it() -> None:
    # render() trims each part; the server's template trims the one string it is sent as a whole.
    msgs = [Message.user("Discharge note:\nPatient stable.\n\n", "Question: any fever?")]
    turns = build_turns(msgs)
    assert _reference(to_openai_messages(turns)) == render(turns)


@pytest.mark.parametrize(
    "msgs",
    [
        [Message.user("a"), Message.user("b")],
        [Message.assistant("a")],
        [Message.user("a"), Message.system("late")],
        [Message.user("a"), Message.assistant("b")],
        [Message.system("only")],
    ],
)
def test_bad_conversations_are_refused(msgs: list[Message]) -> None:
    with pytest.raises(PromptError):
        build_turns(msgs)


def test_prompt_hash_sees_pixels() -> None:
    a = build_turns([Message.user(ImagePart(IMG), "x")])
    b = build_turns([Message.user(ImagePart(Image.new("RGB", (8, 8), (10, 20, 31))), "x")])
    assert prompt_hash(a) != prompt_hash(b)
    assert prompt_hash(a) == prompt_hash(build_turns([Message.user(ImagePart(IMG.copy()), "x")]))


def test_image_part_holds_read_only_rgb_pixels() -> None:
    grey = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20, "L")
    part = ImagePart(grey, label="SLICE 1")
    assert part.pixels.shape == (3, 4, 3)
    assert part.size == (4, 3)
    np.testing.assert_array_equal(part.pixels, np.asarray(grey.convert("RGB")))
    with pytest.raises(ValueError, match="read-only"):
        part.pixels[0, 0, 0] = 1
    image = part.image  # a copy: changing it leaves the part as it was
    image.putpixel((0, 0), (255, 255, 255))
    assert part.pixels[0, 0].tolist() == [0, 0, 0]
    assert ImagePart(part.pixels.copy(), label="SLICE 1") == part
    for copied in (pickle.loads(pickle.dumps(part)), copy.deepcopy(part)):
        assert copied == part
        assert not copied.pixels.flags.writeable
    assert ImagePart(part.pixels.copy(), label="SLICE 2") != part
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        ImagePart(np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        ImagePart(np.zeros((3, 4, 3), np.float32))


def test_prompt_key_did_not_change_when_images_became_arrays() -> None:
    """Result-store keys: the digest of this prompt as computed when parts held Pillow images (e0366b0)."""
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    grey = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20, "L")
    msgs = [
        Message.system("s"),
        Message.user(ImagePart(Image.fromarray(rgb, "RGB")), "SLICE 1", ImagePart(grey), "q"),
    ]
    assert (
        prompt_hash(build_turns(msgs)) == "9f448495f5ce8fedec9d747d5b610d1e740b0e05be4d9bdd8bc82ba04a6464f4"
    )
    same = [Message.system("s"), Message.user(ImagePart(rgb), "SLICE 1", ImagePart(grey.convert("RGB")), "q")]
    assert prompt_hash(build_turns(same)) == prompt_hash(build_turns(msgs))
