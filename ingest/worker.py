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

import base64
import hashlib
import logging
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import orjson
import psycopg

from ingest.catalogue import Catalogue, load_catalogue
from ingest.errors import IngestError
from ingest.schemas import Parsed, Problem, parse_message
from ingest.store import Desensitiser, Store

log = logging.getLogger(__name__)

GROUP_ID = "tongguan-store"
DEADLETTER_MAX_ORIGINAL = 256 * 1024  # bytes of the original kept in a dead letter


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
    max_backoff_s: float = 30.0
    pause_after_s: float = 10.0  # a write slower than this pauses fetching (well inside max_poll_interval)
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

    def serve(self, port: int) -> None:
        from prometheus_client import start_http_server

        start_http_server(port, registry=self.registry)
        log.info("metrics on http://0.0.0.0:%d/metrics (Prometheus text format)", port)


def _load_region_index(database_url: str):
    from geo import RegionIndex

    from tongguan.db import engine_for

    return RegionIndex.from_db(engine_for(database_url))


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
        self._last_heartbeat = 0.0
        self._latencies: deque[float] = deque(maxlen=100)
        self.consumer = None
        self.producer = None
        self.first_record_at: float | None = None  # monotonic clock, for the benchmark
        # Running mean of readings per message (gateway batches carry many). Start high so the
        # first poll is small rather than one giant transaction; it adapts within a few polls.
        self._rows_per_message = 50.0
        self.last_commit_at: float | None = None

    # -- life cycle ------------------------------------------------------------------------
    @property
    def region_index(self):
        if self._region_index is None:
            t = time.perf_counter()
            self._region_index = _load_region_index(self.settings.database_url)
            log.info("region index loaded in %.1f s", time.perf_counter() - t)
        return self._region_index

    def stop(self) -> None:
        self._stop.set()

    def _connect_kafka(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        bs = self.settings.kafka_bootstrap
        self.consumer = KafkaConsumer(
            *self.topics, bootstrap_servers=bs, group_id=self.group_id, client_id=self.worker_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=self.config.batch_size,
            # Fast joins (Tansu is slow with defaults); a batch including DB retries is covered
            # because a paused consumer keeps polling.
            session_timeout_ms=6000, heartbeat_interval_ms=1000, max_poll_interval_ms=30000,
            fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024,
            # Tansu answers a fetch that includes an empty partition (the video topic, mostly) only
            # after fetch_max_wait_ms: a short wait keeps fetches flowing (measured: 23k → 69k
            # msg/s); when idle the wait goes back up (see _tune_fetch_wait) to spare the CPU.
            fetch_max_wait_ms=self.IDLE_FETCH_WAIT_MS,
        )
        self.producer = KafkaProducer(bootstrap_servers=bs, client_id=self.worker_id + ":dlq", acks="all",
                                      linger_ms=5, retries=10)

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
        last_log = time.monotonic()
        try:
            while not self._stop.is_set():
                polled = self.consumer.poll(timeout_ms=0 if pending else self.config.poll_timeout_ms,
                                            max_records=self._max_records())
                records = [r for recs in polled.values() for r in recs]
                if records or self.consumer.assignment():
                    t_start = time.monotonic()
                if time.monotonic() - last_log > self.config.log_every_s:
                    last_log = time.monotonic()
                    self._lag()
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
                    elif self._lag() == 0:
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
            self._log_stats()
            try:
                self.store.heartbeat(self.worker_id, self.role, self.started_at, self.stats.as_dict())
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
        self._send_deadletters(prepared.dead)
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

    def _lag(self) -> int:
        assigned = list(self.consumer.assignment())
        if not assigned:
            return 0
        ends = self.consumer.end_offsets(assigned)
        lag = 0
        for tp in assigned:
            lag += max(0, ends.get(tp, 0) - self.consumer.position(tp))
        self.stats.lag = lag
        self.metrics.lag.set(lag)
        return lag

    def _maybe_heartbeat(self) -> None:
        if time.monotonic() - self._last_heartbeat < self.config.heartbeat_every_s:
            return
        try:
            self.store.heartbeat(self.worker_id, self.role, self.started_at, self.stats.as_dict())
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
        """Validate, de-duplicate, assign regions and build the rows of one polled batch (pure CPU)."""
        now = time.time()
        cat = self.catalogue
        out = _Prepared()
        readings: list[tuple] = []   # (Reading, record)
        events: list[tuple] = []     # (VideoEvent, record)
        seen_r: set[str] = set()
        seen_v: set[str] = set()
        for rec in records:
            parsed: Parsed = parse_message(rec.value, now=now, catalogue=cat)
            for p in parsed.problems:
                out.dead.append((rec, p))
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
        rpm = (len(readings) + len(events) + len(out.dead)) / len(records)
        self._rows_per_message = 0.5 * self._rows_per_message + 0.5 * rpm

        items = readings + events
        if not items:
            return out
        lon = np.fromiter((it[0].lon for it in items), dtype=float, count=len(items))
        lat = np.fromiter((it[0].lat for it in items), dtype=float, count=len(items))
        a = self.region_index.assign(lon, lat)
        outside = np.asarray(a.outside, dtype=bool)
        swapped = np.zeros(len(items), dtype=bool)
        if outside.any():
            idx = np.flatnonzero(outside)
            b = self.region_index.assign(lat[idx], lon[idx])
            swapped[idx] = ~np.asarray(b.outside, dtype=bool)
        county, city, province, grid = a.county, a.city, a.province, a.grid_id
        n_r = len(readings)
        mono = time.monotonic()
        sensor_refresh = self.config.sensor_refresh_s
        for i, (item, rec) in enumerate(items):
            if outside[i]:
                reading = i < n_r
                idx = item.index if reading else None
                prefix = f"readings[{idx}]." if idx is not None else ""
                if swapped[i]:
                    p = Problem("swapped_coordinates", prefix + "lon",
                                f"lon={item.lon} lat={item.lat} look swapped: longitude comes first", idx)
                else:
                    p = Problem("outside_regions", prefix + "lon",
                                f"lon={item.lon} lat={item.lat} is outside every loaded region", idx)
                out.dead.append((rec, p))
                continue
            g = grid[i] or None
            c, ci, pr = county[i], city[i], province[i]
            if i < n_r:
                r = item
                out.readings.append((r.ts, r.event_id, r.sensor_id, r.metric, r.value, r.quality, c, ci, pr, g,
                                     r.lon, r.lat, r.gateway_id, rec.topic, rec.partition, rec.offset))
                last = self._sensor_seen.get(r.sensor_id)
                if last is None or mono - last > sensor_refresh:
                    out.sensors[r.sensor_id] = (r.sensor_id, r.metric, cat.metrics[r.metric].theme, r.gateway_id,
                                                r.lon, r.lat, c, ci, pr, g or "", r.ts, r.value)
            else:
                e = item
                attrs = orjson.dumps(self.desensitiser.clean(e.attributes)).decode() if e.attributes else None
                out.events.append((e.event_id, e.camera_id, e.type, cat.video_event_types[e.type].theme,
                                   e.confidence, e.ts, e.count, attrs, e.snapshot_uri, c, ci, pr, g,
                                   e.lon, e.lat, rec.topic, rec.partition, rec.offset))
                last = self._camera_seen.get(e.camera_id)
                if last is None or mono - last > sensor_refresh:
                    out.cameras[e.camera_id] = (e.camera_id, e.lon, e.lat, c, ci, pr, g or "", e.ts)
        return out

    def _write_with_retry(self, prepared: "_Prepared") -> None:
        """Write the batch (database thread); on a connection problem back off and retry — never
        drop, never skip. The main thread pauses consumption meanwhile (see ``_finish``)."""
        if not (prepared.readings or prepared.events or prepared.sensors or prepared.cameras):
            return
        backoff = 0.5
        heartbeat = None
        if time.monotonic() - self._last_heartbeat > self.config.heartbeat_every_s:
            heartbeat = (self.worker_id, self.role, self.started_at, self.stats.as_dict())
        while True:
            try:
                stored_r, stored_v = self.store.write(prepared.readings, prepared.events,
                                                      list(prepared.sensors.values()),
                                                      list(prepared.cameras.values()), heartbeat)
                break
            except (psycopg.OperationalError, psycopg.errors.DeadlockDetected,
                    psycopg.errors.SerializationFailure) as exc:
                self.store.close()
                self.stats.db_retries += 1
                self.metrics.db_retries.inc()
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.warning("database write failed (%s); retrying in %.1f s", first, backoff)
                if self._stop.wait(backoff):
                    raise IngestError("stopped while the database was unavailable; the batch will be "
                                      "re-read (offsets were not committed)") from exc
                backoff = min(backoff * 2, self.config.max_backoff_s)
            except (psycopg.DataError, psycopg.IntegrityError):
                # Data the database refuses although it passed validation: isolate it record by
                # record so one bad row never blocks the stream. (Other errors are bugs: they stop
                # the worker with the offsets uncommitted, so nothing is lost.)
                self.store.close()
                stored_r, stored_v = self._write_one_by_one(prepared)
                break
        if heartbeat is not None:
            self._last_heartbeat = time.monotonic()
        mono = time.monotonic()
        for sid in prepared.sensors:
            self._sensor_seen[sid] = mono
        for cid in prepared.cameras:
            self._camera_seen[cid] = mono
        s = self.stats
        s.readings_valid += len(prepared.readings)
        s.stored_readings += stored_r
        s.stored_events += stored_v
        dups = prepared.duplicates + len(prepared.readings) - stored_r + len(prepared.events) - stored_v
        s.duplicates += dups
        self.metrics.stored.labels("readings").inc(stored_r)
        self.metrics.stored.labels("video_events").inc(stored_v)
        self.metrics.duplicates.inc(dups)

    def _write_one_by_one(self, prepared: "_Prepared") -> tuple[int, int]:
        total_r = total_v = 0
        for kind, rows in (("reading", prepared.readings), ("video", prepared.events)):
            for row in rows:
                try:
                    r, v = self.store.write([row] if kind == "reading" else [],
                                            [row] if kind == "video" else [])
                    total_r += r
                    total_v += v
                except (psycopg.DataError, psycopg.IntegrityError) as exc:
                    self.store.close()
                    topic, partition, offset = row[-3:]
                    prepared.dead.append((_Ref(topic, partition, offset), Problem(
                        "db_rejected", None, f"the database refused the record: {str(exc).splitlines()[0]}")))
        self.store.write([], [], list(prepared.sensors.values()), list(prepared.cameras.values()))
        return total_r, total_v

    def _send_deadletters(self, dead: list) -> None:
        if not dead:
            return
        now = datetime.now(timezone.utc).isoformat()
        originals: dict[int, tuple[str, int, bool, str]] = {}
        for rec, problem in dead:
            value = getattr(rec, "value", None) or b""
            key = id(rec)
            if key not in originals:
                truncated = len(value) > DEADLETTER_MAX_ORIGINAL
                originals[key] = (base64.b64encode(value[:DEADLETTER_MAX_ORIGINAL]).decode(), len(value), truncated,
                                  hashlib.sha256(value).hexdigest())
            b64, size, truncated, sha = originals[key]
            item = None
            if problem.index is not None:
                try:
                    item = orjson.loads(value)["readings"][problem.index]
                except Exception:  # noqa: BLE001 - the original is in the envelope anyway
                    item = None
            envelope = {"schema": "deadletter/1", **problem.as_dict(), "item": item,
                        "source": {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset,
                                   "timestamp": getattr(rec, "timestamp", None)},
                        "original_b64": b64, "original_size": size, "original_truncated": truncated,
                        "original_sha256": sha, "worker": self.worker_id, "dead_lettered_at": now}
            headers = [("reason", problem.reason.encode()), ("source_topic", rec.topic.encode()),
                       ("source_partition", str(rec.partition).encode()),
                       ("source_offset", str(rec.offset).encode())]
            self.producer.send(self.deadletter_topic, key=getattr(rec, "key", None),
                               value=orjson.dumps(envelope), headers=headers)
            self.stats.reasons[problem.reason] = self.stats.reasons.get(problem.reason, 0) + 1
            self.metrics.dead.labels(problem.reason).inc()
        # The dead letters are part of the batch's outcome: durable before the offsets move.
        self.producer.flush(timeout=60)
        self.stats.dead_lettered += len(dead)

    def _commit(self, records: list) -> None:
        from kafka.structs import OffsetAndMetadata, TopicPartition

        offsets: dict = {}
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            if rec.offset + 1 > offsets.get(tp, -1):
                offsets[tp] = rec.offset + 1
        try:
            self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        except Exception as exc:  # noqa: BLE001 - e.g. a rebalance took the partitions away
            # The rows are committed and idempotent: whoever owns the partitions now re-reads
            # them and inserts nothing twice.
            log.warning("offset commit failed (%s); the batch will be re-read and de-duplicated", exc)


@dataclass
class _Prepared:
    readings: list = field(default_factory=list)
    events: list = field(default_factory=list)
    sensors: dict = field(default_factory=dict)
    cameras: dict = field(default_factory=dict)
    dead: list = field(default_factory=list)   # (record, Problem)
    duplicates: int = 0


@dataclass
class _Ref:
    """Where a record came from, for a dead letter of a row the database refused."""

    topic: str
    partition: int
    offset: int
    value: Any = None
    key: Any = None
    timestamp: Any = None
