"""``ladle worker``: load a Redis stream continuously; each entry takes effect exactly once.

The loop: claim entries left idle by a dead consumer (``XAUTOCLAIM``), read new ones
(``XREADGROUP``), run the resource's steps, load in one destination transaction that
also updates this session's ledger row, then — only after the commit — dead-letter the
invalid entries and acknowledge the batch, both in one ``MULTI``. A crash between commit
and acknowledgement redelivers the batch; the load makes that harmless: a merge by the
primary key, or for ``write: append`` a merge on the entry's id, kept in
``_ladle_message_id``, so a redelivered entry inserts nothing.

Two kinds of failure are told apart, because they need opposite answers:

- **The destination is unavailable** (a lost or refused connection, no connection in
  time): the worker keeps the batch in hand and retries it itself, waiting 0.5 s, 1 s,
  2 s ... up to ``retry_max_ms``, for as long as it takes. It never goes back to Redis
  for the batch, so waiting is never counted as a delivery; while a batch is in hand a
  thread keeps its entries this worker's (``XCLAIM … JUSTID``, which resets their idle
  time without counting a delivery), whatever the worker is blocked in, so that no other
  worker claims them meanwhile.
- **Processing raises** (a step, a plug-in, a value the destination refuses): the batch
  is split in two and each half tried again, down to single entries, so every entry
  that can be loaded is, once. An entry that fails alone stays pending and is retried
  when it is claimed again; once it has been delivered ``max_deliveries`` times it goes
  to the quarantine (rule ``poison``) and the dead-letter stream with the error. No
  exception from a batch stops the worker.

An entry that Redis has delivered more than ``max_deliveries`` times without ladle
seeing it fail (its workers died with it in hand) is loaded on its own, counting the
attempts in a hash (``<stream>:<group>:attempts``): only an entry that was alone in hand
``max_deliveries`` times when a worker died is dead-lettered unloaded.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from types import FrameType
from typing import TYPE_CHECKING, Any

import polars as pl
import structlog

from ladle.batch import ROW, SourceBatch, Unreadable
from ladle.config import PipelineConfig, Resource, WriteMode
from ladle.destinations import Destination, LoadTarget
from ladle.errors import DestinationError, LadleError, SourceError
from ladle.ledger import SUCCEEDED, RunEntry
from ladle.metrics import Metrics
from ladle.outage import (
    Patience,
    PatientDestination,
    Stopped,
    describe,
    destination_unavailable,
)
from ladle.pipeline import (
    ColumnNames,
    Pipeline,
    build_steps,
    finish_load,
    ladle_version,
    load_target,
    peak_memory_mb,
    process_batch,
    sequenced,
)
from ladle.quarantine import rows_from_unreadable
from ladle.sources.json_typed import SchemaMemo
from ladle.sources.redis_stream import (
    RedisStreamOptions,
    decode_entries,
    ensure_group,
    open_client,
)
from ladle.steps import Step

if TYPE_CHECKING:
    import redis
    from redis.typing import StreamIdT

MESSAGE_ID = "_ladle_message_id"
"""Column holding each row's stream entry id when a stream resource appends."""

Entry = tuple[str, dict[bytes, bytes]]
log = structlog.get_logger("ladle")


@dataclass(frozen=True)
class WorkerOptions:
    """What ``ladle worker`` may set."""

    resource: str | None = None
    """The stream resource to consume (the file's only one when None)."""
    consumer: str | None = None
    """This worker's name in the group; default ``<host>-<pid>``."""
    destination: str | None = None
    """Overrides the pipeline file's destination."""
    batch_size: int | None = None
    """Entries per read; default the resource's ``batch_size``."""
    idle_exit_s: float | None = None
    """Stop after the stream has been empty this long (benchmarks, tests); None: never."""


