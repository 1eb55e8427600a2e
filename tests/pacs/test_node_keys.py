"""A routed job's answer is keyed by the model and the pixels that made it: a retry with another model, or
an instance sent again with other pixels under its SOP UID, is never served or recorded under the old key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom

from aris.config import ArisSettings
from aris.context import Models
from aris.engines.fake import FakeEngine
from aris.pacs.results import run_job
from aris.pacs.state import NewJob, PacsState
from aris.store import Store

DATA = Path(__file__).parents[1] / "data" / "dicom"
REL = "1.2.3/1.2.3.4/1.2.3.4.5.dcm"
REPLY = '{"findings": "%s", "impression": "%s"}'


def _job(key: str) -> NewJob:
    return NewJob(
        key=key, study_uid="1.2.3", series_uid="1.2.3.4", rule="cxr", task="cxr-report", kind="auto",
        inputs=[REL], send_to=[],
    )  # fmt: skip


def test_a_retry_with_another_model_and_a_resent_instance_get_their_own_answers(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / REL).parent.mkdir(parents=True)
    shutil.copy(DATA / "cxr" / "highdicom_dx_image.dcm", inbox / REL)
    settings = ArisSettings(home=tmp_path / "home")
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        state = PacsState(store)
        state.add_job(_job("pacs-job-1"))
        small = FakeEngine("model-A", max_context=40)  # fails: the film does not fit
        assert not run_job(
            state.claim_job(), state=state, models=Models(generator=small), settings=settings, inbox=inbox
        )
        state.retry_jobs()
        b = FakeEngine("model-B", replies=[REPLY % ("FROM MODEL B", "B")])
        assert run_job(
            state.claim_job(), state=state, models=Models(generator=b), settings=settings, inbox=inbox
        )
        # model A again, on another rule: its own answer, not model B's (recorded under A's key before)
        a = FakeEngine("model-A", replies=[REPLY % ("FROM MODEL A", "A")])
        state.add_job(_job("pacs-job-2"))
        assert run_job(
            state.claim_job(), state=state, models=Models(generator=a), settings=settings, inbox=inbox
        )
        assert len(a.prompts) == 1
        # the same SOP UID sent again with other pixels: generated anew
        ds = pydicom.dcmread(inbox / REL)
        pixels = ds.pixel_array
        ds.PixelData = (pixels.max() - pixels).astype(pixels.dtype).tobytes()  # same UID, other pixels
        ds.save_as(inbox / REL)
        again = FakeEngine("model-A", replies=[REPLY % ("FROM NEW PIXELS", "A")])
        state.add_job(_job("pacs-job-3"))
        run_job(
            state.claim_job(), state=state, models=Models(generator=again), settings=settings, inbox=inbox
        )
        assert len(again.prompts) == 1
