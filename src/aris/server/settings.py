"""Server settings. Safe by default: loopback only, no CORS, no PHI in access logs."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from aris.errors import ConfigError

# A key that guards a network-facing server must not be guessable: 16 characters is the floor.
MIN_NETWORK_KEY_LENGTH = 16


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARIS_SERVER_", extra="ignore")

    host: str = Field(
        default="127.0.0.1", description="Bind address. Anything but loopback needs an API key."
    )
    port: int = Field(default=8765, ge=0, le=65535, description="Port (0 picks a free one).")
    api_key: SecretStr | None = Field(
        default=None,
        description="One bearer key clients must send, named 'default' (env ARIS_SERVER_API_KEY).",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="TOML file of named keys, stored as SHA-256 digests, each with optional task "
        "allow-list and limits (see `aris keygen`; env ARIS_SERVER_API_KEYS_FILE).",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names clients may address the server by besides loopback and the bind "
        "address (the name a reverse proxy forwards). Other Host headers get 421.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Allowed browser origins; CORS is off when empty."
    )
    max_upload_mb: int = Field(default=2048, ge=1, description="Largest upload accepted (HTTP 413 beyond).")
    max_request_mb: int = Field(default=64, ge=1, description="Largest JSON request body (images inline).")
    max_tokens: int = Field(
        default=8192, ge=1, description="Largest max_tokens / max_new_tokens a client may ask for."
    )
    upload_ttl_s: int = Field(
        default=3600, ge=1, description="Uploads no job has used are removed after this many seconds."
    )
    key_max_concurrent: int | None = Field(
        default=None, ge=1, description="Default per-key limit on requests and jobs in flight (429 beyond)."
    )
    key_rate_per_minute: int | None = Field(
        default=None, ge=1, description="Default per-key limit on work requests (POST) per minute (429)."
    )
    shutdown_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="On SIGTERM, how long in-flight work may finish before it is cancelled.",
    )
    keep_uploads: bool = Field(
        default=False, description="Keep uploaded files after their job (default: removed)."
    )
    log_phi: bool = Field(default=False, description="Log paths and prompt text (never on by default).")
    model_name: str | None = Field(default=None, description="Name the server reports in /v1/models.")
    db_url: str | None = Field(
        default=None, description="Store URL (default: ARIS_DB_URL or $ARIS_HOME/aris.db)."
    )
    mcp_roots: list[str] = Field(default_factory=list, description="Folders MCP tools over HTTP may read.")

    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    def has_keys(self) -> bool:
        return self.api_key is not None or self.api_keys_file is not None

    def check_safe(self) -> None:
        """Refuse settings that would open patient data to the network.

        An empty key is refused anywhere (it would match an empty ``Authorization`` header); beyond
        loopback a key is required and must be long enough not to be guessed.
        """
        if self.api_key is not None:
            secret = self.api_key.get_secret_value()
            if not secret.strip():
                raise ConfigError("the API key is empty: give a real key or none (loopback only)")
            if not self.is_loopback() and len(secret) < MIN_NETWORK_KEY_LENGTH:
                raise ConfigError(
                    f"refusing to listen on {self.host} with an API key shorter than "
                    f"{MIN_NETWORK_KEY_LENGTH} characters (`aris keygen` makes one)"
                )
        if not self.is_loopback() and not self.has_keys():
            raise ConfigError(
                f"refusing to listen on {self.host} without an API key: set --api-key, "
                "--api-keys-file or ARIS_SERVER_API_KEY (or bind 127.0.0.1)"
            )


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
