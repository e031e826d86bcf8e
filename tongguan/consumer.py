"""Machinery every Kafka consumer of tongguan shares (store, detect, notify).

Three jobs, each small:

* **Per-record isolation** — :func:`isolated` runs one record's work; an unexpected exception
  becomes a :class:`RecordFailure` (reason ``internal_error``, exception type and message) that
  the caller dead-letters through :class:`DeadLetterSink`, so one record never stops a worker.
* **Dead letters** — :class:`DeadLetterSink` builds the ``deadletter/1`` envelope (the original
  bytes, topic, partition, offset, a machine-readable reason) and makes them durable before the
  caller commits its offsets.
* **Progress and health** — :class:`Progress` follows lag (from the fetch responses' high
  watermark), the last commit and the last error; it says when the worker is *stalled* (lag but
  no commit for ``stall_after_s``) or its group *wedged* (nothing assigned while messages wait and
  nobody commits), and :func:`record_heartbeat` writes all of it to ``worker_heartbeats`` so
  ``tongguan status`` and ``/status`` (other processes) can tell the truth. :func:`worker_health`
  turns such a row into green / red.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import orjson

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"
DEADLETTER_MAX_ORIGINAL = 256 * 1024  # bytes of the original kept in a dead letter
DEFAULT_STALL_AFTER_S = 60.0


class WorkerStalled(RuntimeError):
    """The worker made no progress although messages wait, and rejoining did not help.

    Raised so the process exits non-zero and its supervisor restarts it."""


EXIT_STALLED = 75  # EX_TEMPFAIL: try again (restart)


def run_worker(command: str, run: Callable[[], dict], stats: Callable[[], dict], *, out=None) -> int:
    """A worker's command: ``run()`` its loop and print the final stats as JSON (to ``out``,
    default stderr); when it stalls, the reason and the stats so far, and :data:`EXIT_STALLED`
    so the supervisor starts a fresh process (the remaining remedy once rejoining did not help)."""
    import json
    import sys

    out = out or sys.stderr
    try:
        final = run()
    except WorkerStalled as exc:
        print(f"tongguan {command}: {exc}", file=sys.stderr)
        print(json.dumps(stats()), file=out)
        return EXIT_STALLED
    print(json.dumps(final), file=out)
    return 0


# -- per-record isolation --------------------------------------------------------------------
@dataclass(frozen=True)
class RecordFailure:
    """An unexpected exception while handling one record: what its dead letter says."""

    stage: str            # decode, prepare, desensitise, encode, detect, notify …
    exc_type: str
    message: str
    where: str            # innermost frame "file:line in function", to find the bug

    reason = INTERNAL_ERROR

    @property
    def detail(self) -> str:
        return f"{self.stage}: {self.exc_type}: {self.message} (at {self.where})"

    @classmethod
    def of(cls, exc: BaseException, stage: str) -> "RecordFailure":
        tb = traceback.extract_tb(exc.__traceback__)
        where = f"{tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno} in {tb[-1].name}" if tb else "?"
        message = str(exc)
        if len(message) > 500:
            message = message[:500] + "…"
        return cls(stage, type(exc).__name__, message, where)


def isolated(fn: Callable[..., Any], *args, stage: str, on_failure: Callable[[RecordFailure], None]):
    """``fn(*args)``; an ``Exception`` it raises is logged, handed to ``on_failure`` and ``None``
    returned. ``KeyboardInterrupt``/``SystemExit`` still stop the worker (they are not about the
    record)."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - isolating one record is the point
        failure = RecordFailure.of(exc, stage)
        log.warning("record isolated (%s)", failure.detail)
        on_failure(failure)
        return None


