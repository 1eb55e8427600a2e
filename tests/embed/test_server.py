"""MedSigLIP over the real server (uvicorn): /v1/embeddings with the official openai client, the
OpenAI-compatible embedder against it, /v1/index/search, a zero-shot job, and MCP over streamable HTTP.

The generator is the scripted engine (nothing here generates text); the embedder is the tiny random
SigLIP on the real transformers path.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from aris.config import ArisSettings
from aris.context import Models
from aris.embed import identity_key
from aris.embed.index import ImageIndex
from aris.embed.store import EmbeddingStore
from aris.runner import run_task
from aris.server.local import live_server

H = {"Authorization": "Bearer k"}


def _structured(result) -> dict:  # type: ignore[no-untyped-def]
    assert not result.is_error, result.content
    value = result.structured_content
    if value is not None:
        return value.get("result", value) if isinstance(value, dict) else value
    return json.loads(result.content[0].text)


def test_embeddings_search_jobs_and_mcp_on_a_live_server(  # type: ignore[no-untyped-def]
    embed_env: Path, embedder, class_folder: Path, aris_home: Path, samples, monkeypatch
) -> None:
    import mcp
    from mcp.client.streamable_http import streamable_http_client
    from openai import OpenAI

    from aris.embed.remote import OpenAIEmbedder
    from aris.engines.fake import FakeEngine
    from aris.server import create_app
    from aris.server.settings import ServerSettings

    settings = ArisSettings.from_flags()
    # The server's settings name the embedder; jobs and MCP must use them, not the environment.
    monkeypatch.delenv("ARIS_EMBED_MODEL")
    store = EmbeddingStore.open(settings)
    ix = ImageIndex.open(settings)
    ix.add([class_folder], embedder, store)
    ix.close()
    store.close()

    app = create_app(
        ServerSettings(api_key="k", mcp_roots=[str(class_folder)]),
        engine=FakeEngine(),
        aris_settings=settings,
    )
    img = class_folder / "ct_slice" / "03.png"
    with live_server(app) as url:
        # -- /v1/embeddings through the official client (it asks for base64 by default) ---------------
        client = OpenAI(base_url=f"{url}/v1", api_key="k")
        texts = ["pleural effusion", "no finding"]
        out = client.embeddings.create(model="medsiglip", input=texts)
        got = np.array([d.embedding for d in out.data], dtype=np.float32)
        np.testing.assert_allclose(got, embedder.embed_texts(texts), atol=1e-5)
        out = client.embeddings.create(model="medsiglip", input=texts, encoding_format="float")
        np.testing.assert_allclose(np.array([d.embedding for d in out.data]), got, atol=1e-6)
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "x"}).status_code == 401
        bad = httpx.post(f"{url}/v1/embeddings", json={"input": ["a path"], "modality": "image"}, headers=H)
        assert bad.status_code == 400
        assert "data:image" in bad.json()["error"]["message"]

        # -- the OpenAI-compatible embedder against it: same embeddings, same identity ----------------
        remote = OpenAIEmbedder(f"{url}/v1", "medsiglip", api_key="k")
        from PIL import Image

        images = [Image.open(img), Image.open(class_folder / "pathology" / "00.png")]
        cos = np.sum(remote.embed_images(images) * embedder.embed_images(images), axis=1)
        assert cos.min() > 0.999  # the same pixels, to within 8-bit rounding
        assert remote.score_params() == pytest.approx(embedder.score_params())
        assert identity_key(remote.identity()) == identity_key(embedder.identity())
        assert str(embed_env) not in json.dumps(remote.identity()["model"])  # no server path leaks
        remote_settings = ArisSettings.from_flags(
            embed_engine="openai", embed_base_url=f"{url}/v1", embed_api_key="k"
        )
        with Models(remote_settings) as models:
            far = run_task(
                "zero-shot", img, models=models, options={"labels": ["adipose", "mucus", "debris"]}
            )
        near = run_task(
            "zero-shot", img, models=Models(settings), options={"labels": ["adipose", "mucus", "debris"]}
        )
        assert far.engine == "openai"
        for lab in ("adipose", "mucus", "debris"):
            assert far.parsed["softmax"][lab] == pytest.approx(near.parsed["softmax"][lab], abs=2e-3)

        # -- /v1/index/search by an uploaded image and by text -----------------------------------------
        up = httpx.post(
            f"{url}/v1/uploads", files=[("files", ("q.png", img.read_bytes(), "image/png"))], headers=H
        )
        uid = up.json()["id"]
        r = httpx.post(f"{url}/v1/index/search", json={"upload_id": uid, "k": 3}, headers=H)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["results"][0]["display"] == "dataset/ct_slice/03.png"
        assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert body["count"] == 15
        assert str(class_folder) not in r.text
        assert str(aris_home) not in r.text
        r = httpx.post(f"{url}/v1/index/search", json={"text": "adipose tissue", "k": 2}, headers=H)
        assert len(r.json()["results"]) == 2
        bad = httpx.post(f"{url}/v1/index/search", json={"text": "a", "upload_id": uid}, headers=H)
        assert bad.status_code == 422  # Aris's own routes name the field with 422 (OpenAI's routes: 400)
        assert "text or upload_id" in bad.json()["error"]["message"]

        # -- zero-shot as a job (what the web UI submits) ----------------------------------------------
        job = httpx.post(
            f"{url}/v1/jobs",
            json={"task": "zero-shot", "uploads": [uid], "options": {"label_set": "pathology"}},
            headers=H,
        )
        assert job.status_code == 202, job.text
        deadline = time.monotonic() + 120
        while (rec := httpx.get(f"{url}/v1/jobs/{job.json()['id']}", headers=H).json())["status"] not in (
            "done",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert rec["status"] == "done", rec["error"]
        assert len(rec["result"]["parsed"]["softmax"]) == 9
        assert rec["result"]["notice"].startswith("Preliminary")

        # -- MCP: zero-shot through run_task, and search_images ----------------------------------------
        async def go() -> None:
            http = httpx.AsyncClient(headers=H, timeout=120)
            async with (
                streamable_http_client(f"{url}/mcp", http_client=http) as (read, write, *_),
                mcp.ClientSession(read, write) as s,
            ):
                await s.initialize()
                names = {t.name for t in (await s.list_tools()).tools}
                assert "search_images" in names
                zs = _structured(
                    await s.call_tool(
                        "run_task",
                        {
                            "task": "zero-shot",
                            "paths": [str(img)],
                            "options": {"labels": ["adipose", "mucus"]},
                        },
                    )
                )
                assert zs["parsed"]["softmax"]["adipose"] == pytest.approx(
                    run_task(
                        "zero-shot", img, models=Models(settings), options={"labels": ["adipose", "mucus"]}
                    ).parsed["softmax"]["adipose"],
                    abs=1e-6,
                )
                found = _structured(await s.call_tool("search_images", {"path": str(img), "k": 2}))
                assert found["results"][0]["display"] == "dataset/ct_slice/03.png"
                outside = await s.call_tool("search_images", {"path": str(samples("dicom/cxr/RG1_UNCR.dcm"))})
                assert outside.is_error

        asyncio.run(go())
