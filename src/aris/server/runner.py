"""Runs blocking engine work for async handlers, at the rate the engine can take.

Each piece of work runs on its own worker thread holding one of the engine's slots (a semaphore
sized to ``concurrent_requests``); what it produces is handed to the event loop. The slot is freed
by the worker itself, when it has really stopped, so that:

- a consumer that goes away (client disconnected, job cancelled) only has to set a flag: nothing
  it must await on the way out, which a cancelled scope would skip (that is how a hung-up stream
  once held the only slot for good);
- the engine never runs two generations where it can take one: the next waits until the previous
  has closed its stream.

The worker stops at the engine's next piece (a token): ``emit`` raises :class:`Cancelled` once the
consumer is gone, which unwinds :func:`aris.generate.generate`, and that closes the engine's stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any, TypeVar

from aris.context import Cancelled, Models
from aris.engines.base import Engine
from aris.server.errors import APIError
from aris.server.metrics import Metrics

T = TypeVar("T")
_DONE = object()
logger = logging.getLogger(__name__)

Emit = Callable[[Any], None]


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Returned:
    """Wraps the return value of work run by :meth:`EngineRunner.call`."""

    def __init__(self, value: Any) -> None:
        self.value = value


class EngineRunner:
    def __init__(self, engine: Engine, metrics: Metrics, models: Models | None = None) -> None:
        self.engine = engine
        # The models by role every task run gets: this engine as the generator, and MedSigLIP or MedASR
        # loaded once, from the server's settings, the first time a task needs them.
        self.models = models or Models(generator=engine)
        self.metrics = metrics
        self._slots = asyncio.Semaphore(max(1, engine.capabilities.concurrent_requests))
        self._running: dict[threading.Event, asyncio.Event] = {}  # cancel flag -> finished
        self._closing = False

    @property
    def busy(self) -> int:
        """Work holding a slot (its worker has not finished yet)."""
        return len(self._running)

    def _refuse_if_closing(self) -> None:
        if self._closing:
            raise APIError(503, "the server is shutting down", "server_error", code="shutting_down")

    async def _work(self, target: Callable[[Emit, threading.Event], None]) -> AsyncGenerator[Any, None]:
        self._refuse_if_closing()
        self.metrics.queue_depth.inc()
        try:
            await self._slots.acquire()
        finally:
            self.metrics.queue_depth.dec()
        try:
            self._refuse_if_closing()  # shutdown began while this waited for a slot
        except APIError:
            self._slots.release()
            raise
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        finished = asyncio.Event()
        self._running[cancel] = finished
        self.metrics.in_flight.inc()

        def free() -> None:  # on the loop, once the worker has stopped
            self._running.pop(cancel, None)
            self.metrics.in_flight.dec()
            self._slots.release()
            finished.set()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                cancel.set()

        def run() -> None:
            try:
                target(put, cancel)
            except Cancelled:
                pass
            except BaseException as e:  # handed to the consumer, which re-raises it
                put(_Failed(e))
            finally:
                put(_DONE)
                # A closed loop (process exit) has nothing left to free.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(free)

        try:
            threading.Thread(target=run, name="aris-engine", daemon=True).start()
        except BaseException:
            free()
            raise
        try:
            while True:
                item = await inbox.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            # Only a flag: this runs in scopes that are already cancelled, where an await would not.
            cancel.set()

    async def iterate(self, make: Callable[[], Iterator[T]]) -> AsyncGenerator[T, None]:
        """Yield what ``make()``'s iterator yields, produced on a worker thread, one engine slot held."""

        def target(put: Emit, cancel: threading.Event) -> None:
            it = make()
            try:
                for item in it:
                    if cancel.is_set():
                        break
                    put(item)
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()  # stops the engine now, not at garbage collection

        async with contextlib.aclosing(self._work(target)) as agen:
            async for item in agen:
                yield item

    async def call(self, fn: Callable[[Emit, threading.Event], T]) -> AsyncGenerator[Any, None]:
        """Run ``fn(emit, cancel)`` on a worker thread holding an engine slot; yield what it emits,
        then its return value wrapped in :class:`Returned`.

        For work that drives the engine through callbacks (``on_piece``, a task's ``on_token``).
        Once the consumer is gone, ``cancel`` is set and ``emit`` raises :class:`Cancelled`; pass
        ``cancel`` on (``run_task(cancel=...)``) so work between pieces stops too.
        """

        def target(put: Emit, cancel: threading.Event) -> None:
            def emit(event: Any) -> None:
                if cancel.is_set():
                    raise Cancelled
                put(event)

            put(Returned(fn(emit, cancel)))

        async with contextlib.aclosing(self._work(target)) as agen:
            async for item in agen:
                yield item

    async def shutdown(self, timeout: float) -> bool:
        """Refuse new work, stop what runs, and wait up to ``timeout`` s for it to end. True: idle."""
        self._closing = True
        for cancel in list(self._running):
            cancel.set()
        waits = [f.wait() for f in self._running.values()]
        if not waits:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout)
        except TimeoutError:
            logger.error("%d generation(s) still running after %.0fs", len(self._running), timeout)
            return False
        return True


__all__ = ["Cancelled", "EngineRunner", "Returned"]