# -- dead letters ----------------------------------------------------------------------------
def deadletter_envelope(rec, *, reason: str, detail: str, worker: str, field_name: str | None = None,
                        index: int | None = None, item: Any = None, extra: dict | None = None,
                        now: str | None = None) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The ``deadletter/1`` value and headers for record ``rec`` (anything with ``value``,
    ``topic``, ``partition``, ``offset`` and optionally ``timestamp``)."""
    value = getattr(rec, "value", None) or b""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogatepass")
    envelope = {"schema": "deadletter/1", "reason": reason, "field": field_name, "detail": detail,
                "index": index, "item": item,
                "source": {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset,
                           "timestamp": getattr(rec, "timestamp", None)},
                "original_b64": base64.b64encode(value[:DEADLETTER_MAX_ORIGINAL]).decode(),
                "original_size": len(value), "original_truncated": len(value) > DEADLETTER_MAX_ORIGINAL,
                "original_sha256": hashlib.sha256(value).hexdigest(), "worker": worker,
                "dead_lettered_at": now or datetime.now(timezone.utc).isoformat()}
    if extra:
        envelope.update(extra)
    headers = [("reason", reason.encode()), ("source_topic", str(rec.topic).encode()),
               ("source_partition", str(rec.partition).encode()), ("source_offset", str(rec.offset).encode())]
    # OPT_NON_STR_KEYS: an item decoded from hostile JSON is still only str keys, but a caller's
    # extra may not be; a dead letter must never fail to encode.
    return orjson.dumps(envelope, default=repr, option=orjson.OPT_NON_STR_KEYS), headers


class DeadLetterSink:
    """Collects a batch's dead letters; :meth:`flush` makes them durable (call it before committing
    the batch's offsets: the dead letters are part of the batch's outcome)."""

    def __init__(self, producer, topic: str, worker: str, *, count: Callable[[str], None] | None = None):
        self.producer = producer
        self.topic = topic
        self.worker = worker
        self._count = count
        self.pending = 0
        self.reasons: dict[str, int] = {}

    def add(self, rec, reason: str, detail: str, **kw) -> None:
        value, headers = deadletter_envelope(rec, reason=reason, detail=detail, worker=self.worker, **kw)
        self.producer.send(self.topic, key=getattr(rec, "key", None), value=value, headers=headers)
        self.pending += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if self._count is not None:
            self._count(reason)

    def add_failure(self, rec, failure: RecordFailure) -> None:
        self.add(rec, failure.reason, failure.detail,
                 extra={"exception": {"type": failure.exc_type, "message": failure.message,
                                      "stage": failure.stage, "where": failure.where}})

    def add_skipped(self, s: "SkippedRange") -> None:
        """A range of offsets no record could be read from (:func:`poll_past_undecodable`)."""
        self.add(s, UNDECODABLE_BATCH, f"offsets {s.first}..{s.end - 1} could not be read: {s.error}",
                 extra={"skipped": {"first_offset": s.first, "end_offset": s.end, "count": s.end - s.first}})

    def flush(self, timeout: float = 60) -> int:
        """Wait until every dead letter is acknowledged; returns how many were flushed."""
        if not self.pending:
            return 0
        self.producer.flush(timeout=timeout)
        n, self.pending = self.pending, 0
        return n


# -- batches that cannot be decoded --------------------------------------------------------
UNDECODABLE_BATCH = "undecodable_batch"


@dataclass(frozen=True)
class SkippedRange:
    """Offsets ``[first, end)`` of one partition that no record could be read from (a batch whose
    compression the client cannot undo, a corrupt batch): what :func:`poll_past_undecodable`
    moved past. Shaped like a record, so it dead-letters like one (no original bytes: the client
    never had them)."""

    topic: str
    partition: int
    first: int
    end: int
    error: str
    value: bytes = b""
    key: bytes | None = None
    timestamp: int | None = None

    @property
    def offset(self) -> int:
        return self.first


def poll_past_undecodable(consumer, on_skipped: Callable[[SkippedRange], None], *,
                          probe_timeout_s: float = 2.0, **poll_kw) -> dict:
    """``consumer.poll(**poll_kw)``, except that a partition whose next batch cannot be decoded no
    longer stops the consumer. kafka-python raises from ``poll`` when it cannot unpack a batch,
    and again on every later poll at the same position, so a worker that lets it through dies
    on it forever (one crafted or corrupt batch would stop detection for the province). Here
    the partition at fault is found by reading each assigned partition alone from its position;
    the undecodable range is then bracketed (the first later offset that reads again; a huge
    batch is passed in several steps of a second each) and the consumer moves past it; ``on_skipped`` gets
    each range (callers dead-letter it, reason ``undecodable_batch``) and the poll returns
    nothing. When no partition fails alone, the error was not about the data: it is re-raised,
    so a lost broker or a closed consumer keeps its handling."""
    try:
        return consumer.poll(**poll_kw)
    except Exception as exc:  # noqa: BLE001 - classified below, re-raised unless the data is at fault
        _drop_broken_fetch(consumer)
        skipped = skip_undecodable(consumer, probe_timeout_s=probe_timeout_s)
        if skipped is None:
            raise
        for s in skipped:
            log.error("skipped %s[%d] offsets %d..%d: no record can be read there (%s)",
                      s.topic, s.partition, s.first, s.end - 1, s.error)
            on_skipped(s)
        log.info("the poll's error was the data's (%s: %s)", type(exc).__name__, str(exc)[:200])
        return {}


def skip_undecodable(consumer, *, probe_timeout_s: float = 2.0) -> list[SkippedRange] | None:
    """The undecodable ranges at the assigned partitions' positions, moved past (see
    :func:`poll_past_undecodable`); ``None`` when no partition fails on its own.

    The probing is done by a consumer of its own (no group, one partition at a time), so the
    worker's consumer keeps its fetch state, its buffered records and its membership untouched:
    only the partitions at fault are moved."""
    if not hasattr(consumer, "seek") or not isinstance(getattr(consumer, "config", None), dict):
        return None
    from kafka import KafkaConsumer

    active = sorted(set(consumer.assignment()) - set(consumer.paused()))
    if not active:
        return None
    positions = {tp: consumer.position(tp) for tp in active}
    config = {k: v for k, v in consumer.config.items() if k in _PROBE_CONFIG}
    try:
        probe = KafkaConsumer(**config, group_id=None, enable_auto_commit=False, auto_offset_reset="none",
                              fetch_max_wait_ms=50, client_id=f"{consumer.config.get('client_id')}-probe")
    except Exception as exc:  # noqa: BLE001 - no broker to probe: the poll's own error is the one to raise
        log.warning("cannot probe for an undecodable batch (%s: %s)", type(exc).__name__, exc)
        return None
    out: list[SkippedRange] = []
    try:
        for tp in active:
            probe.assign([tp])
            first = positions[tp]
            error = _fails_at(probe, tp, first, probe_timeout_s)
            if error:
                end = _next_readable(probe, tp, first, probe_timeout_s)
                out.append(SkippedRange(tp.topic, tp.partition, first, end, error))
                consumer.seek(tp, end)
    finally:
        probe.close()
    return out or None


# What the probe consumer copies from the worker's: how to reach and read the broker.
_PROBE_CONFIG = frozenset({
    "bootstrap_servers", "security_protocol", "ssl_context", "ssl_check_hostname", "ssl_cafile", "ssl_certfile",
    "ssl_keyfile", "ssl_password", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
    "sasl_oauth_token_provider", "api_version", "check_crcs", "isolation_level", "max_partition_fetch_bytes",
    "fetch_max_bytes", "request_timeout_ms"})


def _drop_broken_fetch(consumer) -> None:
    """After kafka-python raised while unpacking a partition's records, the half-read records
    stay in line: the next poll at the same position takes nothing from them, forever, inside
    ``poll`` (kafka-python 3.0: ``Fetcher.fetched_records`` loops on an exhausted
    ``PartitionRecords``). Drain them, so the next poll fetches again. Private state, hence the
    ``getattr``s: another client or version simply has nothing to drain."""
    fetcher = getattr(consumer, "_fetcher", None)
    part = getattr(fetcher, "_next_partition_records", None)
    if part is not None:
        part.drain()
        fetcher._next_partition_records = None


def _fails_at(consumer, tp, offset: int, timeout_s: float) -> str:
    """Poll ``tp`` (the probe's only partition) from ``offset``: the error it raises, or "" when
    a record comes back or nothing is there (past the end the broker answers out-of-range)."""
    from kafka.errors import OffsetOutOfRangeError

    consumer.seek(tp, offset)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            got = consumer.poll(timeout_ms=100, max_records=1)
        except OffsetOutOfRangeError:
            return ""
        except Exception as exc:  # noqa: BLE001 - the answer we are looking for
            _drop_broken_fetch(consumer)
            return f"{type(exc).__name__}: {exc}"[:500]
        if got.get(tp):
            return ""
        high = consumer.highwater(tp)
        if high is not None and offset >= high:
            return ""
    return ""


def _next_readable(consumer, tp, first: int, timeout_s: float, budget_s: float = 1.0) -> int:
    """The first offset after ``first`` that reads (or the end of the log), probing one offset
    after the other for at most ``budget_s``; past the budget, the offset the probing reached
    (everything before it is confirmed unreadable, and the next poll goes on from there). One
    offset at a time on purpose: unreadable and readable batches may alternate, so no jump can be
    trusted not to skip a readable record, and a bounded step keeps the worker polling."""
    t_end = time.monotonic() + budget_s
    probe = first + 1
    while time.monotonic() < t_end:
        high = consumer.highwater(tp)
        if high is not None and probe >= high:
            return max(high, first + 1)
        if not _fails_at(consumer, tp, probe, timeout_s):
            return probe
        probe += 1
    return probe


def partition_lag(consumer, partitions) -> int:
    """Messages behind the log end over ``partitions`` (assigned ones).

    Why the high watermark: Tansu answers ListOffsets (``end_offsets``) with the base offset of a
    partition's last record *batch* + 1, not its last offset + 1, so a batch of N records hides
    N - 1 of them and a batching producer (librdkafka always batches) makes the lag look like 0
    while messages wait (DESIGN.md). The high watermark in fetch responses is right. Before the
    first fetch of a partition there is none; ``end_offsets`` is then the best we have.
    """
    missing = []
    lag = 0
    for tp in partitions:
        position = consumer.position(tp, timeout_ms=1000)
        if position is None:
            # Not known yet (the committed offset is still being fetched): count from the
            # group's committed offset, never as "caught up".
            position = consumer.committed(tp) or 0
        hw = consumer.highwater(tp)
        if hw is None:
            missing.append((tp, position))
            continue
        lag += max(0, hw - position)
    if missing:
        ends = consumer.end_offsets([tp for tp, _ in missing])
        lag += sum(max(0, ends.get(tp, 0) - pos) for tp, pos in missing)
    return lag


def rewind_reset_logs(consumer) -> list:
    """Seek to the beginning of every assigned partition whose position is past its high watermark.

    A healthy log never has a consumer ahead of its end: that happens when the broker lost the log
    (the embedded memory broker restarted) while this consumer kept its old position. Its fetches
    then return nothing forever and the lag looks like 0; start again from the new log's beginning
    (the store writes are idempotent, so nothing is doubled). Returns (partition, old position) of
    each partition rewound."""
    rewound = []
    for tp in list(consumer.assignment()):
        hw = consumer.highwater(tp)
        position = consumer.position(tp, timeout_ms=1000)
        if hw is not None and position is not None and position > hw:
            log.warning("%s[%d]: position %d is past the log end %d (the broker lost its log); "
                        "reading the new log from its beginning", tp.topic, tp.partition, position, hw)
            consumer.seek_to_beginning(tp)
            rewound.append((tp, position))
    return rewound


@dataclass
class Progress:
    """What a worker knows about its own progress; ``observe`` it every few seconds.

    ``stall_after_s``: lag but no commit for this long marks the worker stalled. ``wedge_after_s``
    (a session timeout or so): nothing assigned while messages wait and no member of the group
    commits for this long marks the group wedged.
    """

    role: str
    worker: str
    stall_after_s: float = DEFAULT_STALL_AFTER_S
    wedge_after_s: float = 15.0
    lag: int = 0
    assigned: int = 0
    last_commit_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    state: str = "starting"          # starting | ok | idle | stalled | wedged | waiting_for_database
    rejoins: int = 0
    internal_errors: int = 0
    _last_commit_mono: float = field(default_factory=time.monotonic)
    _unassigned_since: float | None = None
    _group_offsets: int | None = None
    _group_offsets_since: float = field(default_factory=time.monotonic)
    _last_group_check: float = 0.0
    _seen: dict = field(default_factory=dict)   # partition -> (high watermark, position) last observed
    log_lost: dict | None = None                # the broker lost its log: when, and a lower bound of the loss

    def committed(self) -> None:
        self.last_commit_at = datetime.now(timezone.utc)
        self._last_commit_mono = time.monotonic()

    def error(self, message: str) -> None:
        self.last_error = message[:1000]
        self.last_error_at = datetime.now(timezone.utc)

    def failure(self, failure: RecordFailure) -> None:
        self.internal_errors += 1
        self.error(f"{INTERNAL_ERROR}: {failure.detail}")

    def since_commit_s(self) -> float:
        return time.monotonic() - self._last_commit_mono

    def observe(self, consumer, topics=()) -> str:
        """Update lag and state from ``consumer``; returns the state."""
        rewound = dict(rewind_reset_logs(consumer))
        assigned = list(consumer.assignment())
        self.assigned = len(assigned)
        now = time.monotonic()
        if assigned:
            self._unassigned_since = None
            self._notice_lost_log(consumer, assigned, rewound)
            self.lag = partition_lag(consumer, assigned)
            if self.lag == 0:
                self._last_commit_mono = now  # caught up counts as progress
                self.state = "idle"
            elif now - self._last_commit_mono > self.stall_after_s:
                self.state = "stalled"
            else:
                self.state = "ok"
            return self.state
        if self._unassigned_since is None:
            self._unassigned_since = now
        if now - self._unassigned_since < self.wedge_after_s:
            self.state = "starting" if self.state in ("starting", "wedged") else "idle"
            return self.state
        if now - self._last_group_check >= min(5.0, self.wedge_after_s / 2):
            self._last_group_check = now
            self._check_group(consumer, topics, now)
        return self.state

    def _notice_lost_log(self, consumer, assigned, rewound: dict) -> None:
        """A partition whose log end went backwards (or that had to be rewound) lost its log: the
        broker restarted without its data (the embedded memory broker does). What this worker had
        seen but not consumed then is gone; record it so `status` and /status announce it."""
        lost_parts = []
        lost = 0
        for tp in assigned:
            hw = consumer.highwater(tp)
            before = self._seen.get(tp)
            if before is not None and (tp in rewound or (hw is not None and hw < before[0])):
                lost_parts.append(tp)
                lost += max(0, before[0] - before[1])
            position = consumer.position(tp, timeout_ms=1000)
            if hw is not None and position is not None:
                self._seen[tp] = (hw, position)
        if lost_parts:
            self.log_lost = {"at": datetime.now(timezone.utc).isoformat(), "partitions": len(lost_parts),
                             "unconsumed_lower_bound": lost}
            self.error(f"the broker lost its log on {len(lost_parts)} partition(s); at least {lost} message(s) "
                       "not yet consumed were lost with it (embedded memory broker restarted?)")
            log.error("the broker lost its log on %d partition(s): at least %d unconsumed message(s) lost",
                      len(lost_parts), lost)

    def _check_group(self, consumer, topics, now: float) -> None:
        """Unassigned for a while: is the group stuck (messages wait, nobody commits) or is this
        just a spare member while the others progress?"""
        from kafka.structs import TopicPartition

        tps = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
        if not tps:
            return
        try:
            ends = consumer.end_offsets(tps)
            committed = {tp: consumer.committed(tp) or 0 for tp in tps}
        except Exception as exc:  # noqa: BLE001 - a broker hiccup: judge again next time
            log.debug("group check failed: %s", exc)
            return
        # end_offsets under-reports a batch (see partition_lag) but is > committed whenever a
        # whole batch waits, which is all the wedge test needs.
        self.lag = sum(max(0, ends.get(tp, 0) - committed[tp]) for tp in tps)
        total = sum(committed.values())
        if total != self._group_offsets:
            self._group_offsets, self._group_offsets_since = total, now
        if self.lag > 0 and now - self._group_offsets_since >= self.wedge_after_s:
            self.state = "wedged"
        else:
            self.state = "idle"

    def rejoined(self) -> None:
        self.rejoins += 1
        self._unassigned_since = None
        self._last_commit_mono = time.monotonic()
        self._group_offsets_since = time.monotonic()
        self.state = "starting"

    def as_dict(self) -> dict:
        return {"lag": self.lag, "assigned": self.assigned, "state": self.state, "rejoins": self.rejoins,
                "internal_errors": self.internal_errors, "stall_after_s": self.stall_after_s,
                "last_commit_at": self.last_commit_at.isoformat() if self.last_commit_at else None,
                "last_error": self.last_error, "log_lost": self.log_lost,
                "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None}


HEARTBEAT_SQL = """
INSERT INTO worker_heartbeats (worker, role, started_at, last_seen, stats, lag, last_commit_at, last_error,
                               last_error_at, state, stall_after_s)
VALUES (%(worker)s, %(role)s, %(started_at)s, now(), %(stats)s, %(lag)s, %(last_commit_at)s, %(last_error)s,
        %(last_error_at)s, %(state)s, %(stall_after_s)s)
ON CONFLICT (worker) DO UPDATE SET last_seen = now(), stats = excluded.stats, lag = excluded.lag,
    last_commit_at = excluded.last_commit_at, last_error = excluded.last_error,
    last_error_at = excluded.last_error_at, state = excluded.state, stall_after_s = excluded.stall_after_s
"""


def heartbeat_params(progress: Progress, started_at: datetime, stats: dict) -> dict:
    from psycopg.types.json import Jsonb

    return {"worker": progress.worker, "role": progress.role, "started_at": started_at,
            "stats": Jsonb({**stats, "progress": progress.as_dict()}), "lag": progress.lag,
            "last_commit_at": progress.last_commit_at, "last_error": progress.last_error,
            "last_error_at": progress.last_error_at, "state": progress.state,
            "stall_after_s": progress.stall_after_s}


def record_heartbeat(conn, progress: Progress, started_at: datetime, stats: dict) -> None:
    """Upsert this worker's row of ``worker_heartbeats`` on a psycopg connection or cursor, or a
    SQLAlchemy connection (the caller commits)."""
    params = heartbeat_params(progress, started_at, stats)
    if hasattr(conn, "exec_driver_sql"):  # SQLAlchemy: its psycopg connection, same transaction
        cur = conn.connection.cursor()
        try:
            cur.execute(HEARTBEAT_SQL, params)
        finally:
            cur.close()
    else:
        conn.execute(HEARTBEAT_SQL, params)


# -- health, for `tongguan status` and /status -----------------------------------------------
HEARTBEAT_STALE_S = 60.0


def worker_health(row: dict, *, now: datetime | None = None, stall_after_s: float | None = None) -> dict:
    """Green or red for one ``worker_heartbeats`` row, with why.

    Red when the worker says it is stalled or wedged, when it has lag but has not committed for
    ``stall_after_s`` (its own setting unless given), or when its heartbeat is stale (the process
    is gone or hangs). A worker is healthy when it makes progress, not when its process answers.
    """
    now = now or datetime.now(timezone.utc)
    stall = stall_after_s if stall_after_s is not None else (row.get("stall_after_s") or DEFAULT_STALL_AFTER_S)
    last_seen = row.get("last_seen")
    last_commit = row.get("last_commit_at")
    lag = row.get("lag") or 0
    beat_age = (now - last_seen).total_seconds() if last_seen else None
    commit_age = (now - last_commit).total_seconds() if last_commit else None
    started = row.get("started_at")
    since = commit_age if commit_age is not None else ((now - started).total_seconds() if started else None)
    reasons = []
    if beat_age is None or beat_age > max(HEARTBEAT_STALE_S, stall):
        reasons.append(f"no heartbeat for {beat_age:.0f} s" if beat_age is not None else "no heartbeat")
    if row.get("state") in ("stalled", "wedged"):
        reasons.append(f"worker reports {row['state']}")
    if lag > 0 and since is not None and since > stall:
        reasons.append(f"lag {lag} but no commit for {since:.0f} s")
    return {"worker": row.get("worker"), "role": row.get("role"), "health": "red" if reasons else "green",
            "reasons": reasons, "lag": lag, "last_commit_age_s": None if commit_age is None else round(commit_age, 1),
            "heartbeat_age_s": None if beat_age is None else round(beat_age, 1), "state": row.get("state"),
            "last_error": row.get("last_error"),
            "last_error_at": row["last_error_at"].isoformat() if row.get("last_error_at") else None}


WORKERS_SQL = """SELECT worker, role, started_at, last_seen, stats, lag, last_commit_at, last_error, last_error_at,
       state, stall_after_s FROM worker_heartbeats WHERE last_seen > now() - interval '10 minutes'
       ORDER BY role, worker"""


def read_worker_health(conn, *, stall_after_s: float | None = None) -> list[dict]:
    """Health of every worker seen in the last ten minutes (a SQLAlchemy connection), with the
    figures the worker recorded: lag, age of its last commit, last error, and whether the broker
    lost its log under it (``log_lost``)."""
    import sqlalchemy as sa

    out = []
    now = conn.execute(sa.text("SELECT now()")).scalar()
    for r in conn.execute(sa.text(WORKERS_SQL)):
        row = dict(r._mapping)
        health = worker_health(row, now=now, stall_after_s=stall_after_s)
        progress = (row.get("stats") or {}).get("progress") or {}
        health["log_lost"] = progress.get("log_lost")
        out.append(health)
    return out
