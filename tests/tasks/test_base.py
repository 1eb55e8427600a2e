"""The shared run: constrained decoding where possible, repair once, bad twice -> a Result with errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PIL import Image

from aris.engines.base import Capabilities, Reply
from aris.engines.fake import FakeEngine
from aris.errors import BudgetError, ConfigError, EngineError, InputError
from aris.inputs.base import PreparedInput
from aris.notice import NOTICE
from aris.prompt import Turn, render
from aris.tasks import TASKS, get_task, list_tasks
from aris.types import GenerationParams, ImagePart, Provenance


def tissue() -> PreparedInput:
    return PreparedInput(
        "image", [ImagePart(Image.new("RGB", (64, 64), (200, 120, 160)))], Provenance("image", ["t.png"])
    )


class TextOnlyFake(FakeEngine):
    """The scripted engine without structured-output support, as a plain llama-server would be."""

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(vision=True, max_context=131072, max_images=200, json_schema=False)


def test_bad_then_good_is_repaired_once() -> None:
    engine = FakeEngine(replies=["I cannot tell from this patch.", '{"answer": "adipose"}'])
    result = get_task("classify").run(engine, [tissue()])
    assert result.repaired
    assert result.errors == []
    assert result.parsed["answer"] == "adipose"
    assert result.text == '{"answer": "adipose"}'
    assert [s["name"] for s in result.steps] == ["answer", "answer-repair"]
    assert result.usage["calls"] == 2
    # the repair is the conversation so far + the previous reply as the model's turn + the errors
    repair = engine.prompts[1]
    assert repair.startswith(engine.prompts[0].removesuffix("<start_of_turn>model\n"))
    assert "<start_of_turn>model\nI cannot tell from this patch.<end_of_turn>" in repair
    assert "is not exactly one of" in repair
    assert "ONLY the corrected JSON" in repair
    # the prompt hash is the task's own prompt, not the repair's
    assert result.prompt_sha256 == result.steps[0]["prompt_sha256"] != result.steps[1]["prompt_sha256"]


def test_bad_twice_is_a_result_with_errors_not_an_exception() -> None:
    engine = FakeEngine(replies=["no idea", "still no idea"])
    result = get_task("classify").run(engine, [tissue()])
    assert result.parsed is None
    assert not result.repaired
    assert result.errors[0].startswith("first reply:")
    assert result.errors[-1].startswith("after repair:")
    assert result.text == "no idea"  # the model's own first attempt is kept
    assert result.notice == NOTICE
    assert len(engine.prompts) == 2  # exactly one repair


class DiesOnRepair(FakeEngine):
    """Answers once, then fails the way its second call is told to (an endpoint gone, a full context)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(replies=["I cannot tell from this patch."])
        self.error = error

    def stream(self, turns: list[Turn], params: GenerationParams) -> Iterator[str]:
        if self.prompts:
            self.prompts.append(render(turns))
            raise self.error
        return super().stream(turns, params)


def test_an_engine_failing_during_the_repair_raises_and_records_no_answer() -> None:
    # A batch retries the item on another endpoint only if the failure reaches it; recorded as the
    # item's "failed validation" result, a dead endpoint would become the study's answer.
    engine = DiesOnRepair(EngineError("the connection broke mid-reply (RemoteProtocolError); not retried"))
    with pytest.raises(EngineError, match="connection broke"):
        get_task("classify").run(engine, [tissue()])
    assert len(engine.prompts) == 2


def test_a_repair_that_does_not_fit_keeps_the_first_errors() -> None:
    engine = DiesOnRepair(BudgetError("the repair conversation needs 9000 tokens; the context holds 8192"))
    result = get_task("classify").run(engine, [tissue()])
    assert result.parsed is None
    assert result.text == "I cannot tell from this patch."
    assert result.errors[-1].startswith("the repair could not run: the repair conversation needs 9000")
    assert len(result.errors) >= 2  # the first reply's own errors come first


def test_a_reply_that_used_its_whole_budget_is_flagged_as_maybe_cut() -> None:
    # Free text parses whether or not it finished: "IMPRESSION: No evidence of" is a valid section.
    cut = "FINDINGS: Lungs are clear.\nIMPRESSION: No evidence of"
    engine = FakeEngine(replies=[cut, cut])
    params = GenerationParams(max_new_tokens=engine.count_text_tokens(cut))
    result = get_task("cxr-report").run(engine, [tissue()], params=params)
    assert result.parsed["impression"] == "No evidence of"
    assert result.warnings == [
        f"the reply used all {params.max_new_tokens} new tokens it was allowed and may be cut off; "
        "raise max_new_tokens"
    ]
    # One token more and the same reply is taken as finished.
    engine = FakeEngine(replies=[cut])
    params = GenerationParams(max_new_tokens=engine.count_text_tokens(cut) + 1)
    assert get_task("cxr-report").run(engine, [tissue()], params=params).warnings == []


class ContextFull(FakeEngine):
    """Says, as a server's finish_reason "length" or a full llama.cpp context does, that it was cut."""

    def stream(self, turns: list[Turn], params: GenerationParams) -> Iterator[str]:
        usage = {"completion_tokens": 9, "cut": 1}
        return Reply(super().stream(turns, params), usage)  # type: ignore[arg-type]


def test_an_engine_that_says_the_reply_was_cut_is_believed_below_the_budget() -> None:
    engine = ContextFull(replies=["FINDINGS: Lungs are clear.\nIMPRESSION: No evidence of"])
    result = get_task("cxr-report").run(engine, [tissue()], params=GenerationParams(max_new_tokens=512))
    assert result.warnings == [
        "the reply stopped after 9 of 512 new tokens because the engine's context was full, and may be "
        "cut off; raise the context (--n-ctx, a server's context length) or send fewer images"
    ]
    assert result.steps[0]["cut"] == 1


