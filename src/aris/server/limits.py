"""Per-key limits: work requests per minute (a moving window, from the ``limits`` library) and work in
flight (HTTP requests being served plus the key's queued and running jobs). Beyond either: 429 with
``Retry-After``. Everything here runs on the event loop, so plain counters are safe.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from aris.server.auth import Principal


class TooMany(Exception):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class KeyLimiter:
    def __init__(self) -> None:
        self._window = MovingWindowRateLimiter(MemoryStorage())
        self._in_flight: Counter[str] = Counter()

    def in_flight(self, name: str) -> int:
        return self._in_flight[name]

    def admit(self, who: Principal) -> Callable[[], None]:
        """Count one unit of work for ``who``, or raise :class:`TooMany`. Returns its release."""
        if who.max_concurrent is not None and self._in_flight[who.name] >= who.max_concurrent:
            raise TooMany(
                f"this key already has {who.max_concurrent} requests or jobs in flight (its limit)", 1
            )
        if who.rate_per_minute is not None:
            item = RateLimitItemPerMinute(who.rate_per_minute)
            if not self._window.hit(item, who.name):
                reset = self._window.get_window_stats(item, who.name).reset_time
                raise TooMany(
                    f"this key is limited to {who.rate_per_minute} requests a minute",
                    math.ceil(reset - time.time()),
                )
        return self.hold(who)

    def hold(self, who: Principal) -> Callable[[], None]:
        """Count work in flight without checking (a job accepted by a request that was admitted)."""
        self._in_flight[who.name] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._in_flight[who.name] -= 1

        return release
