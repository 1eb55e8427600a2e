"""The batch driver: claims items from the store, keeps preparation ahead of generation, spreads items
over engines/endpoints, and records every outcome. It is the only writer of the store.

Item life: pending -> running (claimed by this runner) -> done | failed. A runner that dies leaves its
items running; the next run of the same job takes the dead runner's lease and sets them back to pending,
so nothing is lost, and done items (results are kept once per key) are never run again.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aris.batch.executors import Executor, SlotSpec, make_executor
from aris.batch.manifest import (
    WorkItem,
    input_digest,
    item_key,
    job_fingerprint,
    load_worklist,
    source_url,
)
from aris.batch.work import ItemSpec
from aris.config import ArisSettings
from aris.engines import engine_class, run_settings
from aris.errors import ArisError, ConfigError, InputError
from aris.store import ItemView, JobNotFoundError, JobView, NewItem, Store

logger = logging.getLogger(__name__)

HEARTBEAT_S = 5.0


@dataclass
class BatchOptions:
    executor: str = "local"
    endpoints: list[str] = field(default_factory=list)
    per_endpoint: int = 2  # requests in flight per OpenAI-compatible endpoint
    prepare_workers: int = 2
    prefetch: int | None = None  # prepared-or-preparing items kept ahead; default 2 x engine capacity
    endpoint_failures: int = 3  # consecutive failures before an endpoint is marked unhealthy
    local_failures: int = 5  # consecutive engine errors before a local engine stops the batch
    item_requeues: int = 3  # endpoint failures one item may see before it is failed itself
    backoff_s: float = 0.5  # first retry delay after an endpoint failure; doubles, at most 30 s
    pace_s: float = 0.0  # floor on seconds per item (tests; demos)
    ray_address: str | None = None
    ray_num_cpus: int | None = None


@dataclass
class WorkerStats:
    name: str
    capacity: int
    remote: bool
    served: int = 0
    errors: int = 0
    healthy: bool = True
    last_error: str | None = None


@dataclass
class Progress:
    total: int
    done: int
    failed: int
    running: int


@dataclass
class Summary:
    job_id: str
    resumed: bool
    reset: int  # items a dead runner had left running, set back to pending
    counts: dict[str, int]
    done_now: int
    failed_now: int
    reused_now: int
    wall_s: float
    items_per_s: float
    idle_share: float  # engine capacity-time spent waiting for preparation
    busy_share: float
    workers: list[WorkerStats]
    stopped_reason: str | None = None
    # Processes that prepared / generated items (this one for the local executor; Ray workers for ray).
    prepare_pids: set[int] = field(default_factory=set)
    generate_pids: set[int] = field(default_factory=set)
    # What the driver saw, in order: (event, item id) with event prepare|prepared|generate|generated.
    # Proves overlap (an item prepared while another generates) without timing anything.
    events: list[tuple[str, int]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.counts.get("pending", 0) == 0 and self.counts.get("running", 0) == 0


@dataclass
class _Slot:
    spec: SlotSpec
    stats: WorkerStats
    in_flight: int = 0
    failures: int = 0  # consecutive
    backoff_until: float = 0.0

    def open(self, now: float) -> bool:
        return self.stats.healthy and now >= self.backoff_until and self.in_flight < self.spec.capacity


@dataclass
class _Ctx:
    item: ItemView
    payload: Any = None
    prepare_s: float = 0.0
    slot: int = -1
    requeues: int = 0


def slot_specs(settings: ArisSettings, options: BatchOptions) -> list[SlotSpec]:
    """One slot per endpoint (each with ``per_endpoint`` requests in flight), else the one engine.

    Endpoint clients retry at most once themselves: the batch has its own retry, backoff and failover.
    """
    if options.endpoints:
        return [
            SlotSpec(
                name=url,
                settings=settings.model_copy(
                    update={"engine": "openai", "base_url": url, "max_retries": min(settings.max_retries, 1)}
                ),
                capacity=options.per_endpoint,
                remote=True,
            )
            for url in options.endpoints
        ]
    if settings.engine == "openai":
        return [SlotSpec(settings.base_url or "openai", settings, options.per_endpoint, remote=True)]
    return [SlotSpec(settings.engine, settings, 1, remote=False)]


def generation_params(settings: ArisSettings) -> dict[str, Any] | None:
    """Decoding settings the user chose; None lets each task use its own defaults."""
    if "max_new_tokens" in settings.model_fields_set:
        return {"max_new_tokens": settings.max_new_tokens}
    return None


def key_params(task: str, gen: dict[str, Any] | None, item: WorkItem) -> dict[str, Any]:
    """What besides the input, model and question decides an item's answer: the effective decoding
    settings, how the input is read, the task's options and the code of its recipe."""
    from aris.runner import generation_params as settle
    from aris.runner import recipe_digest

    effective = asdict(settle(task, max_new_tokens=(gen or {}).get("max_new_tokens")))
    effective.pop("json_schema", None)  # set by the task from its own schema
    return {
        "gen": effective,
        "kind": item.kind,
        "options": item.options,
        "task_options": item.task_options,
        "recipe": recipe_digest(task),
    }


