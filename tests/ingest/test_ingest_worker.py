"""The store worker against the real broker and PostGIS: dead letters, batches, replays, rollups,
desensitisation, and a producer of another client lineage (librdkafka via confluent-kafka)."""

import base64
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer, KafkaProducer

from ingest.worker import StoreWorker, WorkerConfig

pytestmark = pytest.mark.integration

TIANHE = (113.3612, 23.1247)  # 天河区, Guangzhou


def _ts(minutes_ago: float = 5.0) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)).isoformat()


def reading(event_id, value=3.0, metric="water_level", unit="m", sensor="wl-1", lon=TIANHE[0], lat=TIANHE[1],
            minutes_ago=5.0, schema=True):
    r = {"event_id": event_id, "sensor_id": sensor, "metric": metric, "value": value, "unit": unit,
         "ts": _ts(minutes_ago), "lon": lon, "lat": lat}
    return {"schema": "reading/1", **r} if schema else r


def produce(settings, items, topic="readings"):
    p = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for key, value in items:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        p.send(settings.topic(topic), key=key.encode(), value=raw)
    p.flush()
    p.close()


def run_worker(settings, **kw):
    return StoreWorker(settings, WorkerConfig(until_idle=True, **kw)).run()


def deadletters(settings, expected: int):
    c = KafkaConsumer(settings.topic("deadletter"), bootstrap_servers=settings.kafka_bootstrap,
                      auto_offset_reset="earliest", consumer_timeout_ms=5000, enable_auto_commit=False)
    out = []
    for rec in c:
        out.append((orjson.loads(rec.value), dict(rec.headers)))
        if len(out) >= expected:
            break
    c.close()
    return out


def test_bad_inputs_go_to_deadletter_with_reason_and_good_ones_are_stored(settings, engine):
    good = reading("good-1")
    batch = {"schema": "readings/1", "gateway_id": "gw-7",
             "readings": [reading(f"b-{i}", value=2.0 + i, sensor=f"wl-b{i}", schema=False) for i in range(4)]}
    batch["readings"][2]["value"] = 99.0  # out of range for a river level
    bad = [
        ("nj", b"{oops", "not_json"),
        ("v2", {**good, "schema": "reading/9", "event_id": "x1"}, "unknown_schema"),
        ("mf", {k: v for k, v in reading("x2").items() if k != "value"}, "missing_field"),
        ("wt", reading("x3", value="high"), "wrong_type"),
        ("nan", orjson.dumps(reading("x4")).replace(b'"value":3.0', b'"value":NaN'), "not_finite"),
        ("um", reading("x5", metric="unicorns"), "unknown_metric"),
        ("oor", reading("x6", value=-50.0), "out_of_range"),
        ("sea", reading("x7", lon=114.9, lat=21.5), "outside_regions"),  # South China Sea
        ("swp", reading("x8", lon=TIANHE[1], lat=TIANHE[0]), "swapped_coordinates"),
        ("tz", {**reading("x9"), "ts": "2026-01-01T00:00:00"}, "ts_without_offset"),
        ("fut", reading("x10", minutes_ago=-24 * 60), "ts_in_future"),
        ("big", {**reading("x11"), "quality": "q" * 600_000}, "oversized"),
    ]
    produce(settings, [("good", good), ("gw-7", batch)] + [(k, v) for k, v, _ in bad])
    stats = run_worker(settings)
    assert stats.stored_readings == 1 + 3
    assert stats.dead_lettered == len(bad) + 1
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT event_id, county, city, province, src_topic, gateway_id FROM readings "
                                    "ORDER BY event_id")).fetchall()
    assert [r[0] for r in rows] == ["b-0", "b-1", "b-3", "good-1"]
    assert {(r[1], r[2], r[3]) for r in rows} == {("440106", "440100", "440000")}
    assert rows[0][4] == settings.topic("readings") and rows[0][5] == "gw-7"

    letters = deadletters(settings, len(bad) + 1)
    by_reason = {}
    for env, headers in letters:
        by_reason.setdefault(env["reason"], []).append(env)
        assert headers["reason"].decode() == env["reason"]
        assert env["source"]["topic"] == settings.topic("readings")
        assert isinstance(env["source"]["offset"], int)
    assert sorted(by_reason) == sorted({r for _, _, r in bad} | {"out_of_range"})
    batch_letter = next(e for e in by_reason["out_of_range"] if e["index"] is not None)
    assert batch_letter["index"] == 2 and batch_letter["field"] == "readings[2].value"
    assert batch_letter["item"]["event_id"] == "b-2"
    assert orjson.loads(base64.b64decode(batch_letter["original_b64"])) == batch
    assert base64.b64decode(by_reason["not_json"][0]["original_b64"]) == b"{oops"


