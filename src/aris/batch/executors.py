"""Where items are prepared and generated: threads in this process, or Ray tasks and actors.

The driver (:mod:`aris.batch.runner`) only submits work and waits; executors never write the store.
An executor runs one engine per *slot* (a local model, or one OpenAI-compatible endpoint) with at
most ``capacity`` requests in flight on it.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from aris.batch.work import ItemSpec, generate_item, prepare_item
from aris.config import ArisSettings
from aris.context import Models

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlotSpec:
    """One engine to generate on: its settings, a display name, and how many requests it takes at once."""

    name: str
    settings: ArisSettings
    capacity: int = 1
    remote: bool = False  # an endpoint: failures are retried elsewhere, not charged to the item


def load_models(settings: ArisSettings, task: str) -> tuple[Models, dict[str, Any]]:
    """The models the task needs, loaded now (so a missing model fails the start, not every item), and
    their identity: the generator's own identity for a MedGemma task, else one identity per role."""
    from aris.tasks import get_task

    needs = get_task(task).needs
    models = Models(settings)
    try:
        identity = models.identity(needs)
    except BaseException:
        models.close()
        raise
    return models, identity["generator"] if needs == ("generator",) else identity


class Executor(abc.ABC):
    """Submit preparation and generation; wait for whichever finishes first."""

    @abc.abstractmethod
    def start(self, slots: list[SlotSpec], task: str) -> list[dict[str, Any] | BaseException]:
        """Load one engine per slot. Returns each slot's engine identity, or the error that stopped it."""

    @abc.abstractmethod
    def prepare(self, spec: ItemSpec) -> Any: ...

    @abc.abstractmethod
    def prepared(self, handle: Any) -> tuple[dict[str, Any], Any]:
        """(outcome, payload) of a finished preparation; the payload is passed on to :meth:`generate`."""

    @abc.abstractmethod
    def generate(
        self, slot: int, spec: ItemSpec, payload: Any, gen_params: dict[str, Any] | None, pace_s: float
    ) -> Any: ...

    @abc.abstractmethod
    def generated(self, handle: Any) -> dict[str, Any]:
        """Outcome of a finished generation (see :func:`aris.batch.work.generate_item`)."""

    @abc.abstractmethod
    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        """The handles that are finished, after at most ``timeout`` seconds."""

    @abc.abstractmethod
    def close(self) -> None: ...


class LocalExecutor(Executor):
    """A thread pool prepares the next items while per-slot threads generate (readers release the GIL
    in decoders and I/O; engines release it in their native code or while waiting on HTTP)."""

    def __init__(self, prepare_workers: int = 2) -> None:
        self.prep_pool = cf.ThreadPoolExecutor(max(1, prepare_workers), thread_name_prefix="aris-prep")
        self.gen_pools: list[cf.ThreadPoolExecutor | None] = []
        self.models: list[Models | None] = []
        self.task = ""

    def start(self, slots: list[SlotSpec], task: str) -> list[dict[str, Any] | BaseException]:
        self.task = task
        out: list[dict[str, Any] | BaseException] = []
        for s in slots:
            try:
                models, identity = load_models(s.settings, task)
            except Exception as e:
                if not s.remote:
                    raise
                logger.warning("endpoint %d did not start (%s)", len(out), type(e).__name__)
                self.models.append(None)
                self.gen_pools.append(None)
                out.append(e)
                continue
            self.models.append(models)
            self.gen_pools.append(cf.ThreadPoolExecutor(s.capacity, thread_name_prefix="aris-gen"))
            out.append(identity)
        return out

    def prepare(self, spec: ItemSpec) -> cf.Future[tuple[dict[str, Any], Any]]:
        return self.prep_pool.submit(prepare_item, spec, self.task)

    def prepared(self, handle: cf.Future[tuple[dict[str, Any], Any]]) -> tuple[dict[str, Any], Any]:
        return handle.result()

    def generate(
        self, slot: int, spec: ItemSpec, payload: Any, gen_params: dict[str, Any] | None, pace_s: float
    ) -> cf.Future[dict[str, Any]]:
        pool, models = self.gen_pools[slot], self.models[slot]
        assert pool is not None
        assert models is not None
        return pool.submit(generate_item, models, self.task, spec, payload, gen_params, pace_s)

    def generated(self, handle: cf.Future[dict[str, Any]]) -> dict[str, Any]:
        return handle.result()

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        if not handles:
            return []
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def close(self) -> None:
        # Do not wait for a generation in flight: its item is released to pending by the runner.
        self.prep_pool.shutdown(wait=False, cancel_futures=True)
        for pool in self.gen_pools:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        for models in self.models:
            if models is not None:
                models.close()


