"""`tongguan simulate` end to end: ground truth in sim_incidents, a file, its replay, the store."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from ingest.worker import StoreWorker, WorkerConfig

pytestmark = pytest.mark.integration

TONGGUAN = str(Path(sys.executable).with_name("tongguan"))


def _env(settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGGUAN_")}
    env.update(TONGGUAN_DATABASE_URL=settings.database_url, TONGGUAN_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
               TONGGUAN_TOPIC_PREFIX=settings.topic_prefix, TONGGUAN_PARTITIONS=str(settings.partitions),
               TONGGUAN_HOME=str(settings.home))
    return env


def test_simulate_to_file_replay_and_store(settings, engine, tmp_path):
    out, truth = tmp_path / "sim.jsonl", tmp_path / "truth.json"
    common = ["--rate", "5000", "--duration", "2", "--speedup", "1800", "--seed", "11", "--sensors", "300",
              "--cameras", "40"]
    done = subprocess.run([TONGGUAN, "simulate", *common, "--output", str(out), "--truth", str(truth)],
                          env=_env(settings), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    summary = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert summary["messages"] == len(out.read_text().splitlines()) > 0
    incidents = json.loads(truth.read_text())
    assert {"rainstorm", "gas_leak", "traffic_jam", "crowd"} <= {i["type"] for i in incidents}

    done = subprocess.run([TONGGUAN, "simulate", "--replay", str(out), "--rate", "100000"], env=_env(settings),
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    stats = StoreWorker(settings, WorkerConfig(until_idle=True)).run()
    assert stats.consumed == summary["messages"] and stats.dead_lettered == 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM sim_incidents WHERE seed = 11")).scalar() == len(incidents)
        assert conn.execute(sa.text("SELECT count(*) FROM readings")).scalar() == stats.stored_readings > 0
        assert conn.execute(sa.text("SELECT count(*) FROM readings WHERE county = '' OR city = ''")).scalar() == 0
        # Devices are denser in Guangzhou and Shenzhen than in an average city.
        per_city = dict(conn.execute(sa.text("SELECT city, count(*) FROM sensors GROUP BY city")).fetchall())
        assert per_city["440100"] > sum(per_city.values()) / len(per_city)
        assert conn.execute(sa.text("SELECT sum(n) FROM reading_rollups_hour WHERE adcode IN ('440000', '350000')")
                            ).scalar() == stats.stored_readings
        assert conn.execute(sa.text("SELECT count(*) FROM video_events")).scalar() == stats.stored_events > 0
