"""The store worker: Kafka (readings, video events) → validate → de-duplicate → regions → PostGIS.

Consumer group ``tongguan-store``. Delivery is at-least-once and writes are idempotent:

1. poll a batch (``enable_auto_commit=False``);
2. validate every message (:func:`ingest.schemas.parse_message`), de-duplicate on ``event_id``
   within the batch, assign county/city/province/grid with ``geo.RegionIndex`` (loaded once),
   desensitise personal data in video attributes;
3. write in ONE database transaction (COPY into staging, ``INSERT … ON CONFLICT DO NOTHING``,
   rollups of the new rows only, sensors/cameras on first sight, heartbeat);
4. send the bad records to the dead-letter topic and flush the producer;
5. only then commit the Kafka offsets.

A crash anywhere before 5 replays the batch; the primary keys make the replay insert nothing
twice. When the database is unavailable the worker pauses its partitions (still polling, so it
keeps its group membership), retries with exponential backoff and resumes: nothing is lost.

Dead-letter envelope (JSON value on ``city.deadletter``, key = the original key)::

    {"schema": "deadletter/1", "reason": "out_of_range", "field": "readings[3].value",
     "detail": "…", "index": 3, "item": {…the offending reading…} | null,
     "source": {"topic": "city.iot.readings", "partition": 0, "offset": 42, "timestamp": 1700000000000},
     "original_b64": "<base64 of the original message value>", "original_size": 512,
     "original_truncated": false, "original_sha256": "…", "worker": "store:host:pid",
     "dead_lettered_at": "2026-11-23T10:00:00+00:00"}

with headers ``reason``, ``source_topic``, ``source_partition``, ``source_offset``. A batch
(``readings/1``) with bad readings yields one dead letter per bad reading (``index`` says which),
each carrying the whole original message; the good readings of the batch are stored.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from pathlib import Path
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import orjson
import psycopg
from psycopg.types.json import Jsonb

from ingest.catalogue import Catalogue, load_catalogue
from ingest.errors import IngestError
from ingest.schemas import Parsed, Problem, Reading, parse_message
from ingest.store import Desensitiser, Store
from tongguan.consumer import (UNDECODABLE_BATCH, DeadLetterSink, Progress, RecordFailure, WorkerStalled,
                               isolated, partition_lag, poll_past_undecodable)

log = logging.getLogger(__name__)

GROUP_ID = "tongguan-store"
MAX_POLL_INTERVAL_MS = 8000  # polls come at least every ~1 s, during database waits too
# SQLSTATE classes of errors the database raises about the *data* of a batch (data exception,
# integrity constraint, program limit exceeded such as an index row too large, feature not
# supported, PostGIS internal errors): bisect the batch to the offending rows. Anything else
# (lost connection, shutdown, deadlock, timeouts, missing tables) is about the database, not
# the rows: pause and retry, never dead-letter good data for it.
DATA_SQLSTATE_CLASSES = ("22", "23", "54", "0A", "XX")


def _as_is(text: str) -> str:
    return text



@dataclass
class WorkerConfig:
    batch_size: int = 5000      # max Kafka messages per poll
    target_rows: int = 10000    # aim for about this many readings per DB transaction (gateway batches)
    poll_timeout_ms: int = 500
    until_idle: bool = False
    idle_polls: int = 2  # consecutive caught-up empty polls before --until-idle exits
    join_timeout_s: float = 120.0
    group_id: str | None = None  # default: settings.topic_prefix + "tongguan-store"
    metrics_port: int | None = None
    # A database back after an outage is found within this (each probe costs one connect).
    max_backoff_s: float = 2.0
    stall_after_s: float | None = None  # default TONGGUAN_STALL_AFTER_S: lag, no commit → stalled
    wedge_after_s: float | None = None  # default TONGGUAN_WEDGE_AFTER_S: nothing assigned, lag, no commits
    max_rejoins: int = 3         # consecutive rejoins without progress before exiting non-zero
    observe_every_s: float = 2.0
    # A write slower than this pauses fetching and polls meanwhile. It must stay well inside
    # MAX_POLL_INTERVAL_MS (8 s): without a poll for that long, both kafka-python and librdkafka
    # leave the group, and the rejoin against Tansu costs seconds with nothing consumed (10 s
    # here, from when the interval was 30 s, let a write of 8-10 s on a busy machine do that).
    pause_after_s: float = 3.0
    log_every_s: float = 10.0
    heartbeat_every_s: float = 5.0
    sensor_refresh_s: float = 60.0  # how stale sensors.last_seen may get before it is rewritten
    max_batches: int | None = None  # tests: stop after this many non-empty batches


@dataclass
class Stats:
    consumed: int = 0           # Kafka messages
    readings_valid: int = 0     # readings that passed validation and region assignment
    stored_readings: int = 0    # new rows in readings
    stored_events: int = 0      # new rows in video_events
    duplicates: int = 0         # valid records already stored (replays) or repeated in a batch
    dead_lettered: int = 0
    batches: int = 0
    db_retries: int = 0
    internal_errors: int = 0    # records isolated after an unexpected exception
    rejected_by_database: int = 0
    rejoins: int = 0
    lag: int = 0
    last_batch_s: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


class _Metrics:
    """Prometheus metrics in a registry of their own (several workers may share a process in tests)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.consumed = Counter("tongguan_ingest_consumed", "Kafka messages consumed", registry=self.registry)
        self.stored = Counter("tongguan_ingest_stored", "rows stored", ["table"], registry=self.registry)
        self.dead = Counter("tongguan_ingest_dead_lettered", "records sent to the dead-letter topic",
                            ["reason"], registry=self.registry)
        self.duplicates = Counter("tongguan_ingest_duplicates", "records already stored", registry=self.registry)
        self.lag = Gauge("tongguan_ingest_lag", "messages behind the end of the assigned partitions",
                         registry=self.registry)
        self.latency = Histogram("tongguan_ingest_batch_seconds", "poll-to-commit time of a batch",
                                 buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=self.registry)
        self.db_retries = Counter("tongguan_ingest_db_retries", "database write retries", registry=self.registry)
        self.internal_errors = Counter("tongguan_ingest_internal_errors",
                                       "records isolated after an unexpected exception", ["stage"],
                                       registry=self.registry)
        self.rejected = Counter("tongguan_ingest_rejected_by_database",
                                "rows the database refused, found by bisecting their batch", registry=self.registry)

    def serve(self, port: int) -> None:
        from prometheus_client import start_http_server

        start_http_server(port, registry=self.registry)
        log.info("metrics on http://0.0.0.0:%d/metrics (Prometheus text format)", port)