def worklist_from_job(store: Store, job_id: str) -> list[WorkItem]:
    """A previous batch's items as a worklist (to run them again with another task or model)."""
    return [
        WorkItem.from_ref(it.input_ref, it.question, it.kind, it.options, it.task_options)
        for it in store.items(store.get_job(job_id).id)
    ]


def rekey_changed(store: Store, job: JobView) -> int:
    """Key anew the pending items that ran before (failed and set back by ``retry``, or left by a
    crash) whose input changed since the job was planned; returns how many. A file fixed after it
    failed must not have its answer stored under the key of the bytes it had: a later batch that meets
    those bytes again would be served it."""
    changed = 0
    identity = job.params.get("identity") or {}
    for it in store.items(job.id, "pending"):
        if not it.attempts:
            continue  # never read: its planned digest is what it will read (or it changed unseen)
        work = WorkItem.from_ref(it.input_ref, it.question, it.kind, it.options, it.task_options)
        digest = input_digest(work.paths)
        if digest != it.input_digest:
            params = key_params(job.task, job.params.get("gen"), work)
            store.rekey(it.id, item_key(digest, job.task, identity, params, it.question), digest)
            changed += 1
    if changed:
        logger.info(
            "batch %s: %d items changed on disk since they ran, keyed by their bytes now", job.id, changed
        )
    return changed


def plan_job(
    store: Store,
    items: list[WorkItem],
    task: str,
    identity: dict[str, Any],
    engine: str,
    gen: dict[str, Any] | None,
    *,
    source: str | None = None,
    run_settings: dict[str, Any] | None = None,
) -> tuple[JobView, bool]:
    """The job for these items: the existing one if the same command ran before (resume), else a new one.

    ``identity`` is the engine's (:meth:`~aris.engines.base.Engine.identity`): weights, adapter,
    quantization, projector... are in every item key, so a fine-tune never resumes its base model's job.
    """
    model = str(
        identity.get("model")
        or "+".join(str(v.get("model")) for v in identity.values() if isinstance(v, dict))
        or engine
    )
    new_items: list[NewItem] = []
    # hashlib releases the GIL on large buffers: a few threads read several studies at once.
    by_ref = {it.input_ref: it.paths for it in items}
    with cf.ThreadPoolExecutor(4, thread_name_prefix="aris-digest") as pool:
        digests = dict(zip(by_ref, pool.map(input_digest, by_ref.values()), strict=True))
    for seq, it in enumerate(items):
        ref = it.input_ref
        digest = digests[ref]
        key = item_key(digest, task, identity, key_params(task, gen, it), it.question)
        new_items.append(NewItem(seq, key, ref, digest, it.question, it.kind, it.options, it.task_options))
    seen: set[tuple[str, str]] = set()
    unique = []
    for ni in new_items:  # the same input and question listed twice is one item
        if (ni.key, ni.input_ref) not in seen:
            seen.add((ni.key, ni.input_ref))
            unique.append(ni)
    fp = job_fingerprint(task, identity, {"gen": gen}, [(ni.key, ni.input_ref) for ni in unique])
    existing = store.find_job(fp)
    if existing is not None:
        return existing, True
    params = {"gen": gen, "settings": run_settings or {}, "identity": identity}
    return store.create_job(task, model, engine, params, unique, source=source, fingerprint=fp), False


@dataclass
class _Tally:
    """Counts over the job (done, failed) and over this invocation (*_now)."""

    done: int = 0
    failed: int = 0
    done_now: int = 0
    failed_now: int = 0
    reused_now: int = 0


