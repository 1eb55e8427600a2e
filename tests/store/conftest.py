"""A real PostgreSQL for the store tests (Debian's postgresql: see SERVICE-FACTS section 6)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Registered here so --strict-markers accepts it before pyproject.toml lists it.
    config.addinivalue_line("markers", "postgres: needs PostgreSQL server binaries (Debian postgresql)")


def pg_bindir() -> Path | None:
    """Where initdb and pg_ctl live: pg_config's bindir, else Debian's versioned folder."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        cand = Path(out.stdout.strip())
        if (cand / "initdb").exists():
            return cand
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(d, "initdb").exists():
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; stopped and removed afterwards."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.fail(
            "PostgreSQL server binaries not found (no pg_config --bindir, no /usr/lib/postgresql/*/bin): "
            "install Debian's postgresql (apt-get install postgresql); scripts/test.sh does it in CI"
        )
    # initdb refuses root: run the server as the postgres user when we are root.
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="aris-pg-"))
    data = root / "data"
    if as_pg:
        shutil.chown(root, "postgres")
    port = _free_port()
    log = root / "log"

    def run(*args: str) -> None:
        r = subprocess.run([*as_pg, *args], capture_output=True, text=True, check=False, timeout=60)
        if r.returncode:
            pytest.fail(f"{Path(args[0]).name} failed: {r.stderr or r.stdout}")

    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8",
        "--locale=C.UTF-8")  # fmt: skip
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
        f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off -c full_page_writes=off", "start")  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, check=False, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
