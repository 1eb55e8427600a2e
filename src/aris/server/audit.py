"""The audit trail of the server's requests, in the store's audit table (``aris batch`` shares it).

Every chat request and every job names its caller (``key:<name>``, never the key itself). A request
that cannot be audited is refused: serving patient data unrecorded is worse than not serving it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aris.server.auth import Principal
from aris.server.errors import APIError

logger = logging.getLogger(__name__)


class Audit:
    def __init__(self, store: Any, model: str, engine: str) -> None:
        self.store, self.model, self.engine = store, model, engine

    async def record(self, who: Principal, action: str, **fields: Any) -> None:
        try:
            await asyncio.to_thread(
                self.store.audit, action, actor=who.actor, model=self.model, engine=self.engine, **fields
            )
        except Exception as e:
            logger.error("audit trail unavailable: %s", type(e).__name__)
            raise APIError(
                503, "the audit trail is unavailable; request refused", code="audit_unavailable"
            ) from e
