"""The DICOM node against a real Orthanc: pushes in, routed tasks, SRs back, and the faults between."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pynetdicom import AE
from typer.testing import CliRunner

from aris.config import ArisSettings
from aris.engines.fake import FakeEngine
from aris.pacs.node import Node
from aris.pacs.settings import Rule
from aris.store import Store
from tests.pacs.conftest import PHI, Studies
from tests.pacs.orthanc import Orthanc

REPO = Path(__file__).resolve().parents[2]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events if e["type"] != "received"]


def push(
    port: int,
    datasets: list[pydicom.Dataset],
    *,
    calling_ae: str = "MODALITY",
    abort_after: int | None = None,
) -> int:
    """C-STORE ``datasets`` to the node as a modality would; with ``abort_after``, break off after that many."""
    ae = AE(ae_title=calling_ae)
    for sop_class, syntax in sorted({(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID) for ds in datasets}):
        ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title="ARIS")
    assert assoc.is_established
    sent = 0
    for ds in datasets:
        if abort_after is not None and sent == abort_after:
            assoc.abort()
            return sent
        status = assoc.send_c_store(ds)
        assert status.Status == 0x0000
        sent += 1
    assoc.release()
    return sent


def orthanc_push(pacs: Orthanc, study_uid: str) -> dict[str, Any]:
    """Orthanc's REST API: send a whole study to its modality ``aris`` (the node) by C-STORE."""
    sid = pacs.study_id(study_uid)
    reply: dict[str, Any] = pacs.rest(
        "POST", "/modalities/aris/store", json={"Resources": [sid], "Synchronous": True}
    ).json()
    return reply


def sr_of(dicomweb: Any, study_uid: str, sop_uid: str) -> pydicom.Dataset:
    (found,) = dicomweb.search_for_instances(study_uid, search_filters={"SOPInstanceUID": sop_uid})
    return dicomweb.retrieve_instance(study_uid, found["0020000E"]["Value"][0], sop_uid)


def evidence(ds: pydicom.Dataset) -> set[str]:
    return {
        str(i.ReferencedSOPInstanceUID)
        for st in ds.CurrentRequestedProcedureEvidenceSequence
        for s in st.ReferencedSeriesSequence
        for i in s.ReferencedSOPSequence
    }


def uids_of(studies: Studies, name: str) -> set[str]:
    return {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in studies.files[name]}