REGION_FINGERPRINT = """
SELECT md5(coalesce((SELECT string_agg(adcode || ':' || md5(ST_AsEWKB(geom)), ',' ORDER BY adcode) FROM regions), '')
           || '|' || coalesce((SELECT string_agg(county || ':' || size_m, ',' ORDER BY county, size_m)
                               FROM (SELECT DISTINCT county, size_m FROM grid_cells) g), ''))
"""


def _load_region_index(database_url: str, cache_dir=None):
    """The region index, from a pickle in ``cache_dir`` when the regions and grid are unchanged.

    Building the lattice takes seconds (8-9 s on a busy machine), which every restart of a
    worker paid before its first stored row; the cache is keyed by a digest of the regions'
    geometries and the grid sizes, so a `geo load` or `geo grid` invalidates it."""
    import pickle
    from pathlib import Path

    import sqlalchemy as sa

    from geo import RegionIndex
    from tongguan.db import engine_for

    engine = engine_for(database_url)
    path = None
    if cache_dir is not None:
        try:
            with engine.connect() as conn:
                digest = conn.execute(sa.text(REGION_FINGERPRINT)).scalar()
            path = Path(cache_dir) / f"region-index-{digest}.pickle"
            if path.is_file():
                with open(path, "rb") as f:
                    return pickle.load(f)
        except Exception as exc:  # noqa: BLE001 - a cache problem only costs the build below
            log.warning("region index cache not used (%s)", exc)
    index = RegionIndex.from_db(engine)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                pickle.dump(index, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)  # atomic: a concurrent worker reads a whole file or none
        except OSError as exc:
            log.warning("region index cache not written (%s)", exc)
    return index



# Young-generation collections every this many container allocations instead of Python's 700.
# A batch's records, dicts and rows all live until the batch is written, so the default's
# frequent collections scan survivors for nothing: preparing a 10,000-reading batch cost
# 7.6 µs a reading of CPU with the default and 6.4 µs with this (best of 3, bench messages).
GC_GEN0_THRESHOLD = 50_000


def tune_gc():
    """Fewer young collections (see ``GC_GEN0_THRESHOLD``), and what the worker loaded at start
    (region index, catalogue, modules) moved out of the collector's view: it lives as long as
    the process. Reference counting still frees everything that is not a cycle. Returns the
    function that puts the collector back as it was (the worker may share a process: tests)."""
    import gc

    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(GC_GEN0_THRESHOLD, before[0]), *before[1:])

    def restore() -> None:
        gc.set_threshold(*before)
        gc.unfreeze()

    return restore


def forget_stale(seen: dict[str, float], now: float, older_than: float) -> int:
    """Drop the entries of a last-written map older than ``older_than`` seconds: they would be
    written again anyway, so forgetting them changes nothing but the memory a worker keeps for
    device ids it no longer hears from (a churn of ids, or a flood of made-up ones, would grow it
    without bound). Returns how many were dropped.

    >>> seen = {"a": 0.0, "b": 50.0}
    >>> forget_stale(seen, 100.0, 60.0), sorted(seen)
    (1, ['b'])
    """
    stale = [k for k, t in seen.items() if now - t > older_than]
    for k in stale:
        del seen[k]
    return len(stale)


