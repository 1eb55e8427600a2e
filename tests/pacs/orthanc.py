"""A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb`` + ``orthanc-gdcm``) for tests.

Started on free loopback ports with a temporary storage folder, HTTP Basic auth on, and the Aris
node declared as a DICOM modality (so Orthanc can push to it and C-MOVE to it). Stopped with SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from aris.server.local import free_port

BINARY = shutil.which("Orthanc") or "/usr/sbin/Orthanc"  # /usr/sbin is not on every user's PATH
PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
PLUGINS = ("libOrthancDicomWeb.so", "libOrthancGdcm.so")
USER, PASSWORD = "aris", "s3cret-pw"


@dataclass
class Orthanc:
    http_port: int
    dicom_port: int
    aet: str
    node_aet: str
    node_port: int
    storage: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def session(self) -> requests.Session:
        s = requests.Session()
        s.auth = (USER, PASSWORD)
        return s

    def rest(self, method: str, path: str, **kw: object) -> requests.Response:
        r = self.session().request(method, self.url + path, timeout=30, **kw)  # type: ignore[arg-type]
        r.raise_for_status()
        return r

    def study_id(self, study_uid: str) -> str | None:
        """Orthanc's own id of a study, or None (DICOMweb DELETE is not supported in 1.10)."""
        found = self.rest("POST", "/tools/lookup", data=study_uid).json()
        return next((f["ID"] for f in found if f["Type"] == "Study"), None)

    def delete_study(self, study_uid: str) -> None:
        sid = self.study_id(study_uid)
        if sid is not None:
            self.rest("DELETE", f"/studies/{sid}")

    def clear(self) -> None:
        for sid in self.rest("GET", "/studies").json():
            self.rest("DELETE", f"/studies/{sid}")

    def pause(self) -> None:
        """SIGSTOP: the ports stay open and accept, nothing answers (a hung PACS)."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)


def missing() -> list[str]:
    """What of Orthanc and its plugins is not installed."""
    out = [] if Path(BINARY).exists() else ["Orthanc"]
    return out + [p for p in PLUGINS if not (PLUGIN_DIR / p).exists()]


@contextmanager
def orthanc(tmp: Path, *, node_aet: str = "ARIS", node_port: int | None = None) -> Iterator[Orthanc]:
    """Run Orthanc until the block ends. ``node_port``: where the Aris node will listen."""
    http_port, dicom_port = free_port(), free_port()
    node_port = node_port or free_port()
    storage = tmp / "orthanc-db"
    storage.mkdir(parents=True)
    config = {
        "Name": "aris-test",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(PLUGIN_DIR / p) for p in PLUGINS],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{http_port}"},
        "DicomModalities": {"aris": [node_aet, "127.0.0.1", node_port]},
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowMove": True,
        "DicomScuTimeout": 10,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "SaveJobs": False,
        "StableAge": 1,
        "HttpTimeout": 10,
    }
    cfg = tmp / "orthanc.json"
    cfg.write_text(json.dumps(config))
    log = (tmp / "orthanc.log").open("wb")
    proc = subprocess.Popen([BINARY, str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    server = Orthanc(http_port, dicom_port, "ORTHANC", node_aet, node_port, storage, proc)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited ({proc.returncode}): {(tmp / 'orthanc.log').read_text()[-2000:]}"
                )
            try:
                server.rest("GET", "/system")
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield server
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
