"""Server settings. Safe by default: loopback only, no CORS, no PHI in access logs."""

from __future__ import annotations

import ipaddress

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from aris.errors import ConfigError


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARIS_SERVER_", extra="ignore")

    host: str = Field(
        default="127.0.0.1", description="Bind address. Anything but loopback needs an API key."
    )
    port: int = Field(default=8765, ge=0, le=65535, description="Port (0 picks a free one).")
    api_key: SecretStr | None = Field(
        default=None, description="Bearer key clients must send (env ARIS_SERVER_API_KEY)."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Allowed browser origins; CORS is off when empty."
    )
    max_upload_mb: int = Field(default=2048, ge=1, description="Largest upload accepted (HTTP 413 beyond).")
    max_request_mb: int = Field(default=64, ge=1, description="Largest JSON request body (images inline).")
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
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def check_safe(self) -> None:
        """Refuse to listen beyond this machine without a key: the data is patient data."""
        if not self.is_loopback() and self.api_key is None:
            raise ConfigError(
                f"refusing to listen on {self.host} without an API key: set --api-key or ARIS_SERVER_API_KEY "
                "(or bind 127.0.0.1)"
            )
