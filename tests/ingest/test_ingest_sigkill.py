"""Nothing lost, nothing doubled: SIGKILL the worker mid-stream, restart it, reconcile exactly."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from kafka import KafkaProducer

pytestmark = pytest.mark.integration

TONGGUAN = str(Path(sys.executable).with_name("tongguan"))


def _env(settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGGUAN_")}
    env.update(TONGGUAN_DATABASE_URL=settings.database_url, TONGGUAN_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
               TONGGUAN_TOPIC_PREFIX=settings.topic_prefix, TONGGUAN_PARTITIONS=str(settings.partitions),
               TONGGUAN_HOME=str(settings.home))
    return env


def test_sigkill_mid_stream_then_restart_reconciles_exactly(settings, engine):
    n_single, n_batches, per_batch = 12_000, 120, 50
    base = datetime.now(timezone.utc) - timedelta(hours=1)
    p = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=20)
    produced = 0
    for i in range(n_single):
        sid = f"tl-{i % 300}"
        r = {"schema": "reading/1", "event_id": f"k-{i}", "sensor_id": sid, "metric": "temperature",
             "value": 20 + (i % 10), "unit": "degC", "ts": (base + timedelta(milliseconds=250 * i)).isoformat(),
             "lon": 113.26 + (i % 50) * 0.002, "lat": 23.13}
        p.send(settings.topic("readings"), key=sid.encode(), value=orjson.dumps(r))
        produced += 1
    for b in range(n_batches):
        rs = [{"event_id": f"g-{b}-{j}", "sensor_id": f"gs-{j}", "metric": "noise", "value": 50.0 + j % 7,
               "unit": "dB(A)", "ts": (base + timedelta(seconds=b, milliseconds=j)).isoformat(),
               "lon": 113.36, "lat": 23.12} for j in range(per_batch)]
        p.send(settings.topic("readings"), key=f"gw-{b % 5}".encode(),
               value=orjson.dumps({"schema": "readings/1", "gateway_id": f"gw-{b % 5}", "readings": rs}))
        produced += per_batch
    p.flush()
    p.close()

    def stored() -> int:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM readings")).scalar()

    first = subprocess.Popen([TONGGUAN, "ingest", "--batch-size", "300"], env=_env(settings),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while stored() < produced // 4:
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the worker stored nothing in 120 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    at_kill = stored()
    assert 0 < at_kill < produced, "the kill must land mid-stream"

    second = subprocess.run([TONGGUAN, "ingest", "--until-idle", "--batch-size", "2000"], env=_env(settings),
                            capture_output=True, timeout=240)
    assert second.returncode == 0, second.stderr.decode()[-2000:]
    stats = json.loads(second.stdout.decode().strip().splitlines()[-1])
    assert stats["dead_lettered"] == 0
    with engine.connect() as conn:
        total, distinct = conn.execute(sa.text("SELECT count(*), count(DISTINCT event_id) FROM readings")).one()
        rolled = conn.execute(sa.text("SELECT sum(n) FROM reading_rollups_minute WHERE adcode = '440000'")).scalar()
    assert (total, distinct, rolled) == (produced, produced, produced)
    assert stats["stored_readings"] == produced - at_kill