class BatchRunner:
    """Runs one job to the end (or until every engine failed): a small scheduler over the store.

    Each loop turn is three steps, each a method a test can drive alone: :meth:`claim` (take pending items
    and start preparing them, up to the prefetch bound), :meth:`dispatch` (hand prepared items to the least
    loaded open slot), and :meth:`settle` (record what finished). Every outcome goes through one of
    :meth:`succeed`, :meth:`fail` or :meth:`retry_elsewhere`, so the bookkeeping is written once.
    """

    def __init__(
        self,
        store: Store,
        job: JobView,
        task: str,
        executor: Executor,
        slots: list[SlotSpec],
        errors: list[Any],
        options: BatchOptions,
        gen: dict[str, Any] | None,
    ) -> None:
        self.store = store
        self.job = job
        self.task = task
        self.ex = executor
        self.opts = options
        self.gen = gen
        self.slots = [_Slot(s, WorkerStats(s.name, s.capacity, s.remote)) for s in slots]
        for slot, status in zip(self.slots, errors, strict=True):
            if isinstance(status, BaseException):
                slot.stats.healthy = False
                slot.stats.last_error = f"{type(status).__name__}: {status}"
        self.runner_id = uuid.uuid4().hex[:16]
        cap = sum(s.spec.capacity for s in self.slots)
        self.prefetch = options.prefetch or max(2, 2 * cap)
        self.tally = _Tally()
        self.total = 0
        self.ready: deque[_Ctx] = deque()
        self.prepping: dict[Any, _Ctx] = {}
        self.generating: dict[Any, _Ctx] = {}
        self.active: dict[str, int] = {}  # key -> item being worked on (same-content items wait for it)
        self.parked: dict[str, list[ItemView]] = {}
        self.exhausted = False
        self.stopped: str | None = None
        self.events: list[tuple[str, int]] = []
        self.prep_pids: set[int] = set()
        self.gen_pids: set[int] = set()
        self.on_progress: Callable[[Progress], None] | None = None
        # Engine-capacity accounting: (starved capacity, requests in flight, healthy capacity) since `_last`.
        self._state = (0, 0, 0)
        self._last = self._last_beat = time.monotonic()
        self._idle_s = self._busy_s = self._cap_s = 0.0

    # -- the loop --------------------------------------------------------------------------------------
    def run(self, on_progress: Callable[[Progress], None] | None = None, *, resumed: bool = False) -> Summary:
        self.on_progress = on_progress
        reset = self.store.acquire(self.job.id, self.runner_id)
        counts = self.store.counts(self.job.id)
        self.total, self.tally.done, self.tally.failed = counts["total"], counts["done"], counts["failed"]
        t_start = time.monotonic()
        self.report()
        try:
            while True:
                self.tick()
                self.claim()
                self.dispatch()
                if self.finished():
                    break
                for handle in self.ex.wait([*self.prepping, *self.generating], self.wait_s()):
                    self.settle(handle)
        finally:
            self.ex.close()
            self.store.release(self.job.id, self.runner_id)
        return self.summary(time.monotonic() - t_start, reset, resumed)

    def tick(self) -> None:
        """Account engine time since the last turn, beat the lease, stop when no engine is left."""
        now = time.monotonic()
        dt = now - self._last
        self._idle_s += dt * self._state[0]
        self._busy_s += dt * self._state[1]
        self._cap_s += dt * self._state[2]
        self._last = now
        if now - self._last_beat >= HEARTBEAT_S:
            self.store.heartbeat(self.job.id, self.runner_id)
            self._last_beat = now
        if self.stopped is None and not any(s.stats.healthy for s in self.slots):
            errs = "; ".join(f"{s.stats.name}: {s.stats.last_error}" for s in self.slots)
            self.stopped = f"every engine failed ({errs})"

    def claim(self) -> None:
        """Claim pending items and start preparing them, up to the prefetch bound."""
        while (
            self.stopped is None
            and not self.exhausted
            and len(self.prepping) + len(self.ready) < self.prefetch
        ):
            item = self.store.claim_next(self.job.id, self.runner_id)
            if item is None:
                self.exhausted = True
                return
            if self.store.done_from_existing(item.id):
                self.tally.done += 1
                self.tally.reused_now += 1
                self.report()
            elif item.key in self.active:
                self.parked.setdefault(item.key, []).append(item)
            else:
                self.active[item.key] = item.id
                self.prepping[self.ex.prepare(_spec(item))] = _Ctx(item)
                self.events.append(("prepare", item.id))

    def dispatch(self) -> None:
        """Hand prepared items to the least loaded open slot."""
        now = time.monotonic()
        while self.ready and self.stopped is None:
            open_slots = [i for i, s in enumerate(self.slots) if s.open(now)]
            if not open_slots:
                break
            i = min(
                open_slots,
                key=lambda i: (
                    self.slots[i].in_flight / self.slots[i].spec.capacity,
                    self.slots[i].stats.served,
                ),
            )
            ctx = self.ready.popleft()
            ctx.slot = i
            self.slots[i].in_flight += 1
            handle = self.ex.generate(i, _spec(ctx.item), ctx.payload, self.gen, self.opts.pace_s)
            self.generating[handle] = ctx
            self.events.append(("generate", ctx.item.id))
        # Engine capacity that could generate now but has nothing prepared, while more is coming.
        free = sum(s.spec.capacity - s.in_flight for s in self.slots if s.open(now))
        more = bool(self.prepping) or not self.exhausted
        starved = free if not self.ready and more and self.stopped is None else 0
        healthy = sum(s.spec.capacity for s in self.slots if s.stats.healthy)
        self._state = (starved, len(self.generating), healthy)

    def finished(self) -> bool:
        idle = not self.prepping and not self.generating
        return (
            idle
            and (self.exhausted or self.stopped is not None)
            and (not self.ready or self.stopped is not None)
        )

    def wait_s(self) -> float:
        """Wake up for the next finished work, or when a backed-off slot can take the next ready item."""
        now = time.monotonic()
        waits = [s.backoff_until - now for s in self.slots if s.stats.healthy and s.backoff_until > now]
        return max(0.01, min(0.5, *waits)) if self.ready and waits else 0.5

    def settle(self, handle: Any) -> None:
        """Record one finished preparation or generation."""
        if handle in self.prepping:
            ctx = self.prepping.pop(handle)
            meta, payload = self.ex.prepared(handle)
            self.events.append(("prepared", ctx.item.id))
            if "pid" in meta:
                self.prep_pids.add(int(meta["pid"]))
            ctx.prepare_s = float(meta.get("prepare_s") or 0.0)
            if meta.get("ok"):
                ctx.payload = payload
                self.ready.append(ctx)
            else:
                self.fail(ctx, meta["error"], meta.get("error_type"))
            return
        ctx = self.generating.pop(handle)
        slot = self.slots[ctx.slot]
        slot.in_flight -= 1
        out = self.ex.generated(handle)
        self.events.append(("generated", ctx.item.id))
        if "pid" in out:
            self.gen_pids.add(int(out["pid"]))
        if out.get("ok"):
            self.succeed(ctx, slot, out)
        elif out.get("item_error") or not slot.spec.remote:
            # The item's own fault (its file, prompt or reply), or a local engine error: fail the item.
            self.fail(ctx, out["error"], out.get("error_type"), worker=slot.spec.name)
            if out.get("item_error"):
                slot.failures = 0
            else:
                self._slot_failed(slot, out["error"], limit=self.opts.local_failures)
        else:
            self.retry_elsewhere(ctx, slot, out)
        self.report()

    # -- outcomes: every item ends through one of these --------------------------------------------------
    def succeed(self, ctx: _Ctx, slot: _Slot, out: dict[str, Any]) -> None:
        data = out["result"]
        timings = data.setdefault("timings", {})
        timings["prepare_s"] = float(timings.get("prepare_s") or 0.0) + ctx.prepare_s
        timings["total_s"] = float(timings.get("total_s") or 0.0) + ctx.prepare_s
        self.store.record_result(
            ctx.item.id,
            data,
            worker=slot.spec.name,
            prepare_s=ctx.prepare_s,
            generate_s=out.get("generate_s"),
        )
        slot.failures = 0
        slot.stats.served += 1
        self.tally.done += 1
        self.tally.done_now += 1
        self._settle_key(ctx.item.key, None)

    def fail(self, ctx: _Ctx, error: str, error_type: str | None, *, worker: str | None = None) -> None:
        self.store.record_failure(
            ctx.item.id, error, error_type=error_type, worker=worker, prepare_s=ctx.prepare_s
        )
        self.tally.failed += 1
        self.tally.failed_now += 1
        self._settle_key(ctx.item.key, (error, error_type or ""))
        self.report()

    def retry_elsewhere(self, ctx: _Ctx, slot: _Slot, out: dict[str, Any]) -> None:
        """The endpoint failed, not the item: back off, maybe give up on the endpoint, and hand the
        (already prepared) item to whichever endpoint is free next."""
        self._slot_failed(slot, out["error"], limit=self.opts.endpoint_failures)
        ctx.requeues += 1
        if ctx.requeues > self.opts.item_requeues:
            msg = f"{out['error']} (endpoints failed {ctx.requeues} times on this item)"
            self.fail(ctx, msg, out.get("error_type"), worker=slot.spec.name)
        else:
            self.ready.appendleft(ctx)

    def _settle_key(self, key: str, error: tuple[str, str] | None) -> None:
        """Items parked behind the same content key end as the first one did."""
        self.active.pop(key, None)
        for it in self.parked.pop(key, []):
            if error is None and self.store.done_from_existing(it.id):
                self.tally.done += 1
                self.tally.reused_now += 1
            elif error is not None:
                self.store.record_failure(it.id, error[0], error_type=error[1])
                self.tally.failed += 1
                self.tally.failed_now += 1
            else:  # the key's result is missing (should not happen): run it after all
                self.store.requeue(it.id)
                self.exhausted = False

    def _slot_failed(self, slot: _Slot, error: str, *, limit: int) -> None:
        slot.failures += 1
        slot.stats.errors += 1
        slot.stats.last_error = error
        slot.backoff_until = time.monotonic() + min(30.0, self.opts.backoff_s * 2 ** (slot.failures - 1))
        if slot.failures >= limit and slot.stats.healthy:
            slot.stats.healthy = False
            logger.warning(
                "worker %d marked unhealthy after %d consecutive failures",
                self.slots.index(slot),
                slot.failures,
            )

    # -- reporting -------------------------------------------------------------------------------------
    def report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(Progress(self.total, self.tally.done, self.tally.failed, len(self.generating)))

    def summary(self, wall: float, reset: int, resumed: bool) -> Summary:
        final = self.store.counts(self.job.id)
        stopped = self.stopped
        if stopped is None and not (final["pending"] == 0 and final["running"] == 0):
            stopped = "stopped with items left"
        t = self.tally
        return Summary(
            job_id=self.job.id,
            resumed=resumed,
            reset=reset,
            counts=final,
            done_now=t.done_now,
            failed_now=t.failed_now,
            reused_now=t.reused_now,
            wall_s=wall,
            items_per_s=(t.done_now + t.failed_now) / wall if wall > 0 else 0.0,
            idle_share=self._idle_s / self._cap_s if self._cap_s > 0 else 0.0,
            busy_share=self._busy_s / self._cap_s if self._cap_s > 0 else 0.0,
            workers=[s.stats for s in self.slots],
            stopped_reason=stopped,
            prepare_pids=self.prep_pids,
            generate_pids=self.gen_pids,
            events=self.events,
        )


