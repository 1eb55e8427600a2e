"""Runs blocking engine generations for async handlers, at the rate the engine can take.

A producer thread drives the engine's generator and hands pieces to the event loop; when the
consumer goes away (client disconnected, job cancelled) the producer closes the generator, which
stops the engine. A semaphore sized to the engine's ``concurrent_requests`` queues the rest.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from aris.engines.base import Engine
from aris.server.metrics import Metrics

T = TypeVar("T")
_DONE = object()


class EngineRunner:
    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self._slots = asyncio.Semaphore(max(1, engine.capabilities.concurrent_requests))

    async def iterate(self, make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
        """Yield what ``make()``'s iterator yields, produced on a worker thread, one engine slot held."""
        self.metrics.queue_depth.inc()
        try:
            await self._slots.acquire()
        finally:
            self.metrics.queue_depth.dec()
        self.metrics.in_flight.inc()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()

        def produce() -> None:
            it = make()
            try:
                for item in it:
                    if cancel.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, item)
            except BaseException as e:  # handed to the consumer, which re-raises it
                loop.call_soon_threadsafe(queue.put_nowait, e)
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        worker = threading.Thread(target=produce, name="aris-generate", daemon=True)
        worker.start()
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()
            await asyncio.to_thread(worker.join)
            self.metrics.in_flight.dec()
            self._slots.release()

    async def call(self, fn: Callable[[Callable[[Any], None]], T]) -> AsyncIterator[Any]:
        """Run ``fn(emit)`` on a worker thread holding an engine slot; yield what it emits, then its return.

        For work that drives the engine through callbacks (a task's ``on_token``) rather than an iterator.
        Closing the consumer makes the next ``emit`` raise :class:`Cancelled`, which unwinds ``fn`` and
        closes the engine's stream.
        """
        cancelled = threading.Event()

        def make() -> Iterator[Any]:
            box: queue.Queue[Any] = queue.Queue()

            def emit(event: Any) -> None:
                if cancelled.is_set():
                    raise Cancelled
                box.put(("event", event))

            def work() -> None:
                try:
                    box.put(("return", fn(emit)))
                except BaseException as e:
                    box.put(("error", e))

            t = threading.Thread(target=work, name="aris-task", daemon=True)
            t.start()
            try:
                while True:
                    kind, value = box.get()
                    if kind == "event":
                        yield value
                    elif kind == "return":
                        yield Returned(value)
                        return
                    else:
                        raise value
            finally:
                cancelled.set()
                t.join()

        agen = self.iterate(make)
        try:
            async for item in agen:
                yield item
        finally:
            cancelled.set()
            await agen.aclose()


class Cancelled(Exception):
    """The consumer of a running generation went away."""


class Returned:
    """Wraps the return value of work run by :meth:`EngineRunner.call`."""

    def __init__(self, value: Any) -> None:
        self.value = value
