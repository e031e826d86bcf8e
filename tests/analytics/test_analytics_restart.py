"""Restart-safe detection against the real services: the same replayed stream, once through a
detector left alone and once through one SIGKILLed again and again, gives the same alerts —
none extra, none missing, every change published — and the table's own constraints never stop it."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration

TONGGUAN = str(Path(sys.executable).with_name("tongguan"))
ALERT_TABLES = ("alert_history", "alert_handling", "alert_outbox", "detect_offsets", "alert_rollup",
                "region_alert_status", "alerts")


def _env(settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGGUAN_")}
    env.update(TONGGUAN_DATABASE_URL=settings.database_url, TONGGUAN_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
               TONGGUAN_TOPIC_PREFIX=settings.topic_prefix, TONGGUAN_PARTITIONS=str(settings.partitions),
               TONGGUAN_HOME=str(settings.home))
    return env


def _store_stream(settings, engine, *, seed: int, hours: float, sensors: int, cameras: int) -> int:
    """A simulated stream with incidents on the topics, stored by the real store worker."""
    from ingest.simulator import Simulator, counties_from_db, produce
    from ingest.worker import StoreWorker, WorkerConfig

    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours + 0.5)
    sim = Simulator(seed=seed, counties=counties_from_db(engine), start=start, duration_s=hours * 3600,
                    interval_s=60.0, sensors=sensors, cameras=cameras)
    n = produce(sim.iter_messages(), settings)
    StoreWorker(settings, WorkerConfig(until_idle=True)).run()
    return n


def _detect(settings, group: str, *, until_idle: bool) -> subprocess.Popen:
    args = [TONGGUAN, "detect", "--group-id", group] + (["--until-idle"] if until_idle else [])
    return subprocess.Popen(args, env=_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _alerts(engine) -> dict[tuple, dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, dedupe_key, extract(epoch FROM first_seen), extract(epoch FROM last_seen), level, status, "
            "count FROM alerts")).all()
    return {(r[1], round(float(r[2]), 3)): {"id": r[0], "last_seen": round(float(r[3]), 3), "level": r[4],
                                             "status": r[5], "count": r[6]} for r in rows}


def _published(settings) -> list[dict]:
    from kafka import KafkaConsumer

    c = KafkaConsumer(settings.topic("alerts"), bootstrap_servers=settings.kafka_bootstrap,
                      auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=3000,
                      session_timeout_ms=6000, heartbeat_interval_ms=1000)
    out = [orjson.loads(r.value) for r in c]
    c.close()
    return out


# alert changes written, input offsets stored: either moves when the detector works
PROGRESS = "SELECT (SELECT count(*) FROM alert_history) + (SELECT coalesce(sum(next_offset), 0) FROM detect_offsets)"


def _scalar(engine, sql: str):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


def test_sigkilled_detector_gives_the_alerts_of_a_clean_run(settings, engine):
    _store_stream(settings, engine, seed=11, hours=3.0, sensors=400, cameras=40)

    clean = _detect(settings, "clean", until_idle=True)
    out, err = clean.communicate(timeout=600)
    assert clean.returncode == 0, err.decode()[-3000:]
    clean_stats = json.loads(err.decode().strip().splitlines()[-1])
    expected = _alerts(engine)
    assert len(expected) >= 10, "the stream must raise alerts to compare"
    published_clean = {m["id"] for m in _published(settings)}

    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(ALERT_TABLES)} CASCADE"))
    rng = random.Random(5)
    kills = 0
    while kills < 5:
        p = _detect(settings, "killed", until_idle=False)
        # kill at a random moment once it is working: before, during or after a write
        t_end = time.monotonic() + 60
        before = _scalar(engine, PROGRESS)
        while _scalar(engine, PROGRESS) == before:
            assert p.poll() is None, p.stderr.read().decode()[-3000:]
            assert time.monotonic() < t_end, "the detector made no progress in 60 s"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        p.send_signal(signal.SIGKILL)
        p.wait(30)
        kills += 1
    last = _detect(settings, "killed", until_idle=True)
    out, err = last.communicate(timeout=600)
    assert last.returncode == 0, err.decode()[-3000:]
    stats = json.loads(err.decode().strip().splitlines()[-1])
    got = _alerts(engine)

    print(f"clean: {len(expected)} alerts, {clean_stats}; after {kills} kills: {len(got)} alerts, {stats}")
    extra = sorted(set(got) - set(expected))
    missing = sorted(set(expected) - set(got))
    assert (extra, missing) == ([], []), f"extra {extra}, missing {missing}"
    differ = {k: (expected[k], got[k]) for k in expected
              if (expected[k]["level"], expected[k]["status"]) != (got[k]["level"], got[k]["status"])}
    assert differ == {}
    assert _scalar(engine, "SELECT count(*) FROM alert_outbox") == 0
    assert stats["messages"] < clean_stats["messages"], "the kills must have landed mid-stream"
    # every alert the table holds was published under its id, with its final status
    ids, published = {v["id"] for v in got.values()}, {}
    for m in _published(settings):  # in order per partition, and an alert stays on one
        if m["id"] in ids or m["id"] not in published_clean:
            published[m["id"]] = m["status"]
    assert {v["id"]: v["status"] for v in got.values()} == published
