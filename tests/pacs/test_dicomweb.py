"""DICOMweb against a real Orthanc: QIDO -> WADO -> task -> SR -> STOW -> read back, worklists, faults."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from typer.testing import CliRunner

from aris.batch import run_batch
from aris.config import ArisSettings
from aris.engines.fake import FakeEngine
from aris.errors import InputError
from aris.inputs import read
from aris.notice import NOTICE
from aris.pacs import dicomweb, source, sr
from aris.pacs.dicomweb import Client
from aris.pacs.errors import PacsError
from aris.pacs.results import evidence_for_url, send_batch
from aris.pacs.state import PacsState
from aris.pacs.urls import connection
from aris.runner import run_task
from aris.store import Store
from tests.pacs.conftest import PHI, Studies
from tests.pacs.orthanc import PASSWORD, Orthanc
from tests.servers import Reply, stub_server

BOX_REPLY = '```json\n[{"box_2d": [100, 200, 600, 700], "label": "heart"}]\n```'


def _walk(items: Any) -> list[Any]:
    out = []
    for it in items:
        out.append(it)
        out.extend(_walk(it.get("ContentSequence", [])))
    return out


def sr_instances(dicomweb: Any, study_uid: str) -> list[str]:
    found = dicomweb.search_for_instances(study_uid, search_filters={"Modality": "SR"})
    return sorted(i["00080018"]["Value"][0] for i in found)


def test_qido_wado_task_sr_stow_and_read_back(pacs_config: Path, studies: Studies, dicomweb: Any) -> None:
    (url,) = source.search("dicomweb://orthanc?ModalitiesInStudy=DX")  # QIDO
    assert url == f"dicomweb://orthanc/studies/{studies.uid['dx']}"
    result = run_task(  # WADO-RS inside the reader, then the task
        "cxr-localize", url, models=FakeEngine(replies=[BOX_REPLY]), options={"labels": ["heart"]}
    )
    assert result.errors == []
    assert result.provenance[0]["sources"] == [url]
    settings = ArisSettings.from_flags()
    evidence = evidence_for_url(url, result, settings)  # WADO-RS metadata: headers, no pixels
    doc = sr.build(result, evidence, key="qido-wado-stow", image=evidence[0])
    Client("orthanc", connection("orthanc", settings)).store([doc])  # STOW-RS

    back = dicomweb.retrieve_instance(studies.uid["dx"], doc.SeriesInstanceUID, doc.SOPInstanceUID)
    source_ds = pydicom.dcmread(studies.files["dx"][0], stop_before_pixels=True)
    assert back.StudyInstanceUID == source_ds.StudyInstanceUID
    assert back.PatientID == source_ds.PatientID
    items = _walk(back.ContentSequence)
    assert {"heart", NOTICE} <= {str(i.TextValue) for i in items if i.ValueType == "TEXT"}
    (region,) = [i for i in items if i.ValueType == "SCOORD"]
    side = max(source_ds.Rows, source_ds.Columns)
    top = (side - source_ds.Rows) // 2
    assert region.GraphicData[:2] == pytest.approx([200 / 1000 * side, 100 / 1000 * side - top], abs=1e-3)
    assert (
        region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        == source_ds.SOPInstanceUID
    )
    refs = back.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert [r.ReferencedSOPInstanceUID for r in refs] == [source_ds.SOPInstanceUID]


def test_qido_batch_runs_a_task_per_study_and_each_sr_lands_in_orthanc(
    pacs_config: Path, studies: Studies, dicomweb: Any
) -> None:
    settings = ArisSettings.from_flags(engine="fake")
    worklist = "dicomweb://orthanc?ModalitiesInStudy=CT"
    with Store.open() as store:
        summary = run_batch(worklist, "ct", settings, store=store, question="Any hemorrhage?")
        assert summary.counts["done"] == 2
        rows = store.export(summary.job_id)
        assert sorted(r["input"] for r in rows) == sorted(
            f"dicomweb://orthanc/studies/{studies.uid[k]}" for k in ("head", "cardiac")
        )
        report = send_batch(summary.job_id, ["orthanc"], settings=settings, state=PacsState(store))
        assert [r["status"] for r in report.rows] == ["sent", "sent"]
        for row in report.rows:
            study = row["input"].rsplit("/", 1)[1]
            assert row["sr_uid"] in sr_instances(dicomweb, study)
            series = dicomweb.search_for_instances(study, search_filters={"SOPInstanceUID": row["sr_uid"]})
            ds = dicomweb.retrieve_instance(study, series[0]["0020000E"]["Value"][0], row["sr_uid"])
            refs = {
                str(i.ReferencedSOPInstanceUID)
                for s in ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
                for i in s.ReferencedSOPSequence
            }
            name = "head" if study == studies.uid["head"] else "cardiac"
            slices = {
                str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in studies.files[name]
            }
            assert refs <= slices  # the CT slices the model saw, never the segmentation beside them
            assert len(refs) == (4 if name == "head" else 5)
        trail = store.audit_trail(action="pacs.sr")
        assert {t.detail.split()[0] for t in trail if t.detail} == {
            f"study={studies.uid[k]}" for k in ("head", "cardiac")
        }

        # Run again: the SRs now in those studies do not change their digests, so nothing runs twice.
        again = run_batch(worklist, "ct", settings, store=store, question="Any hemorrhage?")
        assert again.job_id == summary.job_id
        assert again.done_now == 0
        report2 = send_batch(summary.job_id, ["orthanc"], settings=settings, state=PacsState(store))
        assert [r["sr_uid"] for r in report2.rows] == [r["sr_uid"] for r in report.rows]
        assert len(PacsState(store).sends()) == 2  # queued once each


def test_aris_run_takes_a_dicomweb_url(pacs_config: Path, studies: Studies) -> None:
    from aris.cli import app

    url = f"dicomweb://orthanc/studies/{studies.uid['head']}"
    r = CliRunner().invoke(app, ["run", "ct", url, "--engine", "fake", "--json", "-q", "Any bleed?"])
    assert r.exit_code == 0, r.output
    record = json.loads(r.stdout)
    assert record["provenance"][0]["sources"] == [url]
    assert record["usage"]["images"] == 4
    assert PASSWORD not in r.output


def test_wildcards_reach_orthanc_raw(pacs_config: Path) -> None:
    """dicomweb-client encodes * as %2A, which Orthanc 1.10 matches literally: the client sends it raw."""
    assert len(source.search("dicomweb://orthanc?PatientName=*&level=series")) >= 5
    assert source.search("dicomweb://orthanc?ModalitiesInStudy=XA") == []


def test_study_not_found(pacs_config: Path) -> None:
    with pytest.raises(InputError, match=r"study 1\.2\.3\.4 is not on PACS 'orthanc'"):
        read("dicomweb://orthanc/studies/1.2.3.4", kind="ct")


def test_pacs_down_is_a_clear_error_after_retries(
    pacs_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(PacsError) as err:
        read("dicomweb://down/studies/1.2.3.4", kind="ct")
    msg = str(err.value)
    assert "PACS 'down' (http://127.0.0.1:" in msg
    assert "cannot connect (connection refused) (3 attempts)" in msg
    assert "pw-of-a-down-pacs" not in msg + caplog.text
    assert caplog.text.count("retrying in") == 2
    assert "0.1 s" in caplog.text  # the backoff doubled (0.05, then 0.1)


def test_pacs_that_hangs_times_out(pacs: Orthanc, pacs_config: Path) -> None:
    pacs.pause()
    try:
        with pytest.raises(PacsError, match=r"no reply within 0\.5 s \(2 attempts\)"):
            source.digest("dicomweb://slow/studies/1.2.3.4")
    finally:
        pacs.resume()


def test_busy_pacs_is_retried_with_backoff(
    pacs: Orthanc, pacs_config: Path, studies: Studies, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PACS answering 503 twice is retried; the third answer (Orthanc's, through a proxy) is used."""

    def respond(rec: Any, index: int) -> Reply:
        if index < 2:
            return Reply(503, body=b"busy")
        up = pacs.session().get(
            pacs.url + rec.path, headers={"Accept": rec.headers.get("Accept", "*/*")}, timeout=10
        )
        return Reply(up.status_code, {"Content-Type": up.headers["Content-Type"]}, up.content)

    with stub_server(respond) as stub:
        text = (
            pacs_config.read_text()
            + f'\n[pacs.busy]\nurl = "{stub.url}/dicom-web"\nretries = 2\nbackoff = 0.05\n'
        )
        pacs_config.write_text(text)
        # Each wait recorded with the number of requests the PACS had seen when it began: the order of
        # events, not the clock, shows a doubling wait between each try.
        waits: list[tuple[float, int]] = []
        real_sleep = dicomweb.time.sleep

        def sleep(delay: float) -> None:
            waits.append((delay, len(stub.requests)))
            real_sleep(delay)

        with monkeypatch.context() as patched:
            patched.setattr(dicomweb.time, "sleep", sleep)
            digest = source.digest(f"dicomweb://busy/studies/{studies.uid['cardiac']}")
        assert digest == source.digest(f"dicomweb://orthanc/studies/{studies.uid['cardiac']}")
        (first, second, third) = stub.requests
        assert first.path == second.path == third.path
        assert waits == [(0.05, 1), (0.1, 2)]