def test_a_cut_report_replaced_by_its_repair_is_not_flagged_nor_is_json_that_parsed() -> None:
    cut = "FINDINGS: The lungs are clear. The heart size is normal. There is no"
    whole = "FINDINGS: Clear lungs.\nIMPRESSION: Normal."
    engine = FakeEngine(replies=[cut, whole])
    params = GenerationParams(max_new_tokens=engine.count_text_tokens(cut))
    result = get_task("cxr-report").run(engine, [tissue()], params=params)
    assert result.repaired
    assert result.parsed["impression"] == "Normal."
    assert result.warnings == [], "the repair, not the cut reply, is the answer"
    # A JSON reply that parsed closed its object: finished, however many tokens it took.
    engine = FakeEngine(replies=['{"answer": "adipose"}'])
    params = GenerationParams(max_new_tokens=engine.count_text_tokens('{"answer": "adipose"}'))
    assert get_task("classify").run(engine, [tissue()], params=params).warnings == []


def test_json_schema_is_set_only_where_the_engine_constrains_and_thinking_is_off() -> None:
    engine = FakeEngine(replies=['{"answer": "mucus"}'])
    get_task("classify").run(engine, [tissue()], options={"choices": "diabetic-retinopathy"})
    schema = engine.params[0].json_schema
    assert schema["properties"]["answer"]["enum"] == [
        "no DR",
        "mild",
        "moderate",
        "severe NPDR",
        "proliferative DR",
    ]

    plain = TextOnlyFake(replies=['{"answer": "mild"}'])
    get_task("classify").run(plain, [tissue()], options={"choices": "dr"})
    assert plain.params[0].json_schema is None

    thinking = FakeEngine(replies=['<unused94>thought\nhmm<unused95>{"answer": "mild"}'])
    r = get_task("classify").run(thinking, [tissue()], options={"choices": "dr", "think": True})
    assert thinking.params[0].json_schema is None  # a grammar would forbid the thought markers
    assert thinking.params[0].think
    assert r.parsed["answer"] == "mild"
    assert r.thought == "hmm"

    off = FakeEngine(replies=['{"answer": "mild"}'])
    get_task("classify").run(off, [tissue()], options={"choices": "dr", "constrain": False})
    assert off.params[0].json_schema is None


def test_repair_turns_thinking_off_and_constrains() -> None:
    engine = FakeEngine(replies=["<unused94>thought\nlong<unused95>grade unclear", '{"answer": "mild"}'])
    r = get_task("classify").run(engine, [tissue()], options={"choices": "dr", "think": True})
    assert r.repaired
    assert engine.params[1].think is False
    assert engine.params[1].json_schema is not None


def test_params_keep_the_callers_budget_and_the_tasks_default() -> None:
    engine = FakeEngine(replies=['{"answer": "mild"}'])
    get_task("classify").run(
        engine, [tissue()], options={"choices": "dr"}, params=GenerationParams(max_new_tokens=7)
    )
    assert engine.params[0].max_new_tokens == 7
    engine2 = FakeEngine(replies=["[]", "[]"])
    get_task("lab-extract").run(engine2, [tissue()])
    assert engine2.params[0].max_new_tokens == get_task("lab-extract").max_new_tokens


def test_unknown_option_and_wrong_inputs_are_clear_errors() -> None:
    engine = FakeEngine()
    with pytest.raises(ConfigError, match="choises"):
        get_task("classify").run(engine, [tissue()], options={"choises": "a,b"})
    with pytest.raises(InputError, match=r"t\.png.*ct"):
        get_task("ct").run(engine, [tissue()], "Any bleed?")
    with pytest.raises(InputError, match="takes 2 input"):
        get_task("cxr-compare").run(engine, [tissue()])
    with pytest.raises(ConfigError, match="needs a question"):
        get_task("vqa").run(engine, [tissue()])
    with pytest.raises(ConfigError, match=r"Unknown task 'nope'\. Available"):
        get_task("nope")
    assert engine.prompts == []  # nothing reached the engine


def test_every_task_is_listed_with_its_interface() -> None:
    tasks = list_tasks()
    assert [t.name for t in tasks] == list(TASKS)
    for t in tasks:
        assert t.description
        lo, hi = t.n_inputs
        assert 0 <= lo <= hi
        assert isinstance(t.input_kinds, tuple)


def test_aris_run_reads_paths_the_way_the_recipe_needs(samples) -> None:  # type: ignore[no-untyped-def]
    import aris

    engine = FakeEngine(replies=['[{"box_2d": [0, 0, 1000, 1000], "label": "chest"}]'])
    r = aris.run("cxr-localize", samples("dicom/cxr/highdicom_dx_image.dcm"), engine=engine, labels="chest")
    assert r.errors == []
    # read with pad_square=True: the whole padded square maps back to the whole 211 x 169 film
    assert r.parsed["padding"] == {"left": 0, "top": 21, "size": 211}
    assert r.parsed["boxes"][0]["box_px"] == {"x0": 0.0, "y0": 0.0, "x1": 211.0, "y1": 169.0}
    assert r.timings.prepare_s > 0
    assert r.provenance[0]["kind"] == "cxr"
    text = aris.run("text-qa", question="Q?", engine=FakeEngine(replies=["Final Answer: 42"]))
    assert text.parsed == {"answer": "42", "choice": None, "letter": None}
