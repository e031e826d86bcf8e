"""The live detector (``tongguan detect``, consumer group ``tongguan-detect``).

Consumes readings and video events, runs them through :class:`DetectorCore`, writes alert
changes to PostGIS (``alerts`` + append-only ``alert_history``) and to ``city.alerts``, and only
then commits its offsets. Per-sensor state lives in memory for the partitions it holds: after a
restart or a rebalance it is dropped and rebuilt, sensor by sensor on first sight, from recent
history in ``readings`` (replayed through the core without publishing anything), and the active
alerts are reloaded from the ``alerts`` table so an ongoing condition keeps its alert.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import orjson
import sqlalchemy as sa

from analytics.alerts import Alert, AlertBook, Change
from analytics.engine import DetectorCore
from analytics.errors import AnalyticsError

log = logging.getLogger("tongguan.detect")
GROUP_ID = "tongguan-detect"


@dataclass
class DetectConfig:
    batch_size: int = 5000
    poll_timeout_ms: int = 50
    warm_hours: float = 12.0  # history replayed per sensor after a (re)start
    warm_max_rows: int = 2000  # per sensor
    refresh_s: float = 30.0  # re-read active alerts' status (people acknowledge and close them)
    tick_s: float = 5.0
    group_id: str | None = None
    until_idle: bool = False
    idle_polls: int = 20
    load_models: bool = True


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
            v, ts = r["value"], r["ts"]
            if (r["metric"] not in _METRICS or type(v) not in (int, float) or not math.isfinite(v)
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
HEARTBEAT = sa.text("""
INSERT INTO worker_heartbeats (worker, role, started_at, last_seen, stats)
VALUES (:worker, 'detect', to_timestamp(:started), now(), CAST(:stats AS jsonb))
ON CONFLICT (worker) DO UPDATE SET last_seen = now(), stats = EXCLUDED.stats
""")
HISTORY = sa.text("""
INSERT INTO alert_history (alert_id, ts, action, actor, level, status, note)
VALUES (:alert_id, to_timestamp(:ts), :action, :actor, :level, :status, :note)
""")


def persist(conn, changes: list[Change], actor: str) -> None:
    """Write alert changes (one row per alert, its latest state; one history row per change)."""
    latest: dict[str, Alert] = {}
    for ch in changes:
        latest[ch.alert.id] = ch.alert
    rows = [dict(id=a.id, dedupe_key=a.dedupe_key, source=a.source, level=a.level, theme=a.theme, title=a.title,
                 detail=orjson.dumps(a.detail, option=orjson.OPT_NON_STR_KEYS).decode(), subject=a.subject,
                 confidence=a.confidence, adcode=(a.adcode or "")[:6], city=(a.city or "")[:6],
                 province=(a.province or "")[:6], grid_id=a.grid_id, lon=a.lon, lat=a.lat,
                 first_seen=a.first_seen, last_seen=a.last_seen, count=a.count, status=a.status)
            for a in latest.values()]
    conn.execute(UPSERT, rows)
    conn.execute(HISTORY, [dict(alert_id=ch.alert.id, ts=ch.snapshot["action"] and ch.alert.last_seen,
                                action=ch.action, actor=actor, level=ch.snapshot["level"],
                                status=ch.snapshot["status"], note=ch.note) for ch in changes])


def load_active(engine) -> AlertBook:
    """The active alerts in the database, as a book (so a restart continues them)."""
    book = AlertBook()
    q = sa.text("""SELECT id, dedupe_key, source, level, theme, title, detail, subject, confidence, adcode, city,
                          province, grid_id, ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)),
                          extract(epoch FROM first_seen), extract(epoch FROM last_seen), count, status
                   FROM alerts WHERE status IN ('open','acknowledged','dispatched')""")
    with engine.connect() as conn:
        for r in conn.execute(q):
            a = Alert(id=r[0], dedupe_key=r[1], source=r[2], level=r[3], theme=r[4], title=r[5], detail=dict(r[6]),
                      subject=r[7], confidence=float(r[8]), adcode=(r[9] or "").strip(), city=(r[10] or "").strip(),
                      province=(r[11] or "").strip(), grid_id=r[12], lon=r[13], lat=r[14],
                      first_seen=float(r[15]), last_seen=float(r[16]), count=int(r[17]), status=r[18],
                      published_at=float(r[16]))
            book.active[a.dedupe_key] = a
    return book


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
        self.stats = {"messages": 0, "readings": 0, "video": 0, "changes": 0, "skipped": 0, "warmed": 0}
        self.consumer = self.producer = None
        self.core: DetectorCore | None = None
        self._reset_requested = False
        self.started = time.time()
        # latest reading time per (topic, partition): silence is judged against the slowest
        # partition, so catching up on one partition never makes another's sensors look offline
        self._partition_time: dict[tuple[str, int], float] = {}

    def _heartbeat(self) -> None:
        """So the status page shows this worker alive, with its counters."""
        stats = {**self.stats, "sensors": len(self.core.sensors) if self.core else 0,
                 "active_alerts": len(self.core.book.active) if self.core else 0,
                 # readings out of time order: scored and counted, never a reason to drop a sensor
                 **({f"time_{k}": n for k, n in self.core.time_stats.items()} if self.core else {})}
        try:
            with self.engine.begin() as conn:
                conn.execute(HEARTBEAT, {"worker": self.worker_id, "started": self.started,
                                         "stats": orjson.dumps(stats).decode()})
        except sa.exc.SQLAlchemyError as exc:  # the status page is not worth stopping for
            log.warning("heartbeat not written: %s", str(exc).splitlines()[0])

    def stop(self) -> None:
        self._stop.set()

    # -------------------------------------------------------------------------- state
    def _new_core(self) -> DetectorCore:
        anomaly, forecast, surge = (load_models(self.engine, self.settings.home) if self.config.load_models
                                    else ({}, {}, None))
        core = DetectorCore(locate=self._locate, anomaly_models=anomaly, forecasters=forecast, surge=surge)
        core.book = load_active(self.engine)
        return core

    def _warm(self, sensor_ids: list[str], before: float) -> None:
        """Replay recent stored history of sensors new to this process; what it changes in alerts
        already in the database is not published again."""
        q = sa.text("""
            SELECT sensor_id, metric, value, extract(epoch FROM ts) AS t, ST_X(geom), ST_Y(geom) FROM (
                SELECT r.*, row_number() OVER (PARTITION BY sensor_id ORDER BY ts DESC) AS k
                FROM readings r WHERE sensor_id = ANY(:ids) AND ts >= to_timestamp(:since) AND ts < to_timestamp(:before)
            ) x WHERE k <= :maxrows ORDER BY ts""")
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(q, {"ids": sensor_ids, "since": before - self.config.warm_hours * 3600,
                                        "before": before, "maxrows": self.config.warm_max_rows}).all()
        except sa.exc.ProgrammingError:  # no readings table: nothing to warm from
            return
        known = {a.id for a in self.core.book.active.values()}
        pending = self.core.book.drain()
        try:
            for sid, metric, value, t, lon, lat in rows:
                self.core.on_reading({"sensor_id": sid, "metric": metric, "value": value, "ts": float(t),
                                      "lon": lon, "lat": lat})
        finally:
            # Changes to alerts already in the database were made before; an alert the history
            # raises that the database lacks was never published (the last process stopped first).
            replayed = self.core.book.drain()
            self.core.book.changes = pending + [ch for ch in replayed if ch.alert.id not in known]
        self.stats["warmed"] += len(rows)

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
            if status in ("resolved", "closed"):
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

    def run(self) -> dict:
        if self._locate is None:
            self._locate = _region_locator(self.engine)
        self._connect()
        from ingest import parse_message

        self.core = self._new_core()
        self._heartbeat()
        last_tick = last_refresh = time.monotonic()
        idle = 0
        try:
            while not self._stop.is_set():
                batch = self.consumer.poll(timeout_ms=self.config.poll_timeout_ms, max_records=self.config.batch_size)
                if self._reset_requested:
                    # rebalance: our sensors may have moved; rebuild from the database on first sight
                    self._reset_requested = False
                    self.core = self._new_core()
                    self._partition_time.clear()
                records = [r for recs in batch.values() for r in recs]
                if not records:
                    # idle only counts once the group has given us partitions (joins can be slow)
                    if self.consumer.assignment():
                        idle += 1
                    if self.config.until_idle and idle >= self.config.idle_polls:
                        break
                else:
                    idle = 0
                    self._process(records, parse_message)
                now = time.monotonic()
                if now - last_tick >= self.config.tick_s:
                    self.core.tick(min(self._partition_time.values()) if self._partition_time else None)
                    last_tick = now
                if now - last_refresh >= self.config.refresh_s:
                    self._refresh()
                    self._heartbeat()
                    last_refresh = now
                self._flush()
                if records:
                    self.consumer.commit()
        finally:
            for c in (self.consumer, self.producer):
                try:
                    c.close()
                except Exception:  # noqa: BLE001 - best effort on shutdown
                    pass
        return self.stats

    def _process(self, records, parse_message) -> None:
        now = time.time()
        readings, events = [], []
        new_sensors: dict[str, None] = {}
        sensors = self.core.sensors
        for rec in records:
            self.stats["messages"] += 1
            fast = fast_readings(rec.value) if self.topics.get(rec.topic) == "readings" else None
            if fast is None:  # video, or anything unusual: the full validation of the contract
                p = parse_message(rec.value, now=now)
                if p.problems and not (p.readings or p.events):
                    self.stats["skipped"] += 1  # the store worker dead-letters it with the reason
                    continue
                fast = [{"sensor_id": r.sensor_id, "metric": r.metric, "value": r.value, "ts": r.ts.timestamp(),
                         "lon": r.lon, "lat": r.lat} for r in p.readings]
                events += [{"camera_id": e.camera_id, "type": e.type, "ts": e.ts.timestamp(), "lon": e.lon,
                            "lat": e.lat, "count": e.count} for e in p.events]
            readings += fast
            if fast:
                key = (rec.topic, rec.partition)
                latest = max(r["ts"] for r in fast)
                if latest > self._partition_time.get(key, 0.0):
                    self._partition_time[key] = latest
            for r in fast:
                if r["sensor_id"] not in sensors:
                    new_sensors[r["sensor_id"]] = None
        if new_sensors and self.config.warm_hours > 0 and readings:
            self._warm(list(new_sensors), before=min(r["ts"] for r in readings))
        for r in readings:
            self.core.on_reading(r)
        for e in events:
            self.core.on_video(e)
        self.stats["readings"] += len(readings)
        self.stats["video"] += len(events)

    def _flush(self) -> None:
        changes = self.core.drain()
        if not changes:
            return
        with self.engine.begin() as conn:
            persist(conn, changes, actor=f"system:{self.worker_id}")
        for ch in changes:
            self.producer.send(self.alerts_topic, key=ch.alert.dedupe_key.encode(),
                               value=orjson.dumps(ch.snapshot, option=orjson.OPT_NON_STR_KEYS))
        self.producer.flush(timeout=30)
        self.stats["changes"] += len(changes)