class Worker:
    """One consumer of a resource's stream, loading into the pipeline's destination."""

    def __init__(
        self,
        pipeline: Pipeline,
        options: WorkerOptions | None = None,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.options = options or WorkerOptions()
        self.config: PipelineConfig = pipeline.config
        self.res = _stream_resource(self.config, self.options.resource)
        self.source: RedisStreamOptions = self.res.source_options  # type: ignore[assignment]
        self.consumer = self.options.consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.metrics = metrics or Metrics()
        self.batch_size = self.options.batch_size or self.res.spec.batch_size
        self.steps: list[tuple[str, Step]] = []
        self.url = pipeline.destination_url(self.options.destination)
        self.run_id = uuid.uuid4().hex[:12]
        self.target = stream_target(load_target(self.config, self.res, []), self.res)
        self.entry = RunEntry(
            run_id=self.run_id,
            pipeline=self.config.name,
            resource=self.res.name,
            table_name=self.res.table,
            write_mode=self.target.write.value,
            config_hash=self.config.config_hash,
            ladle_version=ladle_version(),
        )
        self._stopping = False
        self._signal: str | None = None
        self._seq = 0
        self._names = ColumnNames()
        self._shape = SchemaMemo()
        """The types of the last batch Polars read, offered to the next (a typed read)."""
        """Stored column names, fixed for the worker's session: a later entry lacking a
        column cannot shift the others'; each made-up name is logged once."""
        self._in_hand: list[str] = []
        self.destination = PatientDestination(
            self.url,
            base_dir=self.config.base_dir,
            prepare=self._prepare,
            metrics=self.metrics,
            patience=Patience(
                resource=self.res.name,
                retry_max_s=self.source.retry_max_ms / 1000,
                tick_s=self._keep_every,
                stopping=lambda: self._stopping,
                in_hand=lambda: len(self._in_hand),
            ),
        )
        self._client: redis.Redis | None = None

    # ------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Finish the batch in hand, commit, acknowledge, then return from :meth:`run`."""
        self._stopping = True

    def run(self) -> RunEntry:
        """Consume until stopped; return this session's ledger row (running totals)."""
        self._client = client = open_client(self.source.url)
        try:
            destination = self._start()
            ensure_group(client, self.source)
            destination.record_run(self.entry)
            log.info("worker started", resource=self.res.name, consumer=self.consumer)
            try:
                self._loop(client)
                self._finish()
            except Stopped:
                log.warning(
                    "stopped while waiting for the destination; the batch in hand stays "
                    "pending for another worker",
                    signal=self._signal,
                    entries=len(self._in_hand),
                )
            return self.entry
        finally:
            self.destination.close()
            client.close()

    def _start(self) -> Destination:
        """The first connection. A destination unavailable at start is an error, not a wait,
        so that a wrong URL shows at once; the message says so and what to do."""
        try:
            return self.destination.connected()
        except DestinationError as exc:
            if not destination_unavailable(exc):
                raise
            raise DestinationError(
                f"the worker did not start: {exc}; check that the destination is up and its "
                "URL right, then start the worker again (a worker waits out an outage once "
                "connected, not at start, so that a wrong URL shows at once)"
            ) from exc

    def _finish(self) -> None:
        if self._signal is not None:
            log.info("stopped by a signal after the batch in hand", signal=self._signal)
        self.entry.status = SUCCEEDED
        self.entry.finished_at = _now()
        self.entry.peak_memory_mb = peak_memory_mb()
        self.destination.attempt(lambda destination: destination.record_run(self.entry))
        log.info("worker stopped", resource=self.res.name, **vars(self.entry.counts))

    @contextmanager
    def signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT: stop after the batch in hand; a second one exits at once, no ack."""

        def handle(signum: int, _frame: FrameType | None) -> None:
            # Only flags here: logging from a handler can re-enter a write to stderr that
            # the signal interrupted, raise there, and lose the stop request.
            if self._stopping:
                os._exit(128 + signum)
            self._signal = signal.Signals(signum).name
            self.stop()

        previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _loop(self, client: redis.Redis) -> None:
        idle_since = time.monotonic()
        last_claim = 0.0
        while not self._stopping:
            entries: list[Entry] = []
            if time.monotonic() - last_claim >= self._claim_every:
                entries = self._claim(client)
                last_claim = time.monotonic()
            claimed = bool(entries)
            if not entries:
                entries = self._read(client)
            if entries:
                self._handle(client, entries, claimed=claimed)
                idle_since = time.monotonic()
            elif self._idle_exit(idle_since):
                break
            self._observe(client)

    @property
    def _claim_every(self) -> float:
        return max(self.source.claim_idle_ms / 2000, 0.05)

    def _idle_exit(self, since: float) -> bool:
        limit = self.options.idle_exit_s
        return limit is not None and time.monotonic() - since >= limit

    # ------------------------------------------------------------ the destination

    def _prepare(self, destination: Destination) -> None:
        """Steps and load target for a (re)connected destination (fk and lookup read it)."""
        self.steps = build_steps(self.config, self.res, destination)
        self.target = stream_target(load_target(self.config, self.res, self.steps), self.res)

    @property
    def _keep_every(self) -> float:
        return max(self.source.claim_idle_ms / 3000, 0.05)

    @contextmanager
    def _keeping(self) -> Iterator[None]:
        """While the batch is in hand, keep its entries every ``claim_idle_ms / 3`` from a
        thread: the main one may be blocked far longer (a pool waiting ``pool_timeout``
        for a connection, a slow load), and another worker would claim them meanwhile."""
        done = threading.Event()

        def keep() -> None:
            while not done.wait(self._keep_every):
                self._keep()

        keeper = threading.Thread(target=keep, name="ladle-keep-entries", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            done.set()
            keeper.join()

    def _keep(self) -> None:
        """Reset the idle time of the entries in hand (best effort) so no worker claims them
        while this one waits for the destination or bisects a batch.

        ``XCLAIM … JUSTID`` does not count a delivery (``XREADGROUP`` with id ``0`` does,
        as of Redis 7). Entries acknowledged meanwhile are no longer pending: it skips them.
        """
        import redis

        if not self._in_hand or self._client is None:
            return
        ids: list[StreamIdT] = [*self._in_hand]
        with suppress(redis.RedisError):
            self._client.xclaim(
                self.source.stream,
                self.source.group,
                self.consumer,
                min_idle_time=0,
                message_ids=ids,
                justid=True,
            )

    # ------------------------------------------------------------ reading

    def _read(self, client: redis.Redis) -> list[Entry]:
        reply = _redis(
            "reading the stream",
            self.source,
            lambda: client.xreadgroup(
                self.source.group,
                self.consumer,
                {self.source.stream: ">"},
                count=self.batch_size,
                block=self.source.block_ms or None,
            ),
        )
        return [(_text(i), f) for _, messages in reply or [] for i, f in messages]

    def _claim(self, client: redis.Redis) -> list[Entry]:
        """Entries idle longer than ``claim_idle_ms`` on any consumer (a dead one's) become ours."""
        reply = _redis(
            "claiming idle entries",
            self.source,
            lambda: client.xautoclaim(
                self.source.stream,
                self.source.group,
                self.consumer,
                min_idle_time=self.source.claim_idle_ms,
                start_id="0-0",
                count=self.batch_size,
            ),
        )
        claimed = [(_text(i), f) for i, f in reply[1] if f is not None] if reply else []
        if claimed:
            log.info("claimed idle entries", resource=self.res.name, count=len(claimed))
        # Entries deleted from the stream while pending come back without fields: ack them.
        gone = [_text(i) for i, f in (reply[1] if reply else []) if f is None]
        if gone:
            client.xack(self.source.stream, self.source.group, *gone)
        return claimed

    def _observe(self, client: redis.Redis) -> None:
        """Consumer lag and pending count for the metrics (best effort)."""
        try:
            groups = client.xinfo_groups(self.source.stream)
        except Exception:
            return
        for group in groups:
            if _text(group.get("name", b"")) == self.source.group:
                self.metrics.consumer_lag.labels(self.res.name).set(group.get("lag") or 0)
                self.metrics.pending.labels(self.res.name).set(group.get("pending") or 0)

    def _deliveries(self, client: redis.Redis, entries: list[Entry]) -> dict[str, int]:
        """How often each entry has been delivered (only entries read before are looked up)."""
        ids = [i for i, _ in entries]
        reply = _redis(
            "reading delivery counts",
            self.source,
            lambda: client.xpending_range(
                self.source.stream,
                self.source.group,
                min=ids[0],
                max=ids[-1],
                count=len(ids) * 10,
                consumername=self.consumer,
            ),
        )
        wanted = set(ids)
        counts = {_text(bytes(r["message_id"])): int(r["times_delivered"]) for r in reply}
        return {i: c for i, c in counts.items() if i in wanted}

    # ------------------------------------------------------------ processing

    def _handle(self, client: redis.Redis, entries: list[Entry], *, claimed: bool) -> None:
        """Load a batch, isolating the entries whose processing raises.

        Entries read for the first time were delivered once; claimed ones are looked up.
        """
        started = time.monotonic()
        self._in_hand = [i for i, _ in entries]
        with self._keeping():
            self._handle_in_hand(client, entries, claimed=claimed)
        self._in_hand = []  # still in hand after Stopped: the log line counts them
        self.metrics.batch_seconds.labels(self.res.name).observe(time.monotonic() - started)

    def _handle_in_hand(self, client: redis.Redis, entries: list[Entry], *, claimed: bool) -> None:
        """Entries delivered too often load alone; the others as one batch."""
        deliveries = self._deliveries(client, entries) if claimed else {}
        limit = self.source.max_deliveries
        suspect = [e for e in entries if deliveries.get(e[0], 1) > limit]
        if suspect:
            log.warning(
                "entries delivered too often; loading each on its own",
                resource=self.res.name,
                ids=[i for i, _ in suspect],
            )
        self._attempt(client, [e for e in entries if deliveries.get(e[0], 1) <= limit], deliveries)
        for entry in suspect:
            self._attempt_alone(client, entry, deliveries)

    def _attempt(
        self, client: redis.Redis, entries: list[Entry], deliveries: dict[str, int]
    ) -> None:
        """Load ``entries``; if that raises, split them in two and try each half, down to
        the single entries that fail (bisection: about 2·log2(n) loads for one bad entry)."""
        if not entries:
            return
        try:
            loaded = self.destination.attempt(lambda destination: self._load(destination, entries))
        except Stopped:
            raise
        except Exception as exc:
            if len(entries) == 1:
                self._failed(client, entries[0], deliveries, exc)
                return
            half = len(entries) // 2
            log.warning(
                "batch failed; splitting it to isolate the entries that fail",
                resource=self.res.name,
                entries=len(entries),
                first=entries[0][0],
                last=entries[-1][0],
                error=describe(exc),
            )
            self.metrics.batch_splits.labels(self.res.name).inc()
            self._attempt(client, entries[:half], deliveries)
            self._attempt(client, entries[half:], deliveries)
            return
        self._acknowledge(client, [i for i, _ in entries], loaded)
        log.info("batch loaded", resource=self.res.name, entries=len(entries), last=entries[-1][0])

    def _failed(
        self, client: redis.Redis, entry: Entry, deliveries: dict[str, int], error: Exception
    ) -> None:
        """An entry that fails alone: pending until its ``max_deliveries``-th delivery fails."""
        message_id = entry[0]
        count = deliveries.get(message_id, 1)
        if count >= self.source.max_deliveries:
            reason = f"failed {count} times; last error: {describe(error)}"
            self._dead_letter_poison(client, [entry], reason)
            return
        log.warning(
            "entry failed; it stays pending and is retried when claimed again",
            resource=self.res.name,
            id=message_id,
            deliveries=count,
            max_deliveries=self.source.max_deliveries,
            error=describe(error),
        )

    def _attempt_alone(self, client: redis.Redis, entry: Entry, deliveries: dict[str, int]) -> None:
        """An entry delivered too often: load it alone, counting attempts in ladle's terms.

        Redis counts every delivery, also those to workers that died of something else or
        whose batch another worker took over; ladle counts only the times the entry was
        alone in hand. Reaching ``max_deliveries`` of those, it is dead-lettered unloaded.
        """
        key, message_id = self.source.attempts_key, entry[0]
        tries = int(
            _redis("counting attempts", self.source, lambda: client.hincrby(key, message_id))
        )
        if tries > self.source.max_deliveries:
            reason = (
                f"delivered {deliveries.get(message_id)} times; a worker stopped while it was "
                f"loading this entry alone {tries - 1} times"
            )
            self._dead_letter_poison(client, [entry], reason)
        else:
            self._attempt(client, [entry], deliveries)
        _redis("counting attempts", self.source, lambda: client.hdel(key, message_id))

    def _load(self, destination: Destination, entries: list[Entry]) -> pl.DataFrame:
        """Steps, then one transaction (data, quarantine, ledger); the quarantined rows."""
        batch = decode_entries(entries, self.source.field, self._shape)
        told = len(self._names.notices)
        frame, quarantined, deduplicated = process_batch(
            self.res, self.steps, batch, names=self._names
        )
        for notice in self._names.notices[told:]:
            log.warning(notice, resource=self.res.name)
        if self.res.spec.write is WriteMode.APPEND:
            frame = with_message_ids(frame, batch)
        staged = sequenced(frame, self._seq)
        counts = replace(self.entry.counts)
        counts.fetched += batch.fetched
        counts.deduplicated += deduplicated
        counts.quarantined += quarantined.height
        counts.bytes_read += batch.bytes_read
        load = destination.begin(self.target)
        try:
            load.stage(staged)
            load.write_quarantine(quarantined, run_id=self.run_id, resource=self.res.name)
            finish_load(load, counts, self.res.name)
            load.write_ledger(replace(self.entry, counts=counts))
            load.commit()
        except BaseException:
            with suppress(Exception):
                load.rollback()
            raise
        self._seq += len(entries)
        self.entry.counts = counts
        m, name = self.metrics, self.res.name
        m.records_in.labels(name).inc(batch.fetched)
        m.records_loaded.labels(name).inc(staged.height)
        m.records_quarantined.labels(name).inc(quarantined.height)
        m.records_dead_lettered.labels(name).inc(quarantined.height)
        return quarantined

    def _acknowledge(
        self,
        client: redis.Redis,
        ids: list[str],
        quarantined: pl.DataFrame,
        *,
        reason: str = "invalid",
    ) -> None:
        """Dead-letter the quarantined entries and acknowledge the batch, in one MULTI.

        ``reason`` is ``invalid`` (a rule or the parser rejected it) or ``poison`` (its
        processing failed ``max_deliveries`` times).
        """
        pipe = client.pipeline(transaction=True)
        for row in quarantined.iter_rows(named=True):
            pipe.xadd(
                self.source.dead_letter_stream,
                {
                    "id": row["position"],
                    "resource": self.res.name,
                    "reason": reason,
                    "raw": row["raw"],
                    "errors": row["errors"],
                },
            )
        pipe.xack(self.source.stream, self.source.group, *ids)
        _redis("acknowledging", self.source, pipe.execute)

    def _dead_letter_poison(self, client: redis.Redis, entries: list[Entry], reason: str) -> None:
        """Entries that cannot be processed: quarantined (the ledger balances), dead-lettered."""
        ids = [i for i, _ in entries]
        unreadable = [
            Unreadable(i, _raw(fields, self.source.field), reason, rule="poison")
            for i, fields in entries
        ]
        quarantined = rows_from_unreadable(unreadable)
        size = sum(len(k) + len(v) for _, fields in entries for k, v in fields.items())

        def record(destination: Destination) -> None:
            counts = replace(self.entry.counts)
            counts.fetched += len(entries)
            counts.quarantined += len(entries)
            counts.bytes_read += size
            load = destination.begin(self.target)
            try:
                load.write_quarantine(quarantined, run_id=self.run_id, resource=self.res.name)
                load.write_ledger(replace(self.entry, counts=counts))
                load.commit()
            except BaseException:
                with suppress(Exception):
                    load.rollback()
                raise
            self.entry.counts = counts

        self.destination.attempt(record)
        log.warning("dead-lettered", resource=self.res.name, ids=ids, reason=reason)
        self._acknowledge(client, ids, quarantined, reason="poison")
        self.metrics.records_in.labels(self.res.name).inc(len(entries))
        self.metrics.records_quarantined.labels(self.res.name).inc(len(entries))
        self.metrics.records_dead_lettered.labels(self.res.name).inc(len(entries))


def _stream_resource(config: PipelineConfig, name: str | None) -> Resource:
    streams = {n: r for n, r in config.resources.items() if r.source_type == "redis_stream"}
    if name is not None:
        if name not in streams:
            raise LadleError(
                f"{config.path}: no redis_stream resource named {name!r}; "
                f"stream resources: {', '.join(streams) or 'none'}"
            )
        return streams[name]
    if len(streams) != 1:
        found = ", ".join(streams) or "none"
        raise LadleError(
            f"{config.path}: name the stream resource with --resource (stream resources: {found})"
        )
    return next(iter(streams.values()))


def stream_target(target: LoadTarget, res: Resource) -> LoadTarget:
    """Append becomes a merge on the entry id, so a redelivered entry inserts nothing."""
    if res.spec.write is WriteMode.APPEND:
        return replace(target, write=WriteMode.MERGE, primary_key=(MESSAGE_ID,))
    return target


def with_message_ids(frame: pl.DataFrame, batch: SourceBatch) -> pl.DataFrame:
    """Each row's entry id (what ``stream_target`` merges on), added after the steps, which
    must neither see nor rename it."""
    ids = pl.Series(MESSAGE_ID, batch.positions, dtype=pl.String)
    return frame.with_columns(ids.gather(frame.get_column(ROW)))


def _redis(doing: str, options: RedisStreamOptions, call: Callable[[], Any]) -> Any:
    import redis

    try:
        return call()
    except redis.RedisError as exc:
        raise SourceError(f"{doing} failed: {exc}", position=f"stream {options.stream}") from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _raw(fields: dict[bytes, bytes], field: str) -> str:
    value = fields.get(field.encode())
    if value is not None:
        return value.decode("utf-8", "backslashreplace")
    return repr({_text(k): _text(v) for k, v in fields.items()})


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