class StoreWorker:
    """One store worker process. ``run()`` until stopped (or caught up with ``until_idle``)."""

    role = "store"

    def __init__(self, settings, config: WorkerConfig | None = None, *, region_index=None,
                 catalogue: Catalogue | None = None):
        self.settings = settings
        self.config = config or WorkerConfig()
        self.catalogue = catalogue or load_catalogue()
        if not settings.database_url or not settings.kafka_bootstrap:
            raise IngestError("the store worker needs TONGGUAN_DATABASE_URL and TONGGUAN_KAFKA_BOOTSTRAP "
                              "(or run it through `tongguan ingest`, which starts managed services)")
        self.store = Store(settings.database_url, catalogue=self.catalogue)
        self._region_index = region_index
        self.desensitiser = Desensitiser(settings.secret_key.get_secret_value().encode(),
                                         self.catalogue.personal_attributes)
        self.topics = (settings.topic("readings"), settings.topic("video"))
        self.deadletter_topic = settings.topic("deadletter")
        # The contract's group; tests and benchmarks isolate themselves with their topic prefix.
        self.group_id = self.config.group_id or settings.topic_prefix + GROUP_ID
        self.worker_id = f"{self.role}:{socket.gethostname()}:{os.getpid()}"
        self.started_at = datetime.now(timezone.utc)
        self.stats = Stats()
        self.metrics = _Metrics()
        self._stop = threading.Event()
        self._sensor_seen: dict[str, float] = {}
        self._camera_seen: dict[str, float] = {}
        self._forgot_at = time.monotonic()
        self._last_heartbeat = 0.0
        self._latencies: deque[float] = deque(maxlen=100)
        self.consumer = None
        self.producer = None
        self.first_record_at: float | None = None  # monotonic clock, for the benchmark
        # Running mean of readings per message (gateway batches carry many). Start high so the
        # first poll is small rather than one giant transaction; it adapts within a few polls.
        self._rows_per_message = 50.0
        self.last_commit_at: float | None = None
        cfg = self.config
        self.progress = Progress(
            self.role, self.worker_id,
            stall_after_s=cfg.stall_after_s if cfg.stall_after_s is not None else settings.stall_after_s,
            wedge_after_s=cfg.wedge_after_s if cfg.wedge_after_s is not None else settings.wedge_after_s)
        self._rejoins_without_progress = 0

    # -- life cycle ------------------------------------------------------------------------
    @property
    def region_index(self):
        if self._region_index is None:
            t = time.perf_counter()
            self._region_index = _load_region_index(self.settings.database_url,
                                                    Path(self.settings.home) / "cache")
            log.info("region index loaded in %.1f s", time.perf_counter() - t)
        return self._region_index

    def stop(self) -> None:
        self._stop.set()

    def _connect_kafka(self) -> None:
        from kafka import KafkaProducer

        self._connect_consumer()
        self.producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap,
                                      client_id=self.worker_id + ":dlq", acks="all", linger_ms=5, retries=10)

    def _connect_consumer(self) -> None:
        if self.settings.store_consumer == "kafka-python":
            from kafka import KafkaConsumer

            fetch_wait_ms = self.IDLE_FETCH_WAIT_MS  # tuned per poll (_tune_fetch_wait)
        else:
            # librdkafka (tongguan.rdkafka): fetches and decodes in C threads of its own.
            from tongguan.rdkafka import RdKafkaConsumer as KafkaConsumer

            # Set once (librdkafka cannot change it later): the short wait, for the reason below;
            # its background fetches are C, not this process's Python, when idle.
            fetch_wait_ms = self.BUSY_FETCH_WAIT_MS

        bs = self.settings.kafka_bootstrap
        self.consumer = KafkaConsumer(
            *self.topics, bootstrap_servers=bs, group_id=self.group_id, client_id=self.worker_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=self.config.batch_size,
            # Fast joins (Tansu is slow with defaults); a batch including DB retries is covered
            # because a paused consumer keeps polling. max_poll_interval_ms is also the rebalance
            # timeout of JoinGroup: after a member was killed, the group waits up to that long
            # for it before assigning (30 s made every restart take 18-25 s to its first row).
            session_timeout_ms=6000, heartbeat_interval_ms=1000, max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024,
            # Tansu answers a fetch that includes an empty partition (the video topic, mostly) only
            # after fetch_max_wait_ms: a short wait keeps fetches flowing (measured: 23k → 69k
            # msg/s); when idle the wait goes back up (see _tune_fetch_wait) to spare the CPU.
            fetch_max_wait_ms=fetch_wait_ms,
        )

    def close(self) -> None:
        for c in (self.consumer, self.producer):
            if c is not None:
                try:
                    c.close()
                except Exception:  # noqa: BLE001 - best effort on shutdown
                    pass
        self.store.close()

    def run(self) -> Stats:
        """Consume until stopped; with ``until_idle``, until every assigned partition is caught up.

        Pipelined: while batch k is written by the database thread, the main thread polls and
        prepares batch k+1 (Python CPU and PostgreSQL CPU overlap). Batch k's dead letters and
        offsets are committed before batch k+1's write starts, so offsets never pass an
        uncommitted row.
        """
        from concurrent.futures import ThreadPoolExecutor
        from datetime import date, timedelta

        self.region_index  # load before joining the group: a slow load must not stall a rebalance
        self._call_db_with_retry(self.store.connect)
        today = date.today()
        self._call_db_with_retry(lambda: self.store.ensure_partitions([today + timedelta(days=i) for i in range(-1, 3)]))
        self._connect_kafka()
        if self.config.metrics_port:
            self.metrics.serve(self.config.metrics_port)
        log.info("store worker %s consuming %s (group %s)", self.worker_id, ", ".join(self.topics),
                 self.group_id)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-db")
        pending = None
        idle = 0
        t_start = time.monotonic()
        last_log = last_observe = time.monotonic()
        assigned_once = False
        restore_gc = tune_gc()
        try:
            while not self._stop.is_set():
                polled = poll_past_undecodable(self.consumer, self._skipped,
                                               timeout_ms=0 if pending else self.config.poll_timeout_ms,
                                               max_records=self._max_records())
                records = [r for recs in polled.values() for r in recs]
                if records or self.consumer.assignment():
                    if not assigned_once:
                        assigned_once = True
                        log.info("%d partition(s) assigned %.1f s after joining", len(self.consumer.assignment()),
                                 time.monotonic() - t_start)
                    t_start = time.monotonic()
                if time.monotonic() - last_observe > self.config.observe_every_s:
                    last_observe = time.monotonic()
                    state = self._observe()
                    if state in ("stalled", "wedged") and pending is None:
                        self._rejoin(state)
                        continue
                if time.monotonic() - last_log > self.config.log_every_s:
                    last_log = time.monotonic()
                    self._log_stats()
                self._tune_fetch_wait(bool(records) or pending is not None)
                if records:
                    idle = 0
                    if self.first_record_at is None:
                        self.first_record_at = time.monotonic()
                    prepared = self.prepare(records)
                    self._finish(pending)
                    pending = (executor.submit(self._write_with_retry, prepared), records, prepared,
                               time.perf_counter())
                    if self.config.max_batches and self.stats.batches + 1 >= self.config.max_batches:
                        break
                    continue
                if pending is not None:
                    self._finish(pending)
                    pending = None
                    continue
                if self.config.until_idle:
                    if not self.consumer.assignment():
                        if time.monotonic() - t_start > self.config.join_timeout_s:
                            raise IngestError(f"no partitions assigned after {self.config.join_timeout_s:.0f} s; "
                                              "is another worker of the group holding them?")
                    elif self._observe() == "idle":
                        idle += 1
                        if idle >= self.config.idle_polls:
                            log.info("caught up: every assigned partition is at its end")
                            break
                self._maybe_heartbeat()
            if pending is not None:
                self._finish(pending)
                pending = None
        finally:
            if pending is not None:
                pending[0].cancel()
            executor.shutdown(wait=True)
            restore_gc()
            self._log_stats()
            try:
                self.store.heartbeat(self._heartbeat_params())
            except Exception:  # noqa: BLE001 - the database may be the reason we stop
                pass
            self.close()
        return self.stats

    BUSY_FETCH_WAIT_MS = 10
    IDLE_FETCH_WAIT_MS = 250

    def _tune_fetch_wait(self, busy: bool) -> None:
        """Short fetch waits while records flow, long ones when idle (10 ms fetches cost ~15 % of
        a core doing nothing). kafka-python reads this setting for every fetch request it builds;
        the attribute is private, so a different client version just keeps the idle value."""
        fetcher = getattr(self.consumer, "_fetcher", None)
        cfg = getattr(fetcher, "config", None)
        if isinstance(cfg, dict) and "fetch_max_wait_ms" in cfg:
            cfg["fetch_max_wait_ms"] = self.BUSY_FETCH_WAIT_MS if busy else self.IDLE_FETCH_WAIT_MS

    def _max_records(self) -> int:
        """Messages per poll so that a transaction holds about ``target_rows`` readings: a poll of
        5000 gateway batches would be one huge transaction and nothing left to overlap with."""
        n = int(self.config.target_rows / max(self._rows_per_message, 1.0))
        return max(1, min(self.config.batch_size, n))

    def _call_db_with_retry(self, fn):
        backoff = 0.5
        while True:
            try:
                return fn()
            except psycopg.OperationalError as exc:
                self.store.close()
                log.warning("database unavailable (%s); retrying in %.1f s", str(exc).strip()[:200], backoff)
                if self._stop.wait(backoff):
                    raise IngestError("stopped while waiting for the database") from exc
                backoff = min(backoff * 2, self.config.max_backoff_s)

    def _finish(self, pending) -> None:
        """Wait for a batch's write (keeping the group membership alive), then dead letters, offsets."""
        if pending is None:
            return
        future, records, prepared, t0 = pending
        paused = False
        waited = time.monotonic()
        while True:
            try:
                future.result(timeout=0.5)
                break
            except TimeoutError:
                if time.monotonic() - waited > self.config.pause_after_s:
                    # A slow or unavailable database: stop fetching, keep polling for membership.
                    if not paused:
                        paused = True
                        self.progress.state = "waiting_for_database"
                        self.consumer.pause(*self.consumer.assignment())
                        log.warning("database write is taking long; consumption paused")
                    extra = self.consumer.poll(timeout_ms=200)
                    # Partitions assigned by a rebalance meanwhile are not paused: rewind what
                    # came back so it is polled again, never skipped.
                    for tp, recs in extra.items():
                        if recs:
                            self.consumer.seek(tp, min(r.offset for r in recs))
        if paused:
            self.consumer.resume(*self.consumer.paused())
            log.info("database write done; consumption resumed")
        self._send_deadletters(prepared.dead + prepared.rejected)
        self._commit(records)
        self.last_commit_at = time.monotonic()
        dt = time.perf_counter() - t0
        s = self.stats
        s.batches += 1
        s.last_batch_s = dt
        self._latencies.append(dt)
        self.metrics.latency.observe(dt)

    def _log_stats(self) -> None:
        s = self.stats
        p50 = float(np.median(self._latencies)) if self._latencies else 0.0
        log.info("consumed=%d stored_readings=%d stored_events=%d duplicates=%d dead_lettered=%d lag=%d "
                 "batches=%d batch_p50=%.3fs", s.consumed, s.stored_readings, s.stored_events, s.duplicates,
                 s.dead_lettered, s.lag, s.batches, p50)

    def _observe(self) -> str:
        """Lag (from the high watermark, see ``tongguan.consumer.partition_lag``) and state."""
        try:
            state = self.progress.observe(self.consumer, self.topics)
        except Exception as exc:  # noqa: BLE001 - the broker may be gone; say so, try again later
            self.progress.error(f"broker: {_first_line(exc)}")
            return self.progress.state
        self.stats.lag = self.progress.lag
        self.metrics.lag.set(self.progress.lag)
        return state

    def _rejoin(self, state: str) -> None:
        """Leave the group and join again as a new member (a fresh member id); after
        ``max_rejoins`` rejoins without a commit in between, exit non-zero for the supervisor."""
        if self._rejoins_without_progress >= self.config.max_rejoins:
            raise WorkerStalled(f"{state}: lag {self.progress.lag}, no commit for "
                                f"{self.progress.since_commit_s():.0f} s after {self._rejoins_without_progress} "
                                "rejoin(s); exiting so the supervisor restarts the worker")
        self._rejoins_without_progress += 1
        log.warning("consumer %s (lag %d, assigned %d, no commit for %.0f s): leaving the group and joining "
                    "again with a fresh member id", state, self.progress.lag, self.progress.assigned,
                    self.progress.since_commit_s())
        self.progress.error(f"{state}: rejoined the group (lag {self.progress.lag})")
        try:
            self.consumer.close(autocommit=False)
        except Exception:  # noqa: BLE001 - a wedged or gone coordinator
            pass
        self._connect_consumer()
        self.progress.rejoined()
        self.stats.rejoins = self.progress.rejoins

    def _maybe_heartbeat(self) -> None:
        if time.monotonic() - self._last_heartbeat < self.config.heartbeat_every_s:
            return
        try:
            self.store.heartbeat(self._heartbeat_params())
            self._last_heartbeat = time.monotonic()
        except psycopg.Error as exc:
            log.warning("heartbeat failed: %s", exc)

    # -- one batch -------------------------------------------------------------------------
    def process_batch(self, records: list) -> None:
        """Synchronously: prepare, write, dead letters, commit (the pipelined loop does the same)."""
        from concurrent.futures import Future

        t0 = time.perf_counter()
        prepared = self.prepare(records)
        f: Future = Future()
        f.set_result(self._write_with_retry(prepared))
        self._finish((f, records, prepared, t0))

    def prepare(self, records: list) -> "_Prepared":
        """Validate, de-duplicate, assign regions and build the rows of one polled batch (pure CPU).

        Every step that looks at one record runs isolated: an unexpected exception dead-letters
        that record (reason ``internal_error``) and the rest of the batch goes on."""
        now = time.time()
        cat = self.catalogue
        out = _Prepared(source=records)
        readings: list[tuple] = []   # (Reading, record)
        events: list[tuple] = []     # (VideoEvent, record)
        seen_r: set[str] = set()
        seen_v: set[str] = set()
        def parse(value):
            return parse_message(value, now=now, catalogue=cat)

        for rec in records:
            parsed: Parsed | None = isolated(parse, rec.value, stage="decode",
                                             on_failure=lambda f, rec=rec: self._failed(out, rec, f))
            if parsed is None:
                continue
            for p in parsed.problems:
                out.dead.append((rec, p, None))
            for r in parsed.readings:
                if r.event_id in seen_r:
                    out.duplicates += 1
                    continue
                seen_r.add(r.event_id)
                readings.append((r, rec))
            for e in parsed.events:
                if e.event_id in seen_v:
                    out.duplicates += 1
                    continue
                seen_v.add(e.event_id)
                events.append((e, rec))
        self.stats.consumed += len(records)
        self.metrics.consumed.inc(len(records))
        if records:
            rpm = (len(readings) + len(events) + len(out.dead)) / len(records)
            self._rows_per_message = 0.5 * self._rows_per_message + 0.5 * rpm

        items = readings + events
        if not items:
            return out
        assigned = isolated(self._assign, items, stage="assign", on_failure=lambda f: None)
        if assigned is None:
            # The vectorised assignment failed on something in the batch: place each item alone,
            # so only the items that fail are dead-lettered.
            kept, parts = [], []
            for it in items:
                one = isolated(self._assign, [it], stage="assign",
                               on_failure=lambda f, it=it: self._failed(out, it[1], f, it[0]))
                if one is not None:
                    kept.append(it)
                    parts.append(one)
            if not kept:
                return out
            readings = [it for it in kept if isinstance(it[0], Reading)]
            items = kept
            assigned = tuple(np.concatenate([p[k] for p in parts]) for k in range(6))
        outside, swapped, county, city, province, grid = assigned
        n_r = len(readings)
        mono = time.monotonic()
        for i, (item, rec) in enumerate(items):
            if outside[i]:
                idx = item.index if i < n_r else None
                prefix = f"readings[{idx}]." if idx is not None else ""
                if swapped[i]:
                    p = Problem("swapped_coordinates", prefix + "lon",
                                f"lon={item.lon} lat={item.lat} look swapped: longitude comes first", idx)
                else:
                    p = Problem("outside_regions", prefix + "lon",
                                f"lon={item.lon} lat={item.lat} is outside every loaded region", idx)
                out.dead.append((rec, p, None))
                continue
            place = (county[i], city[i], province[i], grid[i] or None)
            build = self._reading_row if i < n_r else self._event_row
            isolated(build, out, item, rec, place, mono, stage="prepare" if i < n_r else "desensitise",
                     on_failure=lambda f, rec=rec, item=item: self._failed(out, rec, f, item))
        return out

    def _assign(self, items: list) -> tuple:
        """(outside, swapped, county, city, province, grid) arrays for (item, record) pairs."""
        n = len(items)
        lon = np.fromiter((it[0].lon for it in items), dtype=float, count=n)
        lat = np.fromiter((it[0].lat for it in items), dtype=float, count=n)
        a = self.region_index.assign(lon, lat)
        outside = np.asarray(a.outside, dtype=bool)
        swapped = np.zeros(n, dtype=bool)
        if outside.any():
            idx = np.flatnonzero(outside)
            b = self.region_index.assign(lat[idx], lon[idx])
            swapped[idx] = ~np.asarray(b.outside, dtype=bool)
        return (outside, swapped, np.asarray(a.county, dtype=object), np.asarray(a.city, dtype=object),
                np.asarray(a.province, dtype=object), np.asarray(a.grid_id, dtype=object))

    def _reading_row(self, out: "_Prepared", r, rec, place: tuple, mono: float) -> None:
        c, ci, pr, g = place
        theme = self.catalogue.metrics[r.metric].theme
        row = (r.ts, r.event_id, r.sensor_id, r.metric, r.value, r.quality, c, ci, pr, g,
               r.lon, r.lat, r.gateway_id, rec.topic, rec.partition, rec.offset)
        out.readings.append(row)
        out.reading_index.append(r.index)
        last = self._sensor_seen.get(r.sensor_id)
        if last is None or mono - last > self.config.sensor_refresh_s:
            out.sensors[r.sensor_id] = (r.sensor_id, r.metric, theme, r.gateway_id,
                                        r.lon, r.lat, c, ci, pr, g or "", r.ts, r.value)

    def _event_row(self, out: "_Prepared", e, rec, place: tuple, mono: float) -> None:
        c, ci, pr, g = place
        theme = self.catalogue.video_event_types[e.type].theme
        # Serialised here (inside this record's isolation), handed to COPY as jsonb text as it is:
        # a plain str would be dumped as a JSON *string* (attributes->>'phone' would be NULL).
        attrs = (Jsonb(orjson.dumps(self.desensitiser.clean(e.attributes)).decode(), dumps=_as_is)
                 if e.attributes else None)
        out.events.append((e.event_id, e.camera_id, e.type, theme,
                           e.confidence, e.ts, e.count, attrs, e.snapshot_uri, c, ci, pr, g,
                           e.lon, e.lat, rec.topic, rec.partition, rec.offset))
        last = self._camera_seen.get(e.camera_id)
        if last is None or mono - last > self.config.sensor_refresh_s:
            out.cameras[e.camera_id] = (e.camera_id, e.lon, e.lat, c, ci, pr, g or "", e.ts)

    def _failed(self, out: "_Prepared", rec, failure: RecordFailure, item=None) -> None:
        """One record (or one reading of a gateway batch) raised: dead-letter it, count it."""
        idx = getattr(item, "index", None)
        out.dead.append((rec, Problem(failure.reason, None, failure.detail, idx),
                         {"exception": {"type": failure.exc_type, "message": failure.message,
                                        "stage": failure.stage, "where": failure.where}}))
        self.stats.internal_errors += 1
        self.metrics.internal_errors.labels(failure.stage).inc()
        self.progress.failure(failure)

    def _heartbeat_params(self) -> dict:
        from tongguan.consumer import heartbeat_params

        self.stats.lag = self.progress.lag
        self.stats.rejoins = self.progress.rejoins
        return heartbeat_params(self.progress, self.started_at, self.stats.as_dict())

    def _write_with_retry(self, prepared: "_Prepared") -> None:
        """Write the batch (database thread). A connection problem (or any error that is about
        the database, not the rows) backs off and retries — never drop, never skip; the main
        thread pauses consumption meanwhile (see ``_finish``). An error about the rows' data
        bisects the batch: the rows the database refuses are dead-lettered
        (``rejected_by_database``), the rest is stored in the same pass."""
        if not (prepared.readings or prepared.events or prepared.sensors or prepared.cameras):
            return
        backoff = 0.2
        heartbeat = None
        if time.monotonic() - self._last_heartbeat > self.config.heartbeat_every_s:
            heartbeat = self._heartbeat_params()
        while True:
            try:
                try:
                    stored_r, stored_v = self.store.write(prepared.readings, prepared.events,
                                                          list(prepared.sensors.values()),
                                                          list(prepared.cameras.values()), heartbeat)
                except Exception as exc:  # noqa: BLE001 - sorted into data vs. database below
                    if not _about_the_data(exc):
                        raise
                    log.warning("the database refused the batch (%s); bisecting it to the offending rows",
                                _first_line(exc))
                    self.store.close()
                    stored_r, stored_v = self._write_bisect(prepared)
                break
            except (psycopg.Error, OSError) as exc:
                self.store.close()
                self.stats.db_retries += 1
                self.metrics.db_retries.inc()
                self.progress.error(f"database: {_first_line(exc)}")
                log.warning("database write failed (%s); retrying in %.1f s", _first_line(exc), backoff)
                if self._stop.wait(backoff):
                    raise IngestError("stopped while the database was unavailable; the batch will be "
                                      "re-read (offsets were not committed)") from exc
                backoff = min(backoff * 2, self.config.max_backoff_s)
        if heartbeat is not None:
            self._last_heartbeat = time.monotonic()
        mono = time.monotonic()
        for sid in prepared.sensors:
            self._sensor_seen[sid] = mono
        for cid in prepared.cameras:
            self._camera_seen[cid] = mono
        if mono - self._forgot_at > self.config.sensor_refresh_s:  # a scan a minute, not one a batch
            forget_stale(self._sensor_seen, mono, self.config.sensor_refresh_s)
            forget_stale(self._camera_seen, mono, self.config.sensor_refresh_s)
            self._forgot_at = mono
        s = self.stats
        n_rejected = len(prepared.rejected)
        s.readings_valid += len(prepared.readings)
        s.stored_readings += stored_r
        s.stored_events += stored_v
        dups = (prepared.duplicates + len(prepared.readings) - stored_r + len(prepared.events) - stored_v
                - n_rejected)
        s.duplicates += dups
        self.metrics.stored.labels("readings").inc(stored_r)
        self.metrics.stored.labels("video_events").inc(stored_v)
        self.metrics.duplicates.inc(dups)

    def _write_bisect(self, prepared: "_Prepared") -> tuple[int, int]:
        """Write the batch in halves, recursively, until every refused row stands alone.

        k bad rows among n cost about k·log2(n) extra transactions; the good rows are stored in
        this pass. A database error that is not about the data (the connection went away)
        propagates to the retry loop, which then writes the whole batch again: the stored rows
        are idempotent and the dead letters found here are only kept once the pass completes."""
        units = [("r", i) for i in range(len(prepared.readings))] + [("v", i) for i in range(len(prepared.events))]
        rejected: list[tuple[tuple, Exception]] = []
        total_r = total_v = 0
        stack = [units]
        while stack:
            chunk = stack.pop()
            rows_r = [prepared.readings[i] for k, i in chunk if k == "r"]
            rows_v = [prepared.events[i] for k, i in chunk if k == "v"]
            sensors = [prepared.sensors[sid] for sid in dict.fromkeys(row[2] for row in rows_r)
                       if sid in prepared.sensors]
            cameras = [prepared.cameras[cid] for cid in dict.fromkeys(row[1] for row in rows_v)
                       if cid in prepared.cameras]
            try:
                r, v = self.store.write(rows_r, rows_v, sensors, cameras)
                total_r += r
                total_v += v
            except Exception as exc:  # noqa: BLE001 - sorted as in _write_with_retry
                if not _about_the_data(exc):
                    raise
                self.store.close()
                if len(chunk) == 1:
                    rejected.append((chunk[0], exc))
                    continue
                mid = len(chunk) // 2
                stack += [chunk[mid:], chunk[:mid]]
        by_ref = {(r.topic, r.partition, r.offset): r for r in prepared.source}
        prepared.rejected = []
        for (kind, i), exc in rejected:
            row = prepared.readings[i] if kind == "r" else prepared.events[i]
            rec = by_ref.get(tuple(row[-3:])) or _Ref(*row[-3:])
            index = prepared.reading_index[i] if kind == "r" else None
            state = getattr(exc, "sqlstate", None)
            detail = f"the database refused the record: {_first_line(exc)}"
            prepared.rejected.append((rec, Problem("rejected_by_database", None, detail, index),
                                      {"database": {"sqlstate": state, "message": _first_line(exc),
                                                    "exception": type(exc).__name__}}))
        self.stats.rejected_by_database += len(rejected)
        self.metrics.rejected.inc(len(rejected))
        if rejected:
            self.progress.error(f"rejected_by_database: {_first_line(rejected[-1][1])}")
        return total_r, total_v

    def _send_deadletters(self, dead: list) -> None:
        if not dead:
            return
        sink = DeadLetterSink(self.producer, self.deadletter_topic, self.worker_id,
                              count=lambda reason: self.metrics.dead.labels(reason).inc())
        for rec, problem, extra in dead:
            item = None
            if problem.index is not None:
                try:
                    item = orjson.loads(rec.value)["readings"][problem.index]
                except Exception:  # noqa: BLE001 - the original is in the envelope anyway
                    item = None
            sink.add(rec, problem.reason, problem.detail, field_name=problem.field, index=problem.index,
                     item=item, extra=extra)
            self.stats.reasons[problem.reason] = self.stats.reasons.get(problem.reason, 0) + 1
        # The dead letters are part of the batch's outcome: durable before the offsets move.
        self.stats.dead_lettered += sink.flush(timeout=60)

    def _skipped(self, s) -> None:
        """A range no record could be read from (kafka-python cannot undo a batch's compression,
        or the batch is corrupt): dead-lettered with its offsets, counted. librdkafka reports such
        a batch as a message error instead (tongguan.rdkafka logs it and goes on)."""
        sink = DeadLetterSink(self.producer, self.deadletter_topic, self.worker_id,
                              count=lambda reason: self.metrics.dead.labels(reason).inc())
        sink.add_skipped(s)
        self.stats.reasons[UNDECODABLE_BATCH] = self.stats.reasons.get(UNDECODABLE_BATCH, 0) + 1
        self.stats.dead_lettered += sink.flush(timeout=60)
        self.progress.error(f"skipped {s.topic}[{s.partition}] {s.first}..{s.end - 1}: {s.error}")

    def _commit(self, records: list) -> None:
        from kafka.structs import OffsetAndMetadata, TopicPartition

        offsets: dict = {}
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            if rec.offset + 1 > offsets.get(tp, -1):
                offsets[tp] = rec.offset + 1
        try:
            self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
            self.progress.committed()
            self._rejoins_without_progress = 0
        except Exception as exc:  # noqa: BLE001 - e.g. a rebalance took the partitions away
            # The rows are committed and idempotent: whoever owns the partitions now re-reads
            # them and inserts nothing twice.
            self.progress.error(f"offset commit: {_first_line(exc)}")
            log.warning("offset commit failed (%s); the batch will be re-read and de-duplicated", exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _about_the_data(exc: BaseException) -> bool:
    """Whether a write error is about the rows (bisect them) rather than the database (retry).

    A psycopg error says so by its SQLSTATE class; an exception that is not a database error at
    all came from encoding a row for COPY on our side — also about that row."""
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate or ""
        return state[:2] in DATA_SQLSTATE_CLASSES
    if isinstance(exc, (OSError, IngestError)):
        return False
    return isinstance(exc, Exception)


@dataclass
class _Prepared:
    readings: list = field(default_factory=list)
    events: list = field(default_factory=list)
    sensors: dict = field(default_factory=dict)
    cameras: dict = field(default_factory=dict)
    dead: list = field(default_factory=list)   # (record, Problem, extra envelope fields | None)
    duplicates: int = 0
    source: list = field(default_factory=list)          # the polled records
    reading_index: list = field(default_factory=list)   # per reading row: its index in a gateway batch
    rejected: list = field(default_factory=list)        # dead letters found by bisecting, like ``dead``


@dataclass
class _Ref:
    """Where a record came from, for a dead letter of a row the database refused."""

    topic: str
    partition: int
    offset: int
    value: Any = None
    key: Any = None
    timestamp: Any = None