def test_partial_series_fails_with_the_reason(
    pacs: Orthanc, pacs_config: Path, studies: Studies, tmp_path: Path
) -> None:
    """QIDO lists five instances, WADO brings three (a PACS still receiving): no half volume is read."""
    study = studies.uid["cardiac"]

    def respond(rec: Any, index: int) -> Reply:
        up = pacs.session().get(
            pacs.url + rec.path, headers={"Accept": rec.headers.get("Accept", "*/*")}, timeout=10
        )
        body, ctype = up.content, up.headers["Content-Type"]
        if ctype.startswith("multipart/related"):  # a series retrieval: keep the first three parts
            marker = b"--" + ctype.split("boundary=")[1].split(";")[0].strip('"').encode()
            parts = body.split(marker)  # preamble, five parts, closing "--"
            body = marker.join([*parts[:4], b"--\r\n"])
        return Reply(up.status_code, {"Content-Type": ctype}, body)

    with stub_server(respond) as stub:
        pacs_config.write_text(
            pacs_config.read_text() + f'\n[pacs.partial]\nurl = "{stub.url}/dicom-web"\nretries = 0\n'
        )
        with pytest.raises(InputError, match=r"3 of 5 instances retrieved \(partial"):
            read(f"dicomweb://partial/studies/{study}", kind="ct")


