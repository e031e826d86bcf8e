"""The live detector (``tongguan detect``, consumer group ``tongguan-detect``).

Consumes readings and video events, runs them through :class:`DetectorCore`, writes alert
changes to PostGIS (``alerts`` + append-only ``alert_history``) together with their messages
(``alert_outbox``) and the next input offset per partition (``detect_offsets``) in ONE
transaction, then publishes the outbox on ``city.alerts``, and only then commits its Kafka
offsets. Per-sensor state lives in memory for the partitions it holds (bounded: silent sensors
without active alerts are evicted).

Restart-safe: after any kill or rebalance a detector publishes what the outbox still holds, skips
the records below the stored offsets (the table already reflects them), and rebuilds each sensor
on first sight from its stored history, made to agree with the ``alerts`` table (see
:meth:`DetectWorker._warm`): nothing already raised or finished is raised again, and a write never
breaks the table's one-active-alert-per-condition index (:func:`persist`). One record that raises
is dead-lettered (``internal_error``), never the detector.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import sqlalchemy as sa

from analytics.alerts import Alert, AlertBook, Change, iso
from analytics.engine import DetectorCore
from analytics.errors import AnalyticsError
from analytics.statuses import ACTIVE_SQL, FINISHED_STATUSES

log = logging.getLogger("tongguan.detect")
GROUP_ID = "tongguan-detect"


@dataclass
class DetectConfig:
    batch_size: int = 5000
    poll_timeout_ms: int = 50
    warm_hours: float = 12.0  # history replayed per sensor after a (re)start
    warm_max_rows: int = 2000  # per sensor
    refresh_s: float = 30.0  # re-read active alerts' status (people acknowledge and close them)
    heartbeat_s: float = 10.0  # lag, state and counters to worker_heartbeats
    tick_s: float = 5.0
    group_id: str | None = None
    until_idle: bool = False
    idle_polls: int = 20
    load_models: bool = True
    evict_after_s: float = 24 * 3600.0  # stream time a silent sensor without active alerts is kept
    max_sensors: int = 200_000  # per process; the least recently seen go first beyond it


_METRICS: frozenset | None = None


def fast_readings(raw: bytes) -> list[dict] | None:
    """The readings of a well-formed ``reading/1`` or ``readings/1`` message, or None when the
    message needs the full validation (anything unusual goes through ``ingest.parse_message``).

    The detector reads the same topic as the store worker; this shortcut keeps the common case
    cheap (no object per reading) while never accepting what the contract would reject: a known
    metric, a finite number, a timestamp with an offset, coordinates as numbers.
    """
    global _METRICS
    if _METRICS is None:
        from ingest import load_catalogue

        _METRICS = frozenset(load_catalogue().metrics)
    try:
        d = orjson.loads(raw)
        schema = d.get("schema")
        items = [d] if schema == "reading/1" else d["readings"] if schema == "readings/1" else None
        if not items:
            return None
        out = []
        for r in items:
            v, ts, sid, lon, lat = r["value"], r["ts"], r["sensor_id"], r["lon"], r["lat"]
            if (r["metric"] not in _METRICS or type(v) not in (int, float) or not math.isfinite(v)
                    or type(sid) is not str or not 0 < len(sid) <= 128 or "\x00" in sid
                    or type(lon) not in (int, float) or type(lat) not in (int, float)
                    or not (math.isfinite(lon) and math.isfinite(lat))
                    or not isinstance(ts, str) or len(ts) < 20 or ts[-6] not in "+-" and ts[-1] != "Z"):
                return None
            out.append({"sensor_id": r["sensor_id"], "metric": r["metric"], "value": float(v),
                        "ts": datetime.fromisoformat(ts).timestamp(), "lon": float(r["lon"]), "lat": float(r["lat"])})
        return out
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def _region_locator(engine):
    """locate(device_id, lon, lat) with geo.RegionIndex; cached per device."""
    try:
        from geo import RegionIndex

        index = RegionIndex.from_db(engine)
    except Exception as exc:  # noqa: BLE001 - no regions loaded yet: alerts still flow, unplaced
        log.warning("no region index (%s); alerts carry no region until `tongguan geo load`", exc)
        index = None
    cache: dict[str, dict] = {}

    def locate(device_id: str, lon: float, lat: float) -> dict:
        found = cache.get(device_id)
        if found is None:
            if index is not None:
                a = index.assign([lon], [lat])
                found = {"county": str(a.county[0]), "city": str(a.city[0]), "province": str(a.province[0]),
                         "grid_id": str(a.grid_id[0]) or None}
            else:
                found = {"county": "", "city": "", "province": "", "grid_id": None}
            cache[device_id] = found
        return found

    return locate


UPSERT = sa.text("""
INSERT INTO alerts (id, dedupe_key, source, level, theme, title, detail, subject, confidence, adcode, city,
                    province, grid_id, geom, first_seen, last_seen, count, status, updated_at)
