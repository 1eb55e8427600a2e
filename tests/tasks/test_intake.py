"""The intake interview: checklist questions, a structured record, escalation by code alone."""

from __future__ import annotations

import json

from aris.engines.fake import FakeEngine
from aris.tasks import get_task
from aris.tasks.intake import OPENING, TOPICS, IntakeRecord, IntakeSession, question_ok
from aris.tasks.redflags import EMERGENCY_ACTION

RECORD = {
    "chief_complaint": "headache",
    "onset": "yesterday morning, gradual",
    "duration": "constant",
    "character": "throbbing",
    "severity": "6/10",
    "associated_symptoms": ["nausea"],
    "past_history": "migraine, appendectomy",  # a string where a list belongs: coerced
    "medications": ["ibuprofen"],
    "allergies": [],
    "summary": "Headache since yesterday.",
    "urgency": "routine",  # the model may not set these: ignored
    "escalation": None,
}


def test_a_full_interview_ends_in_a_record() -> None:
    questions = ["When did the headache start?", "Sure! Here is a question:\nHow long?", *["x"] * 4]
    engine = FakeEngine(replies=[*questions, json.dumps(RECORD)])
    s = IntakeSession(engine)
    assert s.start() == OPENING
    asked = [s.reply("I have a headache")]
    for answer in ["yesterday morning", "all day", "throbbing, 6/10", "nausea", "migraine"]:
        step = s.reply(answer)
        assert isinstance(step, str)
        asked.append(step)
    assert asked[0] == "When did the headache start?"  # the model's phrasing, when it is one question
    assert asked[1] == TOPICS[1][2]  # not a single question: the checklist's wording instead
    assert asked[2:] == [t[2] for t in TOPICS[2:]]
    record = s.reply("ibuprofen, no allergies")
    assert isinstance(record, IntakeRecord)
    assert record.complete
    assert record.urgency == "routine"
    assert record.red_flags == []
    assert record.escalation is None
    assert record.past_history == ["migraine", "appendectomy"]
    assert [t.role for t in record.transcript][:3] == ["assistant", "patient", "assistant"]
    assert len(record.transcript) == 14
    result = s.result()
    assert result.task == "intake"
    assert [st["name"] for st in result.steps][-1] == "record"
    assert result.parsed["chief_complaint"] == "headache"
    assert engine.params[-1].json_schema is not None  # the record is constrained


def test_red_flags_escalate_at_once_whatever_the_model_says() -> None:
    calls: list[int] = []
    engine = FakeEngine(
        replies=[
            "When did it start?",
            # the model's record claims all is well; the code decides
            json.dumps({**RECORD, "chief_complaint": "chest pain", "summary": "Nothing urgent."}),
        ]
    )
    s = IntakeSession(engine, on_escalation=lambda flags: calls.append(len(engine.prompts)))
    s.start()
    assert s.reply("I've had chest pain since this morning") == "When did it start?"
    record = s.reply("about an hour ago, and now I'm short of breath")
    assert isinstance(record, IntakeRecord)
    assert record.urgency == "emergency"
    assert record.escalation == EMERGENCY_ACTION
    assert [f.id for f in record.red_flags] == ["cardiac"]
    assert set(record.red_flags[0].evidence) == {"chest pain", "short of breath"}
    assert not record.complete
    assert calls == [1]  # the patient was told before the record call reached the model
    assert s.reply("more words") is record  # the interview is over


def test_escalation_survives_a_model_that_writes_no_record() -> None:
    engine = FakeEngine(replies=["garbage", "more garbage"])
    s = IntakeSession(engine, model_questions=False)
    s.start()
    record = s.reply("My face is drooping and my speech is slurred")
    assert isinstance(record, IntakeRecord)
    assert record.urgency == "emergency"
    assert record.escalation == EMERGENCY_ACTION
    assert record.chief_complaint == "My face is drooping and my speech is slurred"
    result = s.result()
    assert result.errors
    assert result.parsed["urgency"] == "emergency"


def test_the_model_cannot_escalate_or_calm_down() -> None:
    # a model reply full of alarm words is not the patient's words: nothing escalates
    engine = FakeEngine(replies=["Are you suicidal or having chest pain and shortness of breath?", "{}"])
    s = IntakeSession(engine)
    s.start()
    step = s.reply("a sore knee")
    assert isinstance(step, str)
    assert s.flags == []


def test_scripted_task_run() -> None:
    engine = FakeEngine(replies=[json.dumps(RECORD)])
    r = get_task("intake").run(
        engine,
        [],
        "headache",
        options={
            "answers": ["yesterday", "all day", "throbbing", "nausea", "none", "ibuprofen"],
            "model_questions": False,
        },
    )
    assert r.parsed["complete"] is True
    assert r.parsed["transcript"][1] == {"role": "patient", "text": "headache"}
    assert len(engine.prompts) == 1  # no model questions: only the record


def test_question_ok() -> None:
    assert question_ok("When did it start?")
    assert not question_ok("When? Why? How?")
    assert not question_ok("Tell me more.")
    assert not question_ok("Line one?\nLine two?")
    assert not question_ok("x" * 300 + "?")
