"""``aris demo --ui``: the server on 127.0.0.1 with the demo studies already uploaded.

The studies go in the way any client's files do: over the server's own HTTP API (``POST /v1/uploads``,
``POST /v1/uploads/{id}/prepare``, ``POST /v1/jobs``), from a thread that waits for the server to
start. Each study is opened in the UI by a link (``/ui/#upload=<id>&kind=<kind>``) and also run once as
a job, so the Jobs list has answers. The server's jobs and store live under the demo's output folder,
apart from the user's own.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvicorn import Server

from aris.config import ArisSettings
from aris.demo.studies import STUDIES, Study
from aris.engines.base import Engine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Uploaded:
    study: Study
    upload_id: str
    job_id: str | None
    images: int
    link: str


class _QuietServer(Server):
    """uvicorn's server without its signal capture, whose re-raised Ctrl-C ends in a traceback.

    :func:`serve` installs its own handlers: Ctrl-C asks the server to finish and the command exits 0.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def upload_studies(
    base_url: str, inputs: dict[str, Path], *, max_new_tokens: int | None, timeout: float = 120.0
) -> list[Uploaded]:
    """Upload each study through the HTTP API, check the server prepares it, and submit its task."""
    import httpx

    done = []
    with httpx.Client(base_url=base_url, timeout=timeout) as client:
        for s in STUDIES:
            source = inputs[s.key]
            paths = sorted(p for p in source.iterdir() if p.is_file()) if source.is_dir() else [source]
            handles = [p.open("rb") for p in paths]
            try:
                r = client.post(
                    "/v1/uploads",
                    files=[
                        ("files", (p.name, h, "application/octet-stream"))
                        for p, h in zip(paths, handles, strict=True)
                    ],
                )
            finally:
                for h in handles:
                    h.close()
            r.raise_for_status()
            upload_id = r.json()["id"]
            r = client.post(f"/v1/uploads/{upload_id}/prepare", json={"kind": s.kind})
            r.raise_for_status()
            images = len(r.json()["images"])
            options: dict[str, Any] = dict(s.options)
            if max_new_tokens is not None:
                options["max_new_tokens"] = max_new_tokens
            r = client.post(
                "/v1/jobs",
                json={
                    "task": s.task,
                    "uploads": [upload_id],
                    "question": s.question,
                    "options": options,
                    "kind": s.kind,
                },
            )
            r.raise_for_status()
            link = f"{base_url}/ui/#upload={upload_id}&kind={s.kind}"
            done.append(Uploaded(s, upload_id, r.json()["id"], images, link))
    return done


def serve(
    engine: Engine,
    settings: ArisSettings,
    inputs: dict[str, Path],
    home: Path,
    *,
    max_new_tokens: int | None,
    on_ready: Callable[[str, list[Uploaded]], None],
    on_error: Callable[[str], None],
    port: int | None = None,
) -> None:
    """Serve until Ctrl-C (uvicorn handles the signal in this, the main, thread)."""
    import uvicorn

    from aris.server import create_app
    from aris.server.settings import ServerSettings

    host = "127.0.0.1"
    port = port or free_port(host)
    home.mkdir(parents=True, exist_ok=True)
    server_settings = ServerSettings(
        host=host, port=port, keep_uploads=True, db_url=f"sqlite:///{home / 'aris.db'}"
    )
    app_settings = settings.model_copy(update={"home": home})
    app = create_app(server_settings, engine=engine, aris_settings=app_settings)
    server = _QuietServer(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
    )
    base_url = f"http://{host}:{port}"

    def feed() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.should_exit:
            return
        try:
            uploaded = upload_studies(base_url, inputs, max_new_tokens=max_new_tokens)
        except Exception as e:  # reported, and the server stops: a demo that half-worked must say so
            on_error(f"uploading the demo studies failed: {e}")
            server.should_exit = True
            return
        on_ready(base_url, uploaded)

    def stop(signum: int, frame: Any) -> None:
        server.force_exit = server.should_exit  # a second Ctrl-C stops without waiting for jobs
        server.should_exit = True

    thread = threading.Thread(target=feed, name="aris-demo-uploads", daemon=True)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        thread.start()
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    thread.join(timeout=5)
