"""What the config file says about PACS: named connections, the DICOM node and its routing rules.

``~/.config/aris/config.toml``::

    [pacs.orthanc]                      # dicomweb://orthanc/... and a DIMSE peer
    url = "http://127.0.0.1:8042/dicom-web"
    username = "aris"
    password = "..."                   # a secret: never logged, never recorded
    ae_title = "ORTHANC"
    host = "127.0.0.1"
    port = 4242

    [node]
    ae_title = "ARIS"
    port = 11112
    send_to = ["orthanc"]

    [[node.rules]]
    name = "head-ct"
    task = "ct"
    modality = "CT"
    body_part = "HEAD|BRAIN"

This module is imported by :mod:`aris.config`, so it imports nothing heavier than pydantic.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # 16 printable characters, no backslash


def _ae(value: str) -> str:
    value = value.strip()
    if not AE_TITLE.match(value):
        raise ValueError(f"{value!r} is not a DICOM AE title (1-16 printable characters, no backslash)")
    return value


class PacsConnection(BaseModel):
    """One PACS: its DICOMweb root and/or its DIMSE address, and how patient to be with it."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None, description="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web (QIDO, WADO, STOW)."
    )
    username: str | None = Field(default=None, description="HTTP Basic user.")
    password: SecretStr | None = Field(default=None, description="HTTP Basic password (a secret).")
    token: SecretStr | None = Field(default=None, description="Bearer token, instead of a user (a secret).")
    verify_tls: bool = Field(default=True, description="Check the server's TLS certificate.")
    timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for a connection or a reply.")
    retries: int = Field(
        default=3, ge=0, description="Retries on connection errors, timeouts and 429/5xx, with backoff."
    )
    backoff: float = Field(default=0.5, ge=0, description="First retry delay in seconds; doubles each time.")
    ae_title: str | None = Field(
        default=None, description="The PACS's DICOM AE title (C-ECHO/FIND/MOVE/STORE)."
    )
    host: str | None = Field(default=None, description="The PACS's DICOM host.")
    port: int | None = Field(default=None, ge=1, le=65535, description="The PACS's DICOM port.")
    send: Literal["auto", "stow", "c-store"] = Field(
        default="auto", description="How results go back: STOW-RS, C-STORE, or auto (STOW when url is set)."
    )

    @field_validator("ae_title")
    @classmethod
    def _check_ae(cls, value: str | None) -> str | None:
        return None if value is None else _ae(value)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.rstrip("/")
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"url must be an http(s) DICOMweb root, not {value!r}")
        if re.match(r"^https?://[^/]*@", value):
            raise ValueError("put credentials in username/password or token, not in the url")
        return value

    @model_validator(mode="after")
    def _reachable(self) -> PacsConnection:
        dimse = (self.ae_title, self.host, self.port)
        if any(v is not None for v in dimse) and not all(v is not None for v in dimse):
            raise ValueError("a DIMSE peer needs all of ae_title, host and port")
        if self.url is None and self.ae_title is None:
            raise ValueError("a PACS needs a DICOMweb url, or ae_title/host/port, or both")
        if self.send == "stow" and self.url is None:
            raise ValueError("send = 'stow' needs a DICOMweb url")
        if self.send == "c-store" and self.ae_title is None:
            raise ValueError("send = 'c-store' needs ae_title, host and port")
        return self

    @property
    def has_dicomweb(self) -> bool:
        return self.url is not None

    @property
    def has_dimse(self) -> bool:
        return self.ae_title is not None

    @property
    def send_method(self) -> Literal["stow", "c-store"]:
        if self.send != "auto":
            return self.send
        return "stow" if self.url is not None else "c-store"


class Rule(BaseModel):
    """A routing rule: which series of a received study run which task, and where the result goes.

    Patterns are regular expressions matched case-insensitively against the series' first instance;
    an unset pattern matches anything. Every rule that matches a study fires (each makes its own jobs).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Shown in status and recorded with each job.")
    task: str = Field(description="The task to run (aris tasks).")
    modality: str | None = Field(default=None, description="Modality pattern, e.g. 'CT' or 'CR|DX'.")
    body_part: str | None = Field(default=None, description="BodyPartExamined pattern, e.g. 'CHEST'.")
    series_description: str | None = Field(default=None, description="SeriesDescription pattern.")
    sop_class: list[str] = Field(
        default_factory=list,
        description="SOP classes (UIDs or names like 'CT Image Storage'); default: those the task reads.",
    )
    min_instances: int = Field(default=1, ge=1, description="Series with fewer instances are skipped.")
    select: Literal["largest", "each"] = Field(
        default="largest",
        description="Volumes: the largest matching series, or each. Images: the largest image, or each.",
    )
    kind: str | None = Field(default=None, description="Input kind (default: the task's own).")
    question: str | None = Field(default=None, description="The question, for tasks that take one.")
    options: dict[str, Any] = Field(default_factory=dict, description="The task's options.")
    send_to: list[str] | None = Field(
        default=None, description="PACS names the SR goes to (default: the node's send_to)."
    )
    gsps: bool = Field(
        default=False, description="Localization: also send a GSPS with the boxes (for viewers without SR)."
    )

    @field_validator("modality", "body_part", "series_description")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as e:
                raise ValueError(f"not a regular expression: {value!r} ({e})") from None
        return value


class NodeSettings(BaseModel):
    """The DICOM node: its AE, where it listens, when a study counts as complete, and its rules."""

    model_config = ConfigDict(extra="forbid")

    ae_title: str = Field(default="ARIS", description="The node's AE title.")
    host: str = Field(default="127.0.0.1", description="Address to listen on (loopback by default).")
    port: int = Field(default=11112, ge=1, le=65535, description="DICOM port to listen on.")
    allowed_aes: list[str] = Field(
        default_factory=list, description="Calling AE titles allowed to connect; empty allows any."
    )
    idle_s: float = Field(
        default=30.0, gt=0, description="A study is complete after this many seconds with nothing received."
    )
    wait_s: float = Field(
        default=300.0,
        ge=0,
        description="How long a study that looks partial (interrupted push, fewer instances than its PACS "
        "holds) may wait for the rest before it fails with the reason.",
    )
    rules: list[Rule] = Field(default_factory=list, description="Routing rules, see Rule.")
    send_to: list[str] = Field(default_factory=list, description="Default PACS names for results.")
    results_dir: Path | None = Field(default=None, description="Also write every SR/GSPS here.")
    inbox: Path | None = Field(default=None, description="Received instances (default ARIS_HOME/pacs/inbox).")
    send_backoff_s: float = Field(
        default=5.0, gt=0, description="First delay before a failed send is retried."
    )
    send_backoff_max_s: float = Field(default=300.0, gt=0, description="Longest delay between send retries.")
    tick_s: float = Field(default=0.5, gt=0, description="How often the node checks for work.")

    @field_validator("ae_title")
    @classmethod
    def _check_ae(cls, value: str) -> str:
        return _ae(value)

    @field_validator("allowed_aes")
    @classmethod
    def _check_aes(cls, value: list[str]) -> list[str]:
        return [_ae(v) for v in value]

    @model_validator(mode="after")
    def _unique_rules(self) -> NodeSettings:
        names = [r.name for r in self.rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"rule names must be unique: {', '.join(dup)}")
        return self


__all__ = ["NodeSettings", "PacsConnection", "Rule"]