def test_a_pushed_study_comes_back_as_an_sr_with_no_command_typed(
    pacs: Orthanc,
    node_settings: Callable[..., ArisSettings],
    studies: Studies,
    dicomweb: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    rule = Rule(name="head-ct", task="ct", modality="CT", body_part="HEAD|BRAIN", question="Any hemorrhage?")
    engine = FakeEngine(replies=["No intracranial hemorrhage."])
    with Node(node_settings([rule]), models=engine) as node:
        assert pacs.rest("POST", "/modalities/aris/echo", json={}).status_code == 200  # C-ECHO answers
        assert orthanc_push(pacs, studies.uid["head"])["InstancesCount"] >= 5  # + SRs of earlier tests
        events = node.wait_for(lambda ev: "sent" in types(ev) or "job.failed" in types(ev))
        state = node.state
        (study,) = state.studies()
        (job,) = state.jobs()
        (send,) = state.sends()
        trail = state.store.audit_trail()
    assert types(events) == ["started", "routed", "job.start", "job.done", "sent"]
    assert study.state == "routed"
    assert (study.reason or "").startswith("1 job(s), 1 new; not used: ")
    assert "1 Segmentation Storage" in (study.reason or "")  # skipped, and named
    assert (job.status, job.task, job.rule) == ("done", "ct", "head-ct")
    assert (send.status, send.destination, send.sop_uid) == ("sent", "orthanc", job.sr_uid)
    assert "Any hemorrhage?" in engine.prompts[0]

    ds = sr_of(dicomweb, studies.uid["head"], job.sr_uid)
    slices = uids_of(studies, "head") - {
        str(pydicom.dcmread(studies.files["head"][-1], stop_before_pixels=True).SOPInstanceUID)
    }
    assert evidence(ds) == slices  # the four CT slices, not the segmentation
    texts = [
        str(c.TextValue) for i in ds.ContentSequence if i.ValueType == "CONTAINER" for c in i.ContentSequence
    ]
    assert texts == ["answer: No intracranial hemorrhage."]

    actions = [t.action for t in trail]
    assert {"pacs.route", "job.create", "item.done", "pacs.sr", "pacs.sent"} <= set(actions)
    made = next(t for t in trail if t.action == "pacs.sr")
    assert made.detail == f"study={studies.uid['head']} sr={job.sr_uid} origin=node job {job.id}"
    record = json.dumps([t.__dict__ for t in trail], default=str)
    for phi in PHI:
        assert phi not in caplog.text
        assert phi not in record


def test_the_same_study_pushed_twice_makes_one_job_and_one_sr(
    pacs: Orthanc, node_settings: Callable[..., ArisSettings], studies: Studies, dicomweb: Any
) -> None:
    rule = Rule(name="head-twice", task="ct", modality="CT")
    engine = FakeEngine(replies=["first answer", "second answer"])
    with Node(node_settings([rule]), models=engine) as node:
        orthanc_push(pacs, studies.uid["head"])
        node.wait_for(lambda ev: "sent" in types(ev))
        before = dicomweb.search_for_instances(studies.uid["head"], search_filters={"Modality": "SR"})
        orthanc_push(pacs, studies.uid["head"])
        events = node.wait_for(lambda ev: types(ev).count("routed") == 2)
        time.sleep(0.3)  # a few ticks: a second job would start now
        assert len(node.state.jobs()) == 1
        (send,) = node.state.sends()
        (study,) = node.state.studies()
    after = dicomweb.search_for_instances(studies.uid["head"], search_filters={"Modality": "SR"})
    assert types(node.events).count("job.start") == 1
    assert [e["new"] for e in events if e["type"] == "routed"] == [1, 0]
    assert "pushed again" in (study.reason or "")
    assert len(engine.prompts) == 1
    assert send.status == "sent"
    assert len(after) == len(before)


def test_a_push_that_breaks_off_waits_then_fails_and_a_full_resend_runs(
    node_settings: Callable[..., ArisSettings], studies: Studies
) -> None:
    rule = Rule(name="cardiac", task="ct", modality="CT")
    cardiac = studies.datasets("cardiac")
    with Node(node_settings([rule], wait_s=1.0, send_to=[]), models=FakeEngine()) as node:
        assert push(node.port, cardiac, abort_after=2) == 2
        failed = node.wait_for(lambda ev: "study.failed" in types(ev))
        assert types(failed) == ["started", "interrupted", "waiting", "study.failed"]
        reason = failed[-1]["reason"]
        assert reason == "a push of this study broke off after 2 instance(s); nothing more arrived within 1 s"
        assert node.state.jobs() == []
        push(node.port, cardiac)  # the modality sends the whole study again
        done = node.wait_for(lambda ev: "job.done" in types(ev))
        (job,) = node.state.jobs()
    assert types(done)[-3:] == ["routed", "job.start", "job.done"]
    assert len(job.inputs) == 5


def test_a_partial_series_waits_for_the_rest_then_runs(
    pacs: Orthanc, node_settings: Callable[..., ArisSettings], studies: Studies
) -> None:
    """The sender is the configured PACS: the node asks it (QIDO) how many instances each series has."""
    rule = Rule(name="cardiac", task="ct", modality="CT")
    cardiac = studies.datasets("cardiac")
    with Node(node_settings([rule], send_to=[], wait_s=30), models=FakeEngine()) as node:
        push(node.port, cardiac[:3], calling_ae="ORTHANC")
        waiting = node.wait_for(lambda ev: "waiting" in types(ev))
        assert waiting[-1]["reason"].endswith(": 3 of 5 instances received")
        time.sleep(0.5)
        assert node.state.jobs() == []
        push(node.port, cardiac[3:], calling_ae="ORTHANC")
        done = node.wait_for(lambda ev: "job.done" in types(ev))
        (job,) = node.state.jobs()
    assert types(done) == ["started", "waiting", "routed", "job.start", "job.done"]
    assert len(job.inputs) == 5


def test_a_failed_send_is_retried_and_visible_until_it_succeeds(
    pacs: Orthanc,
    node_settings: Callable[..., ArisSettings],
    studies: Studies,
    dicomweb: Any,
    pacs_config: Path,
) -> None:
    from aris.cli import app

    rule = Rule(name="mra", task="mri", modality="MR", send_to=["orthanc-dimse"])
    with Node(node_settings([rule]), models=FakeEngine(replies=["Patent vessels."])) as node:
        pacs.pause()
        try:
            push(node.port, studies.datasets("mra"))
            node.wait_for(lambda ev: types(ev).count("send.failed") >= 2, timeout=30)
            status = CliRunner().invoke(app, ["node", "status", "--json"])
            assert status.exit_code == 0, status.output
            (send,) = json.loads(status.stdout)["sends"]
            assert send["status"] == "pending"
            assert send["attempts"] >= 2
            assert "PACS 'orthanc-dimse' (ORTHANC@127.0.0.1:" in send["last_error"]
        finally:
            pacs.resume()
        events = node.wait_for(lambda ev: "sent" in types(ev), timeout=30)
        (job,) = node.state.jobs()
        result = node.state.store.result_for(job.item_key or "")
    assert events[-1]["method"] == "c-store"
    status = CliRunner().invoke(app, ["node", "status", "--json"])
    (send,) = json.loads(status.stdout)["sends"]
    assert send["status"] == "sent"
    assert send["last_error"] is None
    ds = sr_of(dicomweb, studies.uid["mra"], job.sr_uid)
    assert result is not None
    seen = {f.removesuffix(".dcm") for f in result["provenance"][0]["details"]["files"]}
    assert evidence(ds) == seen  # the slices the model saw (this sample keeps one axial-most of seven)
    assert seen < uids_of(studies, "mra")
    table = CliRunner().invoke(app, ["node", "status"])
    assert "results sent" in table.stdout
    assert "routed jobs" in table.stdout


def test_c_find_and_c_move_bring_a_study_to_the_node_and_boxes_come_back(
    pacs: Orthanc, node_settings: Callable[..., ArisSettings], studies: Studies, dicomweb: Any
) -> None:
    from aris.cli import app

    found = CliRunner().invoke(
        app, ["node", "find", "orthanc", "--dimse", "-f", "ModalitiesInStudy=DX", "--json"]
    )
    assert found.exit_code == 0, found.output
    (study,) = json.loads(found.stdout)  # C-FIND: the one study with a DX series
    assert study["uid"] == studies.uid["dx"]
    assert "DX" in study["modalities"]
    rule = Rule(
        name="cxr-boxes", task="cxr-localize", modality="DX|CR", options={"labels": ["heart"]}, gsps=True
    )
    reply = '```json\n[{"box_2d": [100, 200, 600, 700], "label": "heart"}]\n```'
    with Node(node_settings([rule]), models=FakeEngine(replies=[reply])) as node:
        film = pydicom.dcmread(studies.files["dx"][0], stop_before_pixels=True)
        pulled = CliRunner().invoke(
            app, ["node", "pull", "orthanc", studies.uid["dx"], "--series", film.SeriesInstanceUID]
        )
        assert pulled.exit_code == 0, pulled.output
        assert "C-MOVE: 1 sent, 0 failed" in pulled.stdout
        node.wait_for(lambda ev: types(ev).count("sent") == 2)
        (job,) = node.state.jobs()
        sends = {s.what: s for s in node.state.sends()}
    assert set(sends) == {"sr", "gsps"}
    pr = dicomweb.search_for_instances(
        studies.uid["dx"], search_filters={"SOPInstanceUID": sends["gsps"].sop_uid}
    )
    assert pr[0]["00080016"]["Value"] == ["1.2.840.10008.5.1.4.1.1.11.1"]
    ds = sr_of(dicomweb, studies.uid["dx"], job.sr_uid)
    assert evidence(ds) == uids_of(studies, "dx")


def test_aris_node_serve_runs_until_stopped(
    pacs: Orthanc, pacs_config: Path, studies: Studies, tmp_path: Path
) -> None:
    """The real command: a rule in the config file, a study pushed, an SR back, SIGTERM ends it."""
    pacs_config.write_text(
        pacs_config.read_text()
        + '\n[[node.rules]]\nname = "mr"\ntask = "mri"\nmodality = "MR"\nquestion = "Vessels patent?"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "ARIS_CONFIG": str(pacs_config)}
    log = (tmp_path / "node.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "aris", "node", "serve", "--engine", "fake"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context("1.2.840.10008.1.1")
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "node.log").read_text()
            assoc = ae.associate("127.0.0.1", pacs.node_port, ae_title="ARIS")
            if assoc.is_established:
                assert assoc.send_c_echo().Status == 0x0000
                assoc.release()
                break
            assert time.monotonic() < deadline, (tmp_path / "node.log").read_text()
            time.sleep(0.2)
        orthanc_push(pacs, studies.uid["mra"])
        with Store.open() as store:
            from aris.pacs.state import PacsState

            state = PacsState(store)
            while not [s for s in state.sends() if s.status == "sent"]:
                assert proc.poll() is None, (tmp_path / "node.log").read_text()
                assert time.monotonic() < deadline + 30, (tmp_path / "node.log").read_text()
                time.sleep(0.2)
            (job,) = state.jobs()
        assert job.task == "mri"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
    out = (tmp_path / "node.log").read_text()
    assert proc.returncode == 0, out
    assert "node stopped" in out
    assert "job 1 done: SR" in out
