"""One real Orthanc for the PACS tests, loaded with sample studies through STOW-RS (dicomweb-client).

Every test gets its own ARIS_HOME (store, inbox, outbox) and a config file naming the PACS:
``orthanc`` (DICOMweb + DIMSE, HTTP Basic auth), ``orthanc-dimse`` (sends by C-STORE), ``down`` (a
closed port) and ``slow`` (Orthanc with a short timeout, for when it is paused).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from aris.config import ArisSettings
from aris.pacs.settings import NodeSettings, Rule
from aris.server.local import free_port
from tests.pacs.orthanc import PASSWORD, USER, Orthanc, missing, orthanc

D = "dicom/"
STUDY_FILES = {
    "head": [f"{D}ct_series/head_ct2_4slices/{n}" for n in ("17106", "17136", "17166", "17196")]
    + [f"{D}ct_series/seg_image_ct_binary_for_head_ct2.dcm"],
    "cardiac": [f"{D}ct_series/cardiac_ct5n_5slices/{n}" for n in ("2062", "2392", "2693", "3023", "3353")],
    "dx": [f"{D}cxr/highdicom_dx_image.dcm"],
    "j2k": [f"{D}cxr/RG1_J2KI.dcm"],
    "mra": [
        f"{D}mr_series/mra_mr700_7slices/{n}"
        for n in ("4467", "4528", "4558", "4588", "4618", "4648", "4678")
    ],
}
# What the sample files say about their patients: these must never reach a log or the audit trail.
PHI = ("Doe^Archibald", "77654033", "Dog^AVeryGood")


class Studies:
    """The loaded studies: UIDs and the sample files of each."""

    def __init__(self, samples: Any) -> None:
        self.files = {k: [samples(p) for p in v] for k, v in STUDY_FILES.items()}
        self.uid = {
            k: str(pydicom.dcmread(v[0], stop_before_pixels=True).StudyInstanceUID)
            for k, v in self.files.items()
        }

    def datasets(self, name: str) -> list[pydicom.Dataset]:
        return [pydicom.dcmread(p) for p in self.files[name]]


@pytest.fixture(scope="session")
def pacs(tmp_path_factory: pytest.TempPathFactory, samples: Any) -> Iterator[Orthanc]:
    """Orthanc with the sample studies; the Aris node is its modality ``aris`` (AE ARIS)."""
    if missing():
        pytest.fail(
            "Orthanc with its DICOMweb and GDCM plugins is needed (apt-get install orthanc orthanc-dicomweb "
            f"orthanc-gdcm; scripts/test.sh installs them); missing: {', '.join(missing())}"
        )
    with orthanc(tmp_path_factory.mktemp("orthanc"), node_port=free_port()) as server:
        client = DICOMwebClient(server.dicomweb, session=server.session())
        studies = Studies(samples)
        for name in STUDY_FILES:
            client.store_instances(studies.datasets(name))
        yield server


@pytest.fixture(scope="session")
def studies(samples: Any) -> Studies:
    return Studies(samples)


@pytest.fixture
def dicomweb(pacs: Orthanc) -> DICOMwebClient:
    """dicomweb-client on the test Orthanc, as a user would make it (for reading results back)."""
    return DICOMwebClient(pacs.dicomweb, session=pacs.session())


def config_text(pacs: Orthanc, down_port: int) -> str:
    return f"""
[pacs.orthanc]
url = "{pacs.dicomweb}"
username = "{USER}"
password = "{PASSWORD}"
ae_title = "ORTHANC"
host = "127.0.0.1"
port = {pacs.dicom_port}
timeout = 10
retries = 1
backoff = 0.1

[pacs.orthanc-dimse]
ae_title = "ORTHANC"
host = "127.0.0.1"
port = {pacs.dicom_port}
timeout = 1
retries = 0

[pacs.down]
url = "http://127.0.0.1:{down_port}/dicom-web"
username = "{USER}"
password = "pw-of-a-down-pacs"
retries = 2
backoff = 0.05
timeout = 1

[pacs.slow]
url = "{pacs.dicomweb}"
username = "{USER}"
password = "{PASSWORD}"
timeout = 0.5
retries = 1
backoff = 0.05

[node]
ae_title = "ARIS"
port = {pacs.node_port}
idle_s = 0.4
wait_s = 2.0
tick_s = 0.05
send_backoff_s = 0.2
send_backoff_max_s = 1.0
send_to = ["orthanc"]
"""


@pytest.fixture
def pacs_config(pacs: Orthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file naming the test PACS, used by every code path (library, batch workers, CLI)."""
    path = tmp_path / "config.toml"
    path.write_text(config_text(pacs, free_port()))
    monkeypatch.setenv("ARIS_CONFIG", str(path))
    return path


@pytest.fixture
def node_settings(pacs_config: Path) -> Callable[..., ArisSettings]:
    """Settings from the config file with the node's rules (and any node setting) replaced."""

    def make(rules: list[Rule], **node: Any) -> ArisSettings:
        base = ArisSettings.from_flags(engine="fake")
        cfg = NodeSettings.model_validate(
            {**base.node.model_dump(), **node, "rules": [r.model_dump() for r in rules]}
        )
        return base.model_copy(update={"node": cfg})

    return make
