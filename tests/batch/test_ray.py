"""--executor ray: preparation and generation as Ray tasks on a local Ray instance this test starts."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aris.batch import BatchOptions, run_batch
from aris.config import ArisSettings
from aris.store import Store

from .conftest import add_corrupt_files


@pytest.fixture
def local_ray() -> Iterator[None]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    tmp = tempfile.mkdtemp(prefix="aris-ray-t-", dir="/tmp")  # short: Ray's sockets live under it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=tmp)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def test_ray_executor_runs_and_resumes_like_local(
    local_ray: None, tmp_path: Path, images: Path, dx_dicom: Path
) -> None:
    import ray

    expected = add_corrupt_files(images, dx_dicom)
    opts = BatchOptions(executor="ray")
    with Store.open(f"sqlite:///{tmp_path / 'ray.db'}") as store:
        s = run_batch(images, "cxr-report", ArisSettings(engine="fake"), store=store, options=opts)
        assert s.counts == {"pending": 0, "running": 0, "done": 6, "failed": 3, "total": 9}
        # The work ran in Ray worker processes; only this process (the driver) wrote the store.
        assert s.prepare_pids
        assert s.generate_pids
        assert os.getpid() not in s.prepare_pids | s.generate_pids
        failed = {Path(it.input_ref).name: it.error or "" for it in store.items(s.job_id, "failed")}
        assert {n: p in failed[n] for n, p in expected.items()} == dict.fromkeys(expected, True)
        assert all(r["result"]["text"] == "ok" for r in store.export(s.job_id) if r["status"] == "done")
        assert ray.is_initialized()  # the runner leaves a Ray instance it did not start

        again = run_batch(images, "cxr-report", ArisSettings(engine="fake"), store=store, options=opts)
        assert again.job_id == s.job_id
        assert (again.done_now, again.failed_now) == (0, 0)
        assert len(store.audit_trail(s.job_id, "item.done")) == 6
