"""The live detector against the real database and broker: alerts in PostGIS and on city.alerts,
one alert per ongoing condition, history appended, state rebuilt from stored readings."""

import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import sqlalchemy as sa

from analytics.live import DetectConfig, DetectWorker

pytestmark = pytest.mark.integration

GZ = {"county": "440106", "city": "440100", "province": "440000", "grid_id": None}


def locate(_device, _lon, _lat):
    return GZ


def reading(sensor, metric, value, ts, unit, lon=113.33, lat=23.13):
    return orjson.dumps({"schema": "reading/1", "event_id": str(uuid.uuid4()), "sensor_id": sensor, "metric": metric,
                         "value": value, "unit": unit, "ts": ts.isoformat(), "lon": lon, "lat": lat})


def produce(settings, messages):
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for key, value in messages:
        p.send(settings.topic("readings"), key=key.encode(), value=value)
    p.flush()
    p.close()


def read_alerts(settings, n_min, timeout=20):
    from kafka import KafkaConsumer

    c = KafkaConsumer(settings.topic("alerts"), bootstrap_servers=settings.kafka_bootstrap,
                      auto_offset_reset="earliest", consumer_timeout_ms=2000, group_id=f"t-{uuid.uuid4().hex[:6]}",
                      session_timeout_ms=6000, heartbeat_interval_ms=1000)
    out, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline and len(out) < n_min:
        for recs in c.poll(timeout_ms=500).values():
            out += [orjson.loads(r.value) for r in recs]
    c.close()
    return out


def run_worker(settings, engine, locate=locate):
    w = DetectWorker(settings, DetectConfig(until_idle=True, idle_polls=40, poll_timeout_ms=100, load_models=False),
                     engine=engine, locate=locate)
    return w.run()


def test_gas_leak_opens_one_alert_escalates_and_resolves(settings, engine):
    t0 = datetime.now(UTC) - timedelta(minutes=40)
    values = [0.5] * 5 + [12, 12, 22, 30, 55, 55, 55] + [0.5] * 20
    # near Tianhe Park: the real region index (geo) places it in 天河区 and a grid cell
    msgs = [("gas-1", reading("gas-1", "gas_lel", v, t0 + timedelta(minutes=i), "%LEL", 113.36, 23.14))
            for i, v in enumerate(values)]
    produce(settings, msgs)
    stats = run_worker(settings, engine, locate=None)
    assert stats["readings"] == len(values)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT level, status, adcode, city, province, source, count, "
                                    "ST_AsText(geom), grid_id FROM alerts WHERE subject = 'sensor:gas-1' "
                                    "AND source = 'rule:gas-leak'")).all()
        history = conn.execute(sa.text("SELECT h.action, h.level FROM alert_history h JOIN alerts a ON a.id = h.alert_id "
                                       "WHERE a.source = 'rule:gas-leak' ORDER BY h.id")).all()
    assert len(rows) == 1  # one alert for the ongoing condition, not one per reading
    with engine.connect() as conn:
        beat = conn.execute(sa.text("SELECT role, stats FROM worker_heartbeats WHERE role = 'detect'")).first()
    assert beat is not None and beat[1]["readings"] >= 0
    level, status, adcode, city, province, source, count, geom, grid_id = rows[0]
    assert (level, status, adcode, city, province) == ("red", "resolved", "440106", "440100", "440000")
    assert geom.startswith("POINT(113.36") and grid_id.startswith("440106-1000-")
    assert [a for a, _ in history][:1] == ["opened"] and history[-1][0] == "resolved"
    assert ("escalated", "red") in history
    msgs = read_alerts(settings, len(history))
    actions = [m["action"]["action"] for m in msgs if m["source"] == "rule:gas-leak"]
    assert actions == [a for a, _ in history]
    assert msgs[0]["level"] in ("blue", "yellow", "orange", "red") and msgs[0]["geometry"]["type"] == "Point"
    with engine.begin() as conn, pytest.raises(sa.exc.DBAPIError, match="append-only"):
        conn.execute(sa.text("DELETE FROM alert_history"))


def test_restart_continues_the_open_alert(settings, engine):
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    produce(settings, [("p-1", reading("p-1", "ponding_depth", 30.0, t0 + timedelta(minutes=i), "cm")) for i in range(8)])
    run_worker(settings, engine)
    produce(settings, [("p-1", reading("p-1", "ponding_depth", 31.0, t0 + timedelta(minutes=8 + i), "cm"))
                       for i in range(3)])
    run_worker(settings, engine)  # a new process: state rebuilt, the open alert continued
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT level, status, count FROM alerts WHERE source = 'rule:ponding'")).all()
    assert len(rows) == 1 and rows[0][0] == "yellow" and rows[0][1] == "open"


def test_state_is_rebuilt_from_stored_readings(settings, engine):
    """Ponding must stay above 15 cm for 5 min: the minutes before the restart are only in the
    database; replaying them rebuilds the rule's clock (one reading alone could not alert)."""
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [dict(ts=now - timedelta(minutes=6 - i), event_id=f"old-{i}", value=20.0) for i in range(6)]
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT ingest_ensure_readings_partitions(CAST(:a AS date), CAST(:b AS date))"),
                     {"a": (now - timedelta(days=1)).date(), "b": (now + timedelta(days=1)).date()})
        conn.execute(sa.text("""INSERT INTO readings (ts, event_id, sensor_id, metric, value, county, city, province,
                                geom, src_topic, src_partition, src_offset, ingested_at)
                                VALUES (:ts, :event_id, 'pw', 'ponding_depth', :value, '440106', '440100', '440000',
                                ST_SetSRID(ST_MakePoint(113.33, 23.13), 4326), 'test', 0, 0, now())"""), rows)
    produce(settings, [("pw", reading("pw", "ponding_depth", 20.0, now, "cm"))])
    stats = run_worker(settings, engine)
    assert stats["warmed"] == 6
    with engine.connect() as conn:
        got = conn.execute(sa.text("SELECT level, extract(epoch FROM first_seen) FROM alerts "
                                   "WHERE source = 'rule:ponding'")).all()
    # the condition was complete in the stored minutes: the alert dates from then
    assert len(got) == 1 and got[0][0] == "blue" and abs(float(got[0][1]) - (now.timestamp() - 60)) < 1