def test_replay_inserts_nothing_twice_and_rollups_match_a_direct_aggregate(settings, engine):
    msgs = []
    for i in range(300):
        metric, unit = ("rainfall", "mm/h") if i % 2 else ("water_level", "m")
        # Tianhe, Yuexiu, and Dongguan (a city without counties: its "county" is the city itself,
        # which must not be counted twice).
        lon, lat = (113.75, 23.02) if i % 10 == 0 else (TIANHE[0] if i % 3 else 113.27, 23.13)
        msgs.append((f"s{i % 7}", reading(f"r-{i}", value=float(i % 40), metric=metric, unit=unit,
                                          sensor=f"s{i % 7}-{metric}", lon=lon, lat=lat, minutes_ago=i / 10)))
    # Two separate batches hitting the same minutes: the rollup merge must add up.
    produce(settings, msgs[:150])
    first = run_worker(settings, batch_size=40)
    produce(settings, msgs[150:] + msgs[:50])  # 50 re-sent duplicates
    second = run_worker(settings, batch_size=40)
    assert (first.stored_readings, second.stored_readings, second.duplicates) == (150, 150, 50)
    # A full replay from the beginning by another group stores nothing and changes no rollup.
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT * FROM reading_rollups_minute ORDER BY 1, 2, 3")).fetchall()
    replay = StoreWorker(settings, WorkerConfig(until_idle=True, group_id=settings.topic_prefix + "replay")).run()
    assert replay.stored_readings == 0 and replay.duplicates == 350
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), count(DISTINCT event_id) FROM readings")).one() == (300, 300)
        after = conn.execute(sa.text("SELECT * FROM reading_rollups_minute ORDER BY 1, 2, 3")).fetchall()
        assert after == before
        for unit in ("minute", "hour"):
            direct = conn.execute(sa.text(f"""
                SELECT adcode, metric, date_trunc('{unit}', ts) b, count(*), min(value), max(value), sum(value),
                       (array_agg(value ORDER BY ts DESC))[1], max(ts)
                FROM (SELECT DISTINCT ON (event_id, adcode) * FROM readings,
                      LATERAL (VALUES (county), (city), (province)) l(adcode)) d
                GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""")).fetchall()
            rolled = conn.execute(sa.text(f"""
                SELECT adcode, metric, bucket, n, vmin, vmax, vsum, last_value, last_ts
                FROM reading_rollups_{unit} ORDER BY 1, 2, 3""")).fetchall()
            assert [tuple(r[:6]) for r in rolled] == [tuple(r[:6]) for r in direct]
            assert all(abs(a[6] - b[6]) < 1e-9 and a[7:] == b[7:] for a, b in zip(rolled, direct))
        levels = conn.execute(sa.text("SELECT DISTINCT adcode FROM reading_rollups_hour ORDER BY 1")).scalars().all()
        assert levels == ["440000", "440100", "440104", "440106", "441900"]
        dongguan = conn.execute(sa.text("SELECT sum(n) FROM reading_rollups_hour WHERE adcode = '441900'")).scalar()
        assert dongguan == 30
        assert conn.execute(sa.text("SELECT count(*) FROM sensors")).scalar() == 14