VALUES (:id, :dedupe_key, :source, :level, :theme, :title, CAST(:detail AS jsonb), :subject, :confidence,
        :adcode, :city, :province, :grid_id,
        CASE WHEN CAST(:lon AS float8) IS NULL THEN NULL
             ELSE ST_SetSRID(ST_MakePoint(CAST(:lon AS float8), CAST(:lat AS float8)), 4326) END,
        to_timestamp(:first_seen), to_timestamp(:last_seen), :count, :status, now())
ON CONFLICT (id) DO UPDATE SET
    source = EXCLUDED.source, level = EXCLUDED.level, detail = EXCLUDED.detail,
    confidence = EXCLUDED.confidence, last_seen = EXCLUDED.last_seen, count = EXCLUDED.count,
    title = EXCLUDED.title, updated_at = now(),
    -- people's decisions stand: the detector only resolves, and never reopens a closed alert
    status = CASE WHEN EXCLUDED.status = 'resolved' AND alerts.status <> 'closed' THEN 'resolved'
                  ELSE alerts.status END
""")
HISTORY = sa.text("""
INSERT INTO alert_history (alert_id, ts, action, actor, level, status, note)
VALUES (:alert_id, to_timestamp(:ts), :action, :actor, :level, :status, :note)
""")


OUTBOX = sa.text("""
INSERT INTO alert_outbox (alert_id, dedupe_key, message)
SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:keys AS text[]), CAST(:messages AS bytea[]))
RETURNING seq
""")
OFFSETS = sa.text("""
INSERT INTO detect_offsets (group_id, topic, partition, next_offset, updated_at)
SELECT :group_id, t, p, o, now() FROM unnest(CAST(:topics AS text[]), CAST(:partitions AS int[]),
                                              CAST(:offsets AS bigint[])) AS x(t, p, o)