def test_credentials_stay_out_of_records_and_logs(
    pacs_config: Path, studies: Studies, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = ArisSettings.from_flags(engine="fake")
    with Store.open() as store:
        summary = run_batch(f"dicomweb://orthanc/studies/{studies.uid['mra']}", "mri", settings, store=store)
        assert summary.counts["done"] == 1
        dumped = json.dumps([store.export(summary.job_id), store.get_job(summary.job_id).params], default=str)
    assert PASSWORD not in dumped + caplog.text
    for phi in PHI:
        assert phi not in caplog.text


def test_wrong_password_names_the_setting_not_the_secret(pacs_config: Path) -> None:
    pacs_config.write_text(
        pacs_config.read_text().replace('password = "s3cret-pw"', 'password = "wrong-pw"', 1)
    )
    with pytest.raises(
        PacsError, match=r"refused our credentials \(HTTP 401\); check username/password"
    ) as err:
        source.search("dicomweb://orthanc?ModalitiesInStudy=CT")
    assert "wrong-pw" not in str(err.value)


def test_unreadable_url_items_fail_and_the_batch_goes_on(
    pacs_config: Path, studies: Studies, tmp_path: Path
) -> None:
    worklist = tmp_path / "list.csv"
    worklist.write_text(
        "path\n"
        f"dicomweb://orthanc/studies/{studies.uid['head']}\n"
        "dicomweb://orthanc/studies/1.2.3.4.5\n"
        "dicomweb://down/studies/1.2.3.4.6\n"
    )
    with Store.open() as store:
        summary = run_batch(worklist, "ct", ArisSettings.from_flags(engine="fake"), store=store)
        rows = {r["input"]: r for r in store.export(summary.job_id)}
    assert summary.counts["done"] == 1
    assert summary.counts["failed"] == 2
    assert "is not on PACS 'orthanc'" in rows["dicomweb://orthanc/studies/1.2.3.4.5"]["error"]
    assert "cannot connect" in rows["dicomweb://down/studies/1.2.3.4.6"]["error"]


def test_requests_carry_basic_auth_and_the_port_in_host(
    pacs: Orthanc, pacs_config: Path, studies: Studies
) -> None:
    """Orthanc builds RetrieveURLs from the Host header: the client keeps the port in it."""
    client = Client("orthanc", connection("orthanc"))
    seen: list[requests.PreparedRequest] = []
    client.session.hooks["response"].append(lambda r, *a, **k: seen.append(r.request))
    (series,) = client.search_series(studies.uid["dx"], [("Modality", "DX")])
    assert f":{pacs.http_port}/" in series["00081190"]["Value"][0]
    assert seen[0].headers["Host"] == f"127.0.0.1:{pacs.http_port}"
    assert seen[0].headers["Authorization"].startswith("Basic ")


def test_instances_come_as_stored_and_decode_here(pacs_config: Path, studies: Studies) -> None:
    """WADO-RS asks for any transfer syntax: the JPEG 2000 film arrives as JPEG 2000 and is decoded here."""
    client = Client("orthanc", connection("orthanc"))
    (series,) = client.search_series(studies.uid["j2k"])
    (ds,) = client.iter_series(studies.uid["j2k"], series["0020000E"]["Value"][0])
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.91"
    local = read(studies.files["j2k"][0], kind="cxr")
    remote = read(f"dicomweb://orthanc/studies/{studies.uid['j2k']}", kind="cxr")
    assert remote.images[0].tobytes() == local.images[0].tobytes()