class _GenActor:
    """Holds one slot's engine inside a Ray worker; ``max_concurrency`` bounds its requests in flight."""

    def __init__(self, settings: dict[str, Any], task: str) -> None:
        self.task = task
        self.models, self._identity = load_models(ArisSettings(**settings), task)

    def identity(self) -> dict[str, Any]:
        return self._identity

    def generate(
        self, spec: ItemSpec, inputs: list[Any], gen_params: dict[str, Any] | None, pace_s: float
    ) -> dict[str, Any]:
        return generate_item(self.models, self.task, spec, inputs, gen_params, pace_s)


def _ray_prepare(spec: ItemSpec, task: str) -> tuple[dict[str, Any], Any]:
    return prepare_item(spec, task)


class RayExecutor(Executor):
    """Preparation as Ray tasks (one CPU each), generation on one Ray actor per slot.

    Prepared inputs go from the preparing worker to the actor through Ray's object store; the driver
    sees only the small outcome dicts. Uses the Ray instance this process is connected to, else
    ``address`` (or ``RAY_ADDRESS``), else starts a local one and stops it on close.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        import ray

        self.ray = ray
        self._own = False
        self._tmp: str | None = None
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            else:
                # Session sockets live under the temp dir; a short path keeps them under AF_UNIX's limit.
                self._tmp = tempfile.mkdtemp(prefix="aris-ray-", dir="/tmp")
                ray.init(
                    num_cpus=num_cpus or min(4, os.cpu_count() or 1),
                    include_dashboard=False,
                    log_to_driver=False,
                    _temp_dir=self._tmp,
                )
            self._own = True
        self._prepare = ray.remote(num_cpus=1, num_returns=2, max_retries=0)(_ray_prepare)
        self._actor_cls = ray.remote(_GenActor)
        self.actors: list[Any] = []
        self.payloads: dict[Any, Any] = {}
        self.task = ""

    def start(self, slots: list[SlotSpec], task: str) -> list[dict[str, Any] | BaseException]:
        self.task = task
        # Actors take no CPU of their own, so local engines and endpoint clients never starve preparation.
        self.actors = [
            self._actor_cls.options(max_concurrency=s.capacity, num_cpus=0).remote(
                s.settings.model_dump(), task
            )
            for s in slots
        ]
        out: list[dict[str, Any] | BaseException] = []
        for s, actor in zip(slots, self.actors, strict=True):
            try:
                out.append(self.ray.get(actor.identity.remote()))
            except Exception as e:
                cause = _unwrap(e)
                if not s.remote:
                    raise cause from None
                out.append(cause)
        return out

    def prepare(self, spec: ItemSpec) -> Any:
        refs: Any = self._prepare.remote(spec, self.task)  # num_returns=2: two refs
        meta_ref, data_ref = refs
        self.payloads[meta_ref] = data_ref
        return meta_ref

    def prepared(self, handle: Any) -> tuple[dict[str, Any], Any]:
        payload = self.payloads.pop(handle)
        try:
            meta = self.ray.get(handle)
        except Exception as e:  # the worker process died: count it against the item
            cause = _unwrap(e)
            return {
                "ok": False,
                "error": f"{type(cause).__name__}: {cause}",
                "error_type": type(cause).__name__,
            }, None
        return meta, payload

    def generate(
        self, slot: int, spec: ItemSpec, payload: Any, gen_params: dict[str, Any] | None, pace_s: float
    ) -> Any:
        return self.actors[slot].generate.remote(spec, payload, gen_params, pace_s)

    def generated(self, handle: Any) -> dict[str, Any]:
        try:
            return self.ray.get(handle)  # type: ignore[no-any-return]
        except Exception as e:  # actor died or could not start: the slot failed, not the item
            cause = _unwrap(e)
            return {
                "ok": False,
                "item_error": False,
                "error": f"{type(cause).__name__}: {cause}",
                "error_type": type(cause).__name__,
            }

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        if not handles:
            return []
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        if ready:  # collect everything else already finished, without waiting again
            more, _ = self.ray.wait(handles, num_returns=len(handles), timeout=0)
            ready = list({*ready, *more})
        return list(ready)

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # already gone
                logger.debug("actor already gone")
        self.actors = []
        if self._own:
            self.ray.shutdown()
            if self._tmp:
                shutil.rmtree(self._tmp, ignore_errors=True)


def _unwrap(e: BaseException) -> BaseException:
    """The exception raised inside a Ray task, not Ray's wrapper around it."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e


def make_executor(
    kind: str, *, prepare_workers: int = 2, ray_address: str | None = None, ray_num_cpus: int | None = None
) -> Executor:
    if kind == "local":
        return LocalExecutor(prepare_workers)
    if kind == "ray":
        return RayExecutor(ray_address, ray_num_cpus)
    from aris.errors import ConfigError

    raise ConfigError(f"unknown executor {kind!r}: use local or ray")