def _spec(item: ItemView) -> ItemSpec:
    return ItemSpec(
        item_id=item.id,
        key=item.key,
        input_ref=item.input_ref,
        question=item.question,
        kind=item.kind,
        options=item.options,
        task_options=item.task_options,
    )


def run_batch(
    worklist: Path | str | list[WorkItem],
    task: str,
    settings: ArisSettings,
    *,
    store: Store | None = None,
    options: BatchOptions | None = None,
    question: str | None = None,
    kind: str = "auto",
    on_progress: Callable[[Progress], None] | None = None,
    on_job: Callable[[JobView, bool], None] | None = None,
) -> Summary:
    """Run (or resume) a batch: a worklist folder/CSV/JSONL, a previous batch id, or a list of items.

    The job is found by its fingerprint (task, model, params, items), so running the same command again
    continues where it stopped.
    """
    from aris.tasks import get_task

    options = options or BatchOptions()
    own_store = store is None
    store = store or Store.open()
    try:
        get_task(task)  # an unknown task fails before any engine loads
        items, source = _resolve_worklist(store, worklist, question, kind)
        slots = slot_specs(settings, options)
        if (
            options.endpoints
            and engine_class(settings.engine).local
            and "engine" in settings.model_fields_set
        ):
            raise ConfigError(
                "--endpoint sends items to OpenAI-compatible servers; drop --engine "
                f"{settings.engine} (or drop --endpoint to run the model here)"
            )
        executor = make_executor(
            options.executor,
            prepare_workers=options.prepare_workers,
            ray_address=options.ray_address,
            ray_num_cpus=options.ray_num_cpus,
        )
        try:
            status = executor.start(slots, task)
            identity = one_identity(slots, status)
            gen = generation_params(settings)
            recorded: dict[str, Any] = dict(run_settings(settings))
            recorded["endpoints"] = options.endpoints
            engine_kind = "openai" if any(s.remote for s in slots) else settings.engine
            job, resumed = plan_job(
                store, items, task, identity, engine_kind, gen, source=source, run_settings=recorded
            )
            if on_job is not None:
                on_job(job, resumed)
            runner = BatchRunner(store, job, task, executor, slots, status, options, gen)
        except BaseException:
            executor.close()
            raise
        return runner.run(on_progress, resumed=resumed)
    finally:
        if own_store:
            store.close()


