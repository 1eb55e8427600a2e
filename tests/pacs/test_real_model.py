"""End to end with a real model: Orthanc pushes a film, the node runs the tiny Gemma 3 VLM (transformers,
random weights, grammar-constrained so its answer validates), and the SR lands back in Orthanc."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom

from aris.config import ArisSettings
from aris.pacs.node import Node
from aris.pacs.settings import Rule
from tests.pacs.conftest import Studies
from tests.pacs.orthanc import Orthanc
from tests.pacs.test_node import evidence, orthanc_push, sr_of, types


def test_tiny_vlm_behind_the_node(
    pacs: Orthanc, node_settings: Callable[..., ArisSettings], studies: Studies, dicomweb: Any, tiny_vlm: Path
) -> None:
    from aris.engines.transformers import TransformersEngine

    rule = Rule(
        name="film-triage", task="classify", modality="DX", options={"choices": ["normal", "abnormal"]}
    )
    engine = TransformersEngine(str(tiny_vlm))
    try:
        with Node(node_settings([rule]), models=engine) as node:
            orthanc_push(pacs, studies.uid["dx"])
            events = node.wait_for(lambda ev: "sent" in types(ev) or "job.failed" in types(ev), timeout=120)
            assert "job.failed" not in types(events), events
            (job,) = node.state.jobs()
            result = node.state.store.result_for(job.item_key or "")
    finally:
        engine.close()
    assert result is not None
    assert result["engine"] == "transformers"
    assert result["parsed"]["answer"] in ("normal", "abnormal")
    ds = sr_of(dicomweb, studies.uid["dx"], job.sr_uid)
    texts = [
        str(c.TextValue) for i in ds.ContentSequence if i.ValueType == "CONTAINER" for c in i.ContentSequence
    ]
    assert f"answer: {result['parsed']['answer']}" in texts
    algo = {
        str(i.ConceptNameCodeSequence[0].CodeValue): str(i.TextValue)
        for i in ds.ContentSequence
        if i.ValueType == "TEXT"
    }
    assert algo["111001"] == result["model"]  # Algorithm Name: the model that answered
    assert f"prompt_sha256={result['prompt_sha256']}" in [
        str(i.TextValue) for i in ds.ContentSequence if i.ValueType == "TEXT"
    ]
    film = pydicom.dcmread(studies.files["dx"][0], stop_before_pixels=True)
    assert evidence(ds) == {str(film.SOPInstanceUID)}
