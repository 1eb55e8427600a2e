"""API keys: who may use the server, for what, and how much.

Keys are named. At rest only their SHA-256 digests are kept (a key file written by ``aris keygen``);
the key itself is shown once, when it is made. API keys are long random tokens, so a fast digest is
the right tool here: it cannot be brute-forced, and checking a request costs microseconds (a password
hash such as Argon2 would cost every request tens of milliseconds for no gain).

A key file (TOML)::

    [[key]]
    name = "pacs-bridge"
    sha256 = "9f86d081884c7d65..."  # the digest, never the key
    tasks = ["cxr-report", "ct"]     # optional allow-list: task names, and "chat" for /v1/chat/completions
    max_concurrent = 2               # optional: requests and jobs in flight (429 beyond)
    rate_per_minute = 30             # optional: work requests (POST) per minute (429 beyond)

The audit trail names the key (``key:pacs-bridge``) for every job and chat request; never the key.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aris.errors import ConfigError

NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DIGEST = re.compile(r"^[0-9a-f]{64}$")
ANONYMOUS = "anonymous"  # the caller of a keyless (loopback-only) server

# POST routes that are not the task API, by the scope a restricted key must list to use them.
# A router added later names its scope here; a restricted key may not POST to a route without one.
ROUTE_SCOPES: dict[str, str] = {
    "/v1/chat/completions": "chat",
    "/v1/audio/transcriptions": "transcribe",
    "/v1/embeddings": "embed",
    "/v1/search": "embed",
}
# The task API and MCP check the task itself (at submission / in run_task).
TASK_API_PREFIXES = ("/v1/uploads", "/v1/jobs", "/mcp")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a named key (or the anonymous caller of a keyless server) and its limits."""

    name: str
    tasks: frozenset[str] | None = None  # None: every task and route
    max_concurrent: int | None = None
    rate_per_minute: int | None = None

    @property
    def actor(self) -> str:
        """The audit trail's name for this caller."""
        return f"key:{self.name}" if self.name != ANONYMOUS else ANONYMOUS

    def may_run(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks

    def may_post(self, path: str) -> bool:
        """Whether this caller may send work to ``path`` (task checks come later, per task)."""
        if self.tasks is None:
            return True
        if path.startswith(TASK_API_PREFIXES):
            return True
        scope = ROUTE_SCOPES.get(path.rstrip("/"))
        return scope is not None and scope in self.tasks


@dataclass(frozen=True)
class StoredKey:
    digest: str
    principal: Principal


class KeyRing:
    """The keys a server accepts. Empty: no key is needed (and the server must stay on loopback)."""

    def __init__(self, keys: Iterable[StoredKey] = ()) -> None:
        self.keys = list(keys)
        names = [k.principal.name for k in self.keys]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"API key name(s) used twice: {', '.join(dupes)}")

    def __bool__(self) -> bool:
        return bool(self.keys)

    def identify(self, token: str) -> Principal | None:
        """The key's principal, or None. Every digest is compared, in constant time each."""
        given = digest(token)
        found = None
        for k in self.keys:
            if secrets.compare_digest(given, k.digest):
                found = k.principal
        return found

    @classmethod
    def build(
        cls,
        *,
        single_key: str | None,
        keys_file: Path | None,
        default_max_concurrent: int | None = None,
        default_rate_per_minute: int | None = None,
    ) -> KeyRing:
        keys: list[StoredKey] = []
        if single_key is not None:
            if not single_key.strip():
                raise ConfigError("the API key is empty: give a real key or none (loopback only)")
            keys.append(
                StoredKey(
                    digest(single_key),
                    Principal("default", None, default_max_concurrent, default_rate_per_minute),
                )
            )
        if keys_file is not None:
            keys += load_keys_file(keys_file, default_max_concurrent, default_rate_per_minute)
        return cls(keys)


def load_keys_file(
    path: Path, default_max_concurrent: int | None = None, default_rate_per_minute: int | None = None
) -> list[StoredKey]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the API keys file ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not a valid TOML keys file ({e})") from None
    entries = data.get("key", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: no [[key]] entries (make one with `aris keygen NAME --keys-file {path}`)")
    return [
        _entry(path, i, e, default_max_concurrent, default_rate_per_minute) for i, e in enumerate(entries)
    ]


def _entry(
    path: Path, i: int, e: Any, default_max_concurrent: int | None, default_rate_per_minute: int | None
) -> StoredKey:
    where = f"{path}: key #{i + 1}"
    if not isinstance(e, Mapping):
        raise ConfigError(f"{where}: not a table")
    unknown = set(e) - {"name", "sha256", "tasks", "max_concurrent", "rate_per_minute"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    name, dig = e.get("name"), e.get("sha256")
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{where}: name must be 1-64 letters, digits, '.', '_' or '-'")
    if not isinstance(dig, str) or not DIGEST.match(dig):
        raise ConfigError(f"{where} ({name}): sha256 must be 64 lowercase hex digits (the key's digest)")
    tasks = e.get("tasks")
    if tasks is not None and (not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks)):
        raise ConfigError(f"{where} ({name}): tasks must be a list of task names")
    limits = {}
    for field, default in (
        ("max_concurrent", default_max_concurrent),
        ("rate_per_minute", default_rate_per_minute),
    ):
        value = e.get(field, default)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"{where} ({name}): {field} must be a whole number of at least 1")
        limits[field] = value
    principal = Principal(
        name,
        frozenset(tasks) if tasks is not None else None,
        limits["max_concurrent"],
        limits["rate_per_minute"],
    )
    return StoredKey(dig, principal)


def parse_bearer(authorization: bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), else None."""
    if not authorization:
        return None
    try:
        text = authorization.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    scheme, _, token = text.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def new_key_entry(
    name: str,
    *,
    tasks: list[str] | None = None,
    max_concurrent: int | None = None,
    rate_per_minute: int | None = None,
) -> tuple[str, str]:
    """A new random key and the TOML entry (holding only its digest) to append to a keys file."""
    if not NAME.match(name):
        raise ConfigError("a key name is 1-64 letters, digits, '.', '_' or '-'")
    key = "aris-" + secrets.token_urlsafe(32)
    lines = ["[[key]]", f'name = "{name}"', f'sha256 = "{digest(key)}"']
    if tasks:
        lines.append("tasks = [" + ", ".join(f'"{t}"' for t in tasks) + "]")
    if max_concurrent is not None:
        lines.append(f"max_concurrent = {max_concurrent}")
    if rate_per_minute is not None:
        lines.append(f"rate_per_minute = {rate_per_minute}")
    return key, "\n".join(lines) + "\n"


def append_key(path: Path, name: str, entry: str) -> None:
    """Add an entry to a keys file, created readable by its owner only."""
    if path.exists():
        existing = {k.principal.name for k in load_keys_file(path)}
        if name in existing:
            raise ConfigError(f"{path}: a key named {name!r} exists already")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(("\n" if f.tell() else "") + entry)