def run_job(
    job_id: str,
    settings: ArisSettings | None = None,
    *,
    store: Store | None = None,
    options: BatchOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> Summary:
    """Run an existing job's pending items again (after ``retry``), with the engine it was made with.

    ``settings`` overrides the recorded ones (flags given now win); the model must stay the same, since
    item keys include it.
    """
    options = options or BatchOptions()
    own_store = store is None
    store = store or Store.open()
    try:
        job = store.get_job(job_id)
        recorded = dict(job.params.get("settings") or {})
        endpoints = recorded.pop("endpoints", []) or []
        given = settings.model_dump(include=settings.model_fields_set) if settings is not None else {}
        merged = ArisSettings.from_flags(**{**recorded, **given})
        if not options.endpoints:
            options.endpoints = list(endpoints)
        slots = slot_specs(merged, options)
        executor = make_executor(
            options.executor,
            prepare_workers=options.prepare_workers,
            ray_address=options.ray_address,
            ray_num_cpus=options.ray_num_cpus,
        )
        try:
            status = executor.start(slots, job.task)
            identity = one_identity(slots, status)
            if identity != job.params.get("identity"):
                raise ConfigError(
                    f"batch {job.id} was made with model {job.model!r} and another engine identity "
                    f"(weights, adapter, quantization or settings differ) than {identity.get('model')!r} "
                    "now; run the worklist again as a new batch to use another model"
                )
            rekey_changed(store, job)
            runner = BatchRunner(
                store, job, job.task, executor, slots, status, options, job.params.get("gen")
            )
        except BaseException:
            executor.close()
            raise
        return runner.run(on_progress, resumed=True)
    finally:
        if own_store:
            store.close()


def one_identity(slots: list[SlotSpec], status: list[Any]) -> dict[str, Any]:
    """The one model identity of a batch's engines; every started engine must serve the same model."""
    identities = [s for s in status if isinstance(s, dict)]
    if not identities:
        raise ArisError(
            "no engine could start: "
            + "; ".join(f"{s.name}: {type(e).__name__}: {e}" for s, e in zip(slots, status, strict=True))
        )
    for other in identities[1:]:
        if other != identities[0]:
            raise ConfigError(
                f"the endpoints serve different models ({identities[0]} vs {other}); a batch's answers "
                "must all come from one model"
            )
    return identities[0]


def _resolve_worklist(
    store: Store, worklist: Path | str | list[WorkItem], question: str | None, kind: str
) -> tuple[list[WorkItem], str]:
    if isinstance(worklist, list):
        return worklist, "items"
    path = Path(worklist).expanduser()
    if not path.exists() and isinstance(worklist, str) and "/" not in worklist:
        try:
            job = store.get_job(worklist)
        except JobNotFoundError:
            raise InputError(
                path, f"no such worklist (folder, .csv or .jsonl), and no batch with that id in {store.url}"
            ) from None
        items = worklist_from_job(store, job.id)
        if question is not None or kind != "auto":
            items = [
                WorkItem(
                    it.paths,
                    question if question is not None else it.question,
                    kind if kind != "auto" else it.kind,
                    it.options,
                    it.task_options,
                )
                for it in items
            ]
        return items, f"batch:{job.id}"
    url = source_url(worklist)
    if url is not None:  # a remote source's search (dicomweb://pacs?ModalitiesInStudy=CT)
        from aris.inputs import SOURCES

        source = SOURCES.get(url.split("://", 1)[0])
        shown = source.public(url) if hasattr(source, "public") else url  # never credentials
        return load_worklist(url, question=question, kind=kind), shown
    return load_worklist(path, question=question, kind=kind), str(path.absolute())