ON CONFLICT (group_id, topic, partition) DO UPDATE
    SET next_offset = greatest(detect_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()
""")


def _adopt_active(conn, alerts: dict[str, Alert], changes: list[Change]) -> int:
    """Alerts about to be written as active whose dedupe key the table already holds active
    under another id (someone reopened an alert; a state rebuilt from incomplete history) take
    that id: one active alert per condition is the table's rule, and the write must not break it.
    Returns how many were adopted."""
    fresh = [a for a in alerts.values() if a.active]
    if not fresh:
        return 0
    rows = conn.execute(sa.text(
        "SELECT dedupe_key, id, extract(epoch FROM first_seen), count, status FROM alerts "
        f"WHERE dedupe_key = ANY(:keys) AND status IN {ACTIVE_SQL} AND NOT (id = ANY(:ids)) FOR UPDATE"),
        {"keys": [a.dedupe_key for a in fresh], "ids": list(alerts)}).all()
    if not rows:
        return 0
    held = {r[0]: r for r in rows}
    renamed: dict[str, str] = {}
    for a in fresh:
        r = held.get(a.dedupe_key)
        if r is None:
            continue
        renamed[a.id] = r[1]
        a.id, a.first_seen, a.count, a.status = r[1], min(a.first_seen, float(r[2])), a.count + int(r[3]), r[4]
    for ch in changes:
        if ch.snapshot.get("id") in renamed:
            ch.snapshot["id"] = renamed[ch.snapshot["id"]]
            ch.snapshot["first_seen"] = iso(ch.alert.first_seen)
            ch.snapshot["status"] = ch.alert.status
    for old, new in renamed.items():
        alerts[new] = alerts.pop(old)
    log.warning("%d alert(s) continue an alert already active in the table under the same dedupe key",
                len(renamed))
    return len(renamed)


def persist(conn, changes: list[Change], actor: str) -> list[int]:
    """Write alert changes (one row per alert, its latest state; one history row per change; one
    outbox message per change); returns the outbox sequence numbers, in order.

    Idempotent and safe against the table's own constraints: an alert whose condition is already
    active under another id continues that one (:func:`_adopt_active`), and finished alerts are
    written before active ones, so an alert resolved and its successor opened in the same flush
    never hold the dedupe key at the same time."""
    latest: dict[str, Alert] = {}
    for ch in changes:
        latest[ch.alert.id] = ch.alert
    _adopt_active(conn, latest, changes)
    rows = [dict(id=a.id, dedupe_key=a.dedupe_key, source=a.source, level=a.level, theme=a.theme, title=a.title,
                 detail=orjson.dumps(a.detail, default=str, option=orjson.OPT_NON_STR_KEYS).decode(), subject=a.subject,
                 confidence=a.confidence, adcode=(a.adcode or "")[:6], city=(a.city or "")[:6],
                 province=(a.province or "")[:6], grid_id=a.grid_id, lon=a.lon, lat=a.lat,
                 first_seen=a.first_seen, last_seen=a.last_seen, count=a.count, status=a.status)
            for a in sorted(latest.values(), key=lambda a: a.active)]
    conn.execute(UPSERT, rows)
    conn.execute(HISTORY, [dict(alert_id=ch.alert.id, ts=ch.snapshot["action"] and ch.alert.last_seen,
                                action=ch.action, actor=actor, level=ch.snapshot["level"],
                                status=ch.snapshot["status"], note=ch.note) for ch in changes])
    messages = [orjson.dumps(ch.snapshot, default=str, option=orjson.OPT_NON_STR_KEYS) for ch in changes]
    return [r[0] for r in conn.execute(OUTBOX, {"ids": [ch.alert.id for ch in changes],
                                                "keys": [ch.alert.dedupe_key for ch in changes],
                                                "messages": messages})]


def save_offsets(conn, group_id: str, offsets: dict[tuple[str, int], int]) -> None:
    """The next offset per input partition, in the transaction of the alert changes they caused."""
    if offsets:
        items = sorted(offsets.items())
        conn.execute(OFFSETS, {"group_id": group_id, "topics": [t for (t, _), _ in items],
                               "partitions": [p for (_, p), _ in items], "offsets": [o for _, o in items]})


def load_offsets(engine, group_id: str) -> dict[tuple[str, int], int]:
    try:
        with engine.connect() as conn:
            return {(t, p): int(o) for t, p, o in conn.execute(sa.text(
                "SELECT topic, partition, next_offset FROM detect_offsets WHERE group_id = :g"), {"g": group_id})}
    except sa.exc.ProgrammingError:  # migrations not applied: nothing persisted yet
        return {}


def load_active(engine) -> AlertBook:
    """The active alerts in the database, as a book (so a restart continues them)."""
    book = AlertBook()
    q = sa.text(f"""SELECT id, dedupe_key, source, level, theme, title, detail, subject, confidence, adcode, city,
                          province, grid_id, ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)),
                          extract(epoch FROM first_seen), extract(epoch FROM last_seen), count, status
                   FROM alerts WHERE status IN {ACTIVE_SQL}""")
    with engine.connect() as conn:
        for r in conn.execute(q):
            a = Alert(id=r[0], dedupe_key=r[1], source=r[2], level=r[3], theme=r[4], title=r[5], detail=dict(r[6]),
                      subject=r[7], confidence=float(r[8]), adcode=(r[9] or "").strip(), city=(r[10] or "").strip(),
                      province=(r[11] or "").strip(), grid_id=r[12], lon=r[13], lat=r[14],
                      first_seen=float(r[15]), last_seen=float(r[16]), count=int(r[17]), status=r[18],
                      published_at=float(r[16]))
            book.active[a.dedupe_key] = a
    return book


def _impose(core: DetectorCore, alert: Alert) -> None:
    """Make a sensor's state agree with an alert the table holds active for it: the rule that
    raised it is at the alert's level (so it is touched, escalated and cleared as a live alert
    is, even when the stored history no longer shows the condition), an anomaly alert times out
    from its last sighting."""
    ctx = core.sensors.get(alert.subject.removeprefix("sensor:"))
    if ctx is None:
        return
    key = alert.dedupe_key
    if key.startswith("rule:") and "|sensor:" in key:
        rid = key[len("rule:"):key.index("|sensor:")]
        rs = ctx.rules.rules.get(rid) if ctx.rules is not None else None
        if rs is not None:
            ctx.rule_alerts.add(rid)
            if rs.level is None:
                rs.level, rs.started, rs.down_since = alert.level, alert.first_seen, None
    elif key.startswith("anomaly|"):
        ctx.last_flag_t = max(ctx.last_flag_t or 0.0, alert.last_seen)


def load_models(engine, home):
    from analytics.registry import latest_models

    anomaly = latest_models(engine, home, "anomaly")
    forecast = latest_models(engine, home, "forecast")
    surge = latest_models(engine, home, "surge").get(("video", ""))
    log.info("models: %d anomaly, %d forecast, surge baseline %s", len(anomaly), len(forecast),
             f"v{surge[1]}" if surge else "prior")
    return anomaly, forecast, (surge[0] if surge else None)


class DetectWorker:
    """One live detector process; ``run()`` until stopped (or idle with ``until_idle``)."""

    def __init__(self, settings, config: DetectConfig | None = None, *, engine=None, locate=None):
        if not settings.database_url or not settings.kafka_bootstrap:
            raise AnalyticsError("the detector needs TONGGUAN_DATABASE_URL and TONGGUAN_KAFKA_BOOTSTRAP "
                                 "(or run it through `tongguan detect`, which starts managed services)")
        from tongguan.db import engine_for

        self.settings = settings
        self.config = config or DetectConfig()
        self.engine = engine or engine_for(settings.database_url)
        self.worker_id = f"detect:{socket.gethostname()}:{os.getpid()}"
        self.group_id = self.config.group_id or settings.topic_prefix + GROUP_ID
        self.topics = {settings.topic("readings"): "readings", settings.topic("video"): "video"}
        self.alerts_topic = settings.topic("alerts")
        self._locate = locate
        self._stop = threading.Event()
        self.stats = {"messages": 0, "readings": 0, "video": 0, "changes": 0, "skipped": 0, "warmed": 0,
                      "already_done": 0, "evicted": 0, "internal_errors": 0,
                      "skipped_offsets": 0}
        self._resume: dict[tuple[str, int], int] = {}
        self.consumer = self.producer = None
        self.core: DetectorCore | None = None
        self._reset_requested = False
        self.started = time.time()
        from tongguan.consumer import Progress

        # lag from the high watermark, last commit, last error: what `tongguan status` and
        # /status judge this worker by (tongguan.consumer)
        self.progress = Progress("detect", self.worker_id, stall_after_s=settings.stall_after_s,
                                 wedge_after_s=settings.wedge_after_s)
        # latest reading time per (topic, partition): silence is judged against the slowest
        # partition, so catching up on one partition never makes another's sensors look offline
        self._partition_time: dict[tuple[str, int], float] = {}
        from tongguan.memtrace import MemTrace

        self.memtrace = MemTrace.from_settings("detect", settings)  # TONGGUAN_TRACEMALLOC_S: what grows

    def _heartbeat(self) -> None:
        """So the status page shows this worker alive, with its counters and its progress."""
        from tongguan.consumer import record_heartbeat

        stats = {**self.stats, "sensors": len(self.core.sensors) if self.core else 0,
                 "active_alerts": len(self.core.book.active) if self.core else 0,
                 # readings out of time order: scored and counted, never a reason to drop a sensor
                 **({f"time_{k}": n for k, n in self.core.time_stats.items()} if self.core else {})}
        try:
            with self.engine.begin() as conn:
                record_heartbeat(conn, self.progress, datetime.fromtimestamp(self.started, UTC), stats)
        except sa.exc.SQLAlchemyError as exc:  # the status page is not worth stopping for
            log.warning("heartbeat not written: %s", str(exc).splitlines()[0])

    def _observe(self) -> None:
        """Lag and state; a detector that has lag but does not commit (or whose group is wedged)
        exits non-zero so its supervisor restarts it — a restart is safe (see the module)."""
        from tongguan.consumer import WorkerStalled

        try:
            state = self.progress.observe(self.consumer, list(self.topics))
        except Exception as exc:  # noqa: BLE001 - the broker may be gone; say so, look again later
            self.progress.error(f"broker: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            return
        if state in ("stalled", "wedged"):
            self._heartbeat()
            raise WorkerStalled(f"{state}: lag {self.progress.lag}, no commit for "
                                f"{self.progress.since_commit_s():.0f} s; exiting so the supervisor restarts "
                                "the detector")

    def stop(self) -> None:
        self._stop.set()

    # -------------------------------------------------------------------------- state
    def _new_core(self) -> DetectorCore:
        anomaly, forecast, surge = (load_models(self.engine, self.settings.home) if self.config.load_models
                                    else ({}, {}, None))
        core = DetectorCore(locate=self._locate, anomaly_models=anomaly, forecasters=forecast, surge=surge)
        core.book = load_active(self.engine)
        return core

    def _warm(self, first: dict[str, dict], *, replay_only: bool = False) -> None:
        """Rebuild the state of sensors new to this process from their stored history before
        their first reading here (``first``: sensor id -> that reading), then make it agree with
        the table: the table says which alerts are active, never the replay.

        An occurrence the replay raises that the table already records (a row with its dedupe
        key whose time span overlaps it) was written and published when the history happened:
        nothing of it is written or published again, and when the table has it finished
        (resolved by the detector or by people) it is not raised again. An alert the table holds
        active stays active under its id, and the sensor's rule state takes its level, so it
        continues and clears as a live one would. An occurrence the table does not know (the
        readings were stored while no detector processed them) is raised now.

        ``replay_only``: no reading of these sensors is about to follow; their state is what the
        history before ``first[sid]["ts"]`` makes it (silent sensors adopted at a tick)."""
        q = sa.text("""
            SELECT sensor_id, metric, value, extract(epoch FROM ts) AS t, ST_X(geom), ST_Y(geom) FROM (
                SELECT r.*, row_number() OVER (PARTITION BY r.sensor_id ORDER BY r.ts DESC) AS k
                FROM readings r JOIN unnest(CAST(:ids AS text[]), CAST(:befores AS float8[])) AS b(sid, before)
                  ON r.sensor_id = b.sid
                WHERE r.ts >= to_timestamp(b.before - :span) AND r.ts < to_timestamp(b.before)
            ) x WHERE k <= :maxrows ORDER BY t""")
        ids = list(first)
        rows = []
        if self.config.warm_hours > 0:
            try:
                with self.engine.connect() as conn:
                    rows = conn.execute(q, {"ids": ids, "befores": [first[i]["ts"] for i in ids],
                                            "span": self.config.warm_hours * 3600,
                                            "maxrows": self.config.warm_max_rows}).all()
            except sa.exc.ProgrammingError:  # no readings table: nothing to warm from
                rows = []
        book = self.core.book
        subjects = {f"sensor:{sid}" for sid in ids}
        stored = {k: a for k, a in book.active.items() if a.subject in subjects}
        for k in stored:
            del book.active[k]
        pending = book.drain()
        from tongguan.consumer import isolated

        def unusable(failure) -> None:  # a stored reading the core cannot take: warm without it
            self.stats["warm_errors"] = self.stats.get("warm_errors", 0) + 1

        try:
            for sid, metric, value, t, lon, lat in rows:
                isolated(self.core.on_reading, {"sensor_id": sid, "metric": metric, "value": value, "ts": float(t),
                                                "lon": lon, "lat": lat}, stage="warm", on_failure=unusable)
        finally:
            replayed = book.drain()
            warm_active = {k: a for k, a in book.active.items() if a.subject in subjects}
            for k in warm_active:
                del book.active[k]
            touched = {ch.alert.id: ch.alert for ch in replayed}
            unrecorded = self._unrecorded([a for a in touched.values()
                                           if not (a.active and a.dedupe_key in stored)])
            for k, a in warm_active.items():
                if k not in stored and a.id in unrecorded:
                    book.active[k] = a
            for sid in () if replay_only else ids:
                if sid not in self.core.sensors:
                    # no history: the state starts here, with its alerts (a reading the core cannot
                    # take fails again when it is scored, and is dead-lettered there)
                    isolated(self.core._ctx, first[sid], stage="warm", on_failure=unusable)
            for k, a in stored.items():
                book.active[k] = a
                _impose(self.core, a)
            book.changes = pending + [ch for ch in replayed if ch.alert.id in unrecorded]
        self.stats["warmed"] += len(rows)

    def _unrecorded(self, alerts: list[Alert]) -> set[str]:
        """Ids of the alerts whose occurrence no table row records: none with the same dedupe
        key overlaps their time span."""
        if not alerts:
            return set()
        with self.engine.connect() as conn:
            known = {r[0] for r in conn.execute(sa.text("""
                SELECT c.id FROM unnest(CAST(:ids AS text[]), CAST(:keys AS text[]), CAST(:firsts AS float8[]),
                                        CAST(:lasts AS float8[])) AS c(id, key, first, last)
                WHERE EXISTS (SELECT 1 FROM alerts a WHERE a.dedupe_key = c.key
                              AND a.first_seen <= to_timestamp(c.last) AND a.last_seen >= to_timestamp(c.first))"""),
                {"ids": [a.id for a in alerts], "keys": [a.dedupe_key for a in alerts],
                 "firsts": [a.first_seen for a in alerts], "lasts": [a.last_seen for a in alerts]})}
        return {a.id for a in alerts} - known

    def _refresh(self) -> None:
        """Forget active alerts that people closed (or that another worker resolved)."""
        keys = list(self.core.book.active)
        if not keys:
            return
        ids = [self.core.book.active[k].id for k in keys]
        with self.engine.connect() as conn:
            live = {r[0]: r[1] for r in conn.execute(sa.text("SELECT id, status FROM alerts WHERE id = ANY(:ids)"),
                                                     {"ids": ids})}
        for k in keys:
            a = self.core.book.active[k]
            status = live.get(a.id)
            if status in FINISHED_STATUSES:
                del self.core.book.active[k]
            elif status:
                a.status = status

    # ---------------------------------------------------------------------------- run
    def _connect(self) -> None:
        from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer

        worker = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                worker._reset_requested = True

            def on_partitions_assigned(self, assigned):
                worker._reset_requested = True
                log.info("assigned %d partition(s)", len(assigned))

        bs = self.settings.kafka_bootstrap
        self.consumer = KafkaConsumer(
            bootstrap_servers=bs, group_id=self.group_id, client_id=self.worker_id, enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=self.config.batch_size,
            session_timeout_ms=6000, heartbeat_interval_ms=1000, max_poll_interval_ms=30000,
            fetch_max_wait_ms=20, fetch_min_bytes=1)
        self.consumer.subscribe(list(self.topics), listener=Listener())
        self.producer = KafkaProducer(bootstrap_servers=bs, client_id=self.worker_id, acks=1, linger_ms=0)
        from tongguan.consumer import DeadLetterSink

        self.dead = DeadLetterSink(self.producer, self.settings.topic("deadletter"), self.worker_id)

    def run(self) -> dict:
        if self._locate is None:
            self._locate = _region_locator(self.engine)
        self._connect()
        from ingest import parse_message
        from tongguan.consumer import poll_past_undecodable

        self.core = self._new_core()
        self._publish_outbox()  # what a killed predecessor wrote but could not publish
        self._resume = load_offsets(self.engine, self.group_id)
        self._heartbeat()
        last_tick = last_refresh = last_beat = last_sweep = time.monotonic()
        idle = 0
        try:
            while not self._stop.is_set():
                batch = poll_past_undecodable(self.consumer, self._skipped, timeout_ms=self.config.poll_timeout_ms,
                                              max_records=self.config.batch_size)
                if self._reset_requested:
                    # rebalance: our sensors may have moved; rebuild from the database on first sight
                    self._reset_requested = False
                    self.core = self._new_core()
                    self._partition_time.clear()
                    self._resume = load_offsets(self.engine, self.group_id)
                records, done = self._fresh([r for recs in batch.values() for r in recs])
                caught_up = False
                if not records:
                    # idle only counts once the group has given us partitions (joins can be slow)
                    if self.consumer.assignment():
                        idle += 1
                    caught_up = self.config.until_idle and idle >= self.config.idle_polls
                else:
                    idle = 0
                    self._process(records, parse_message)
                now = time.monotonic()
                if now - last_tick >= self.config.tick_s or caught_up:
                    # caught up: judge silence at the stream's end once more before leaving
                    sweep = caught_up or now - last_sweep >= self.config.refresh_s
                    self._tick(sweep=sweep)
                    last_tick, last_sweep = now, now if sweep else last_sweep
                if now - last_refresh >= self.config.refresh_s:
                    self._refresh()
                    last_refresh = now
                if now - last_beat >= self.config.heartbeat_s:
                    self._observe()
                    self._heartbeat()
                    last_beat = now
                    if self.memtrace:
                        self.memtrace.maybe_report()
                self._flush(done)
                self.dead.flush()  # the dead letters are part of the batch's outcome
                if done:
                    self._commit_offsets()
                if caught_up:
                    break
        finally:
            for c in (self.consumer, self.producer):
                try:
                    c.close()
                except Exception:  # noqa: BLE001 - best effort on shutdown
                    pass
        return self.stats

    def _commit_offsets(self) -> None:
        """Commit the group's offsets. A commit refused because this member was put out of the
        group (a loop iteration longer than ``max_poll_interval_ms``, a rebalance) is not fatal:
        what was processed is already in ``detect_offsets``, in the same transaction as its alerts,
        so the records re-delivered after the rejoin are skipped there. The next poll rejoins."""
        from kafka.errors import CommitFailedError

        try:
            self.consumer.commit()
        except CommitFailedError as exc:
            log.warning("offset commit refused (%s); rejoining the group on the next poll", str(exc)[:200])
            self.progress.error(f"offset commit refused: {str(exc)[:200]}")
            return
        self.progress.committed()

    def _skipped(self, s) -> None:
        """A range no record could be read from: dead-lettered (durable now: no later batch may
        be needed to flush it), counted, and shown as the worker's last error."""
        self.stats["skipped_offsets"] += s.end - s.first
        self.progress.error(f"skipped {s.topic}[{s.partition}] {s.first}..{s.end - 1}: {s.error}")
        self.dead.add_skipped(s)
        self.dead.flush()

    def _tick(self, *, sweep: bool) -> None:
        stream_now = min(self._partition_time.values()) if self._partition_time else None
        if sweep and stream_now is not None:
            self._adopt_silent(stream_now)
        self.core.tick(stream_now)
        self._evict()

    def _adopt_silent(self, now: float) -> None:
        """Sensors that fell silent while no process of ours held their state (they stopped
        before a restart or a rebalance, so their last reading is behind us) would never be
        noticed: nothing of theirs arrives to rebuild their state. Rebuild it from stored history
        for every stored sensor silent for at least ``OFFLINE_MIN_S`` of stream time, and silent
        also against the newest reading stored (a store worker that lags is not a silence), so
        the next tick judges them as it judges the others.

        With several detectors in one group each may adopt the same silent sensor: its offline
        alert is then raised once (the active dedupe key is unique; the loser adopts it)."""
        from analytics.engine import OFFLINE_MIN_S

        q = sa.text("""
            SELECT sensor_id FROM sensors
            WHERE last_seen >= to_timestamp(:now - :span) AND last_seen <= to_timestamp(:now - :quiet)
              AND last_seen <= (SELECT max(last_seen) FROM sensors) - make_interval(secs => :quiet)""")
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(q, {"now": now, "span": self.config.warm_hours * 3600,
                                        "quiet": OFFLINE_MIN_S}).all()
        except sa.exc.SQLAlchemyError as exc:  # judged again at the next tick
            log.warning("silent sensors not read: %s", str(exc).splitlines()[0])
            return
        # "first" at the stream's time: the whole stored history before it is replayed
        first = {sid: {"ts": now} for (sid,) in rows if sid not in self.core.sensors}
        if first:
            self._warm(first, replay_only=True)
            self.stats["adopted_silent"] = self.stats.get("adopted_silent", 0) + len(first)

    def _fresh(self, records: list) -> tuple[list, dict[tuple[str, int], int]]:
        """The records the table does not reflect yet, and the next offset per partition polled.

        Records below the offset stored with the alerts were processed by a predecessor killed
        before its Kafka commit: their changes are in the table (and the outbox), and the
        sensors' state is rebuilt from stored history; processing them again would raise copies."""
        done: dict[tuple[str, int], int] = {}
        fresh = []
        for rec in records:
            tp = (rec.topic, rec.partition)
            done[tp] = max(done.get(tp, 0), rec.offset + 1)
            if rec.offset >= self._resume.get(tp, 0):
                fresh.append(rec)
        self.stats["already_done"] += len(records) - len(fresh)
        return fresh, done

    def _evict(self) -> None:
        """Bound the per-sensor state: a sensor silent for ``evict_after_s`` of stream time with
        no active alert is forgotten (its state is rebuilt from history if it reports again)."""
        core = self.core
        if not core.sensors:
            return
        horizon = core.now - self.config.evict_after_s
        excess = len(core.sensors) - self.config.max_sensors
        if excess <= 0 and not any((c.last_t or 0) < horizon for c in core.sensors.values()):
            return
        busy = {a.subject for a in core.book.active.values()}
        old = sorted((c.last_t or 0.0, sid) for sid, c in core.sensors.items() if f"sensor:{sid}" not in busy)
        gone = [sid for t, sid in old if t < horizon]
        if excess > len(gone):
            gone += [sid for _, sid in old[len(gone):len(gone) + excess - len(gone)]]
        for sid in gone:
            del core.sensors[sid]
        self.stats["evicted"] += len(gone)

    def _decode(self, rec, parse_message, now: float) -> tuple[list[dict], list[dict]] | None:
        """The readings and video events of one record; None when the contract rejects it."""
        fast = fast_readings(rec.value) if self.topics.get(rec.topic) == "readings" else None
        events: list[dict] = []
        if fast is None:  # video, or anything unusual: the full validation of the contract
            p = parse_message(rec.value, now=now)
            if p.problems and not (p.readings or p.events):
                return None  # the store worker dead-letters it with the reason
            # PostgreSQL text cannot hold NUL: such a device id could never be written with an alert
            # (the store worker dead-letters the record when the database refuses it)
            fast = [{"sensor_id": r.sensor_id, "metric": r.metric, "value": r.value, "ts": r.ts.timestamp(),
                     "lon": r.lon, "lat": r.lat} for r in p.readings if "\x00" not in r.sensor_id]
            events = [{"camera_id": e.camera_id, "type": e.type, "ts": e.ts.timestamp(), "lon": e.lon,
                       "lat": e.lat, "count": e.count} for e in p.events if "\x00" not in e.camera_id]
        return fast, events

    def _score(self, readings: list[dict], events: list[dict]) -> bool:
        for r in readings:
            self.core.on_reading(r)
        for e in events:
            self.core.on_video(e)
        return True

    def _isolate(self, rec):
        """on_failure for one record: dead-lettered (``internal_error``), never the worker."""
        def failed(failure) -> None:
            self.stats["internal_errors"] += 1
            self.progress.failure(failure)
            self.dead.add_failure(rec, failure)
        return failed

    def _process(self, records, parse_message) -> None:
        from tongguan.consumer import isolated

        now = time.time()
        decoded = []
        new_sensors: dict[str, dict] = {}
        sensors = self.core.sensors
        for rec in records:
            self.stats["messages"] += 1
            out = isolated(self._decode, rec, parse_message, now, stage="decode", on_failure=self._isolate(rec))
            if out is None:
                self.stats["skipped"] += 1
                continue
            fast, events = out
            decoded.append((rec, fast, events))
            if fast:
                key = (rec.topic, rec.partition)
                latest = max(r["ts"] for r in fast)
                if latest > self._partition_time.get(key, 0.0):
                    self._partition_time[key] = latest
            for r in fast:
                sid = r["sensor_id"]
                if sid not in sensors and (sid not in new_sensors or r["ts"] < new_sensors[sid]["ts"]):
                    new_sensors[sid] = r
        if new_sensors:
            self._warm(new_sensors)
        for rec, fast, events in decoded:
            if isolated(self._score, fast, events, stage="detect", on_failure=self._isolate(rec)):
                self.stats["readings"] += len(fast)
                self.stats["video"] += len(events)

    def _flush(self, done: dict[tuple[str, int], int]) -> None:
        """Alert changes, the outbox and the input offsets in ONE transaction; then publish."""
        changes = self.core.drain()
        if not changes and not done:
            return
        seqs: list[int] = []
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    seqs = persist(conn, changes, actor=f"system:{self.worker_id}") if changes else []
                    save_offsets(conn, self.group_id, done)
                break
            except sa.exc.IntegrityError as exc:
                # another detector (a rebalance) opened the same condition at the same moment:
                # the next try adopts its alert
                if attempt == 2:
                    raise
                log.warning("alert write conflicted (%s); retrying", str(exc).splitlines()[0])
        for tp, o in done.items():
            self._resume[tp] = max(self._resume.get(tp, 0), o)
        if seqs:
            self._publish_outbox(seqs)
        self.stats["changes"] += len(changes)

    def _publish_outbox(self, seqs: list[int] | None = None) -> int:
        """Publish outbox messages (``seqs``, or all that are left) on ``city.alerts`` in order,
        and delete them once the broker has them. A kill before the delete publishes them again
        (the notifier de-duplicates on alert and event): at least once, never lost."""
        where = "seq = ANY(:seqs)" if seqs is not None else "true"
        sent = 0
        while True:
            with self.engine.begin() as conn:
                try:
                    rows = conn.execute(sa.text(
                        f"SELECT seq, dedupe_key, message FROM alert_outbox WHERE {where} ORDER BY seq "
                        "LIMIT 5000 FOR UPDATE SKIP LOCKED"), {"seqs": seqs or []}).all()
                except sa.exc.ProgrammingError:  # migrations not applied yet
                    return 0
                if not rows:
                    return sent
                futures = [self.producer.send(self.alerts_topic, key=k.encode(), value=bytes(m)) for _, k, m in rows]
                self.producer.flush(timeout=30)
                for f in futures:
                    f.get(timeout=30)  # raises when the broker refused or never answered: kept
                conn.execute(sa.text("DELETE FROM alert_outbox WHERE seq = ANY(:s)"), {"s": [r[0] for r in rows]})
            sent += len(rows)
            if seqs is not None:
                return sent
