"""PACS errors: each names the PACS (by its configured name and address, never its credentials)."""

from __future__ import annotations

from aris.errors import ArisError


class PacsError(ArisError):
    """A PACS could not be reached, timed out, or refused a request (after the configured retries)."""


class NotFoundError(PacsError):
    """The study or series is not on the PACS."""


class SendError(PacsError):
    """A result could not be stored on its destination. ``retry`` is False for a refusal (4xx/DIMSE
    failure status) that the same request would get again."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry
