"""Routing rules on recorded instance headers (pure functions, no network)."""

from __future__ import annotations

import pytest

from aris.errors import ConfigError
from aris.pacs.rules import check_rules, plan, sop_uid
from aris.pacs.settings import Rule
from aris.pacs.state import InstanceMeta

CT = "1.2.840.10008.5.1.4.1.1.2"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"
SR = "1.2.840.10008.5.1.4.1.1.88.33"
DX = "1.2.840.10008.5.1.4.1.1.1.1"


def inst(
    series: str, n: int, sop_class: str = CT, modality: str = "CT", body: str = "HEAD", pixels: int = 256
) -> InstanceMeta:
    return InstanceMeta(
        study_uid="1.2.3",
        series_uid=series,
        sop_uid=f"{series}.{n}",
        sop_class=sop_class,
        transfer_syntax="1.2.840.10008.1.2.1",
        path=f"1.2.3/{series}/{series}.{n}.dcm",
        modality=modality,
        body_part=body,
        series_description="Routine Brain",
        series_number=int(series.rsplit(".", 1)[1]),
        instance_number=n,
        pixels=pixels,
    )


def study() -> list[InstanceMeta]:
    big = [inst("1.2.3.2", n) for n in range(1, 6)]
    small = [inst("1.2.3.3", n) for n in range(1, 3)]
    seg = [inst("1.2.3.4", 1, SEG, "SEG", body="")]
    return big + small + seg


def test_a_volume_rule_takes_the_largest_matching_series_and_names_what_it_skips() -> None:
    planned, why = plan(study(), [Rule(name="head", task="ct", modality="CT", body_part="HEAD|BRAIN")])
    (p,) = planned
    assert p.series_uid == "1.2.3.2"
    assert len(p.inputs) == 5
    assert p.kind == "ct"
    assert any("series 4 (SEG, 1 instance(s)): modality 'SEG' does not match 'CT'" in w for w in why)


def test_each_makes_a_job_per_series() -> None:
    planned, _ = plan(study(), [Rule(name="head", task="ct", select="each")])
    assert [p.series_uid for p in planned] == ["1.2.3.2", "1.2.3.3"]


def test_instances_of_a_class_the_task_does_not_read_are_skipped_and_named() -> None:
    mixed = [inst("1.2.3.2", n) for n in range(1, 4)] + [inst("1.2.3.2", 9, SR)]
    (p,), _ = plan(mixed, [Rule(name="head", task="ct")])
    assert len(p.instances) == 3
    assert p.note() == "skipped 1 Comprehensive SR Storage"
    only_sr = [inst("1.2.3.5", 1, SR, "SR")]
    planned, why = plan(only_sr, [Rule(name="any", task="ct")])
    assert planned == []
    assert why == [
        "rule any: series 5 (SR, 1 instance(s)): Comprehensive SR Storage is not what ct reads; skipped"
    ]


def test_patterns_match_whole_modality_and_body_part() -> None:
    planned, why = plan(study(), [Rule(name="chest", task="ct", body_part="CHEST")])
    assert planned == []
    assert "body part 'HEAD' does not match 'CHEST'" in why[0]
    assert plan(study(), [Rule(name="c", task="ct", modality="C")])[0] == []  # no partial match
    (p,), _ = plan(study(), [Rule(name="d", task="ct", series_description="brain")])  # anywhere, any case
    assert p.series_uid == "1.2.3.2"


def test_image_rules_take_one_instance_per_job() -> None:
    films = [
        inst("1.2.3.7", 1, DX, "DX", "CHEST", pixels=100),
        inst("1.2.3.7", 2, DX, "DX", "CHEST", pixels=400),
    ]
    (p,), _ = plan(films, [Rule(name="cxr", task="cxr-report")])
    assert p.kind == "cxr"
    assert p.inputs == ["1.2.3/1.2.3.7/1.2.3.7.2.dcm"]  # the larger film
    each, _ = plan(films, [Rule(name="cxr", task="cxr-report", select="each")])
    assert len(each) == 2


def test_job_keys_name_the_content_and_the_rule() -> None:
    rule = Rule(name="head", task="ct", question="Any bleed?")
    (a,), _ = plan(study(), [rule])
    (b,), _ = plan(list(reversed(study())), [rule])
    assert a.key == b.key  # the same instances, in any order
    (c,), _ = plan(study(), [rule.model_copy(update={"question": "Any fracture?"})])
    assert c.key != a.key
    (d,), _ = plan([*study(), inst("1.2.3.2", 6)], [rule])
    assert d.key != a.key  # one more slice is new content


def test_sop_classes_by_name_or_uid() -> None:
    assert sop_uid("CT Image Storage") == CT
    assert sop_uid(CT) == CT
    with pytest.raises(ConfigError, match="unknown SOP class"):
        sop_uid("Holographic Storage")
    (p,), _ = plan(
        [inst("1.2.3.5", 1, SR, "SR")],
        [Rule(name="sr", task="vqa", kind="image", sop_class=["Comprehensive SR Storage"])],
    )
    assert p.instances[0].sop_class == SR


def test_rules_that_cannot_work_fail_at_start() -> None:
    with pytest.raises(ConfigError, match="task ct takes ct, not cxr"):
        check_rules([Rule(name="r", task="ct", kind="cxr")], ["pacs"], ["pacs"])
    with pytest.raises(ConfigError, match="sends to 'nowhere'"):
        check_rules([Rule(name="r", task="ct", send_to=["nowhere"])], ["pacs"], [])
    with pytest.raises(ConfigError, match="task ct"):
        check_rules([Rule(name="r", task="ct", options={"no_such_option": 1})], ["pacs"], [])
    with pytest.raises(ConfigError, match="Unknown task"):
        check_rules([Rule(name="r", task="no-such-task")], [], [])