def test_rollup_last_value_is_the_latest_reading_and_a_tie_takes_the_larger(settings, engine):
    """last_value is the value at the latest ts, in one batch and across batches of one bucket;
    readings at the very same instant resolve to the larger value, whatever their order."""
    ts = (datetime.now(timezone.utc) - timedelta(minutes=3)).replace(second=30, microsecond=0)

    def at(event_id, value, seconds):
        r = reading(event_id, value=value, sensor=f"wl-{event_id}")
        return (event_id, {**r, "ts": (ts + timedelta(seconds=seconds)).isoformat()})

    produce(settings, [at("t-1", 2.0, 0), at("t-2", 1.5, 10), at("t-3", 1.0, 10), at("t-4", 3.0, -20)])
    run_worker(settings)
    produce(settings, [at("t-5", 0.5, 5)])  # older than the bucket's latest: changes nothing
    run_worker(settings)
    with engine.connect() as conn:
        got = conn.execute(sa.text("SELECT DISTINCT last_value, last_ts FROM reading_rollups_minute "
                                   "WHERE bucket = :b"), {"b": ts.replace(second=0)}).all()
    assert got == [(1.5, ts + timedelta(seconds=10))]


def test_confluent_kafka_producer_and_video_desensitisation(settings, engine):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    p.produce(settings.topic("readings"), key=b"ck-1",
              value=orjson.dumps(reading("ck-1", metric="pm25", unit="ug/m3", value=35.0, sensor="ck-1")))
    event = {"schema": "video_event/1", "event_id": "ve-1", "camera_id": "cam-9", "type": "illegal_parking",
             "confidence": 0.93, "ts": _ts(), "lon": TIANHE[0], "lat": TIANHE[1], "count": 1,
             "attributes": {"plate": "粤A12345", "owner_phone": "13812345678", "colour": "white"}}
    p.produce(settings.topic("video"), key=b"cam-9", value=orjson.dumps(event))
    assert p.flush(30) == 0
    stats = run_worker(settings)
    assert (stats.stored_readings, stats.stored_events, stats.dead_lettered) == (1, 1, 0)
    with engine.connect() as conn:
        r = conn.execute(sa.text("SELECT metric, value, county FROM readings WHERE event_id = 'ck-1'")).one()
        assert tuple(r) == ("pm25", 35.0, "440106")
        ev = conn.execute(sa.text("SELECT attributes::text, county, theme FROM video_events")).one()
        assert "粤A12345" not in ev[0] and "13812345678" not in ev[0] and "white" in ev[0]
        # Stored as a JSON object, so its fields can be queried (issue 14: it was a JSON string).
        got = conn.execute(sa.text("SELECT jsonb_typeof(attributes), attributes->>'colour', "
                                   "attributes->>'owner_phone' FROM video_events")).one()
        assert got[:2] == ("object", "white") and got[2] and got[2] != "13812345678"
        assert ev[1:] == ("440106", "citymgmt")
        assert conn.execute(sa.text("SELECT n FROM video_rollups_hour WHERE adcode = '440000'")).scalar() == 1
        assert conn.execute(sa.text("SELECT county FROM cameras WHERE camera_id = 'cam-9'")).scalar() == "440106"
        hb = conn.execute(sa.text("SELECT role, stats->>'stored_readings' FROM worker_heartbeats")).one()
        assert hb == ("store", "1")


def test_database_outage_pauses_retries_and_loses_nothing(settings, engine, db_url, caplog):
    """A real outage: the worker's connection is terminated and new ones refused for a while."""
    import logging
    import threading

    caplog.set_level(logging.INFO, logger="ingest.worker")
    produce(settings, [(f"s{i % 5}", reading(f"o-{i}", sensor=f"s{i % 5}", minutes_ago=i / 100))
                       for i in range(2000)])
    worker = StoreWorker(settings, WorkerConfig(until_idle=True, batch_size=100, max_backoff_s=1.0,
                                                pause_after_s=0.5))
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("stats", worker.run()), daemon=True)
    thread.start()
    admin = sa.create_engine(sa.make_url(db_url).set(database="postgres"), isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool)
    name = sa.make_url(db_url).database
    import time

    deadline = time.monotonic() + 60
    while worker.stats.batches < 1:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.01)
    with admin.connect() as conn:
        conn.execute(sa.text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = :d AND application_name = 'tongguan-ingest'"), {"d": name})
    time.sleep(3)
    with admin.connect() as conn:
        conn.execute(sa.text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
    thread.join(120)
    assert not thread.is_alive()
    stats = result["stats"]
    assert stats.db_retries >= 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("consumption paused" in m for m in messages)
    assert any("consumption resumed" in m for m in messages)
    assert stats.stored_readings == 2000 and stats.dead_lettered == 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(DISTINCT event_id) FROM readings")).scalar() == 2000
