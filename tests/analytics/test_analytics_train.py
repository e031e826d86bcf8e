"""`tongguan analytics train` on stored readings: versioned files plus the models table, loaded by
the live detector and by `analytics detect`."""

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from analytics.registry import latest_models
from tongguan.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(settings, tmp_path, monkeypatch):
    from tongguan.settings import get_settings

    monkeypatch.setenv("TONGGUAN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TONGGUAN_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("TONGGUAN_HOME", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def store_readings(engine, n_sensors=3, minutes=2100):
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=minutes)
    rng = np.random.default_rng(0)
    rows = []
    for s in range(n_sensors):
        t = start + np.arange(minutes) * timedelta(minutes=1)
        v = 3 + 0.2 * np.sin(np.arange(minutes) / 229.0) + rng.normal(0, 0.03, minutes)
        rows += [dict(ts=ti, event_id=f"e{s}-{i}", sensor_id=f"wl-{s}", metric="water_level", value=float(vi),
                      county="440106", city="440100", province="440000", lon=113.3, lat=23.1)
                 for i, (ti, vi) in enumerate(zip(t, v))]
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT ingest_ensure_readings_partitions(CAST(:a AS date), CAST(:b AS date))"),
                     {"a": start.date(), "b": now.date() + timedelta(days=1)})
        conn.execute(sa.text("""INSERT INTO readings (ts, event_id, sensor_id, metric, value, county, city, province,
                                geom, src_topic, src_partition, src_offset, ingested_at)
                                VALUES (:ts, :event_id, :sensor_id, :metric, :value, :county, :city, :province,
                                ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 'test', 0, 0, now())"""), rows)


def test_train_registers_versions_and_detectors_load_them(cli_env, engine, capsys, tmp_path):
    store_readings(engine)
    assert main(["analytics", "train", "--days", "2", "--metric", "water_level"]) == 0
    saved = json.loads(capsys.readouterr().out)["saved"]
    kinds = {(s["kind"], s["sensor_id"]) for s in saved}
    assert ("anomaly", "") in kinds and ("anomaly", "wl-0") in kinds and ("forecast", "") in kinds
    assert main(["analytics", "train", "--days", "2", "--metric", "water_level", "--no-per-sensor",
                 "--kind", "anomaly"]) == 0
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT kind, sensor_id, version, path, n_train FROM models "
                                    "WHERE metric = 'water_level' ORDER BY kind, sensor_id, version")).all()
    anomaly_all = [r for r in rows if r[0] == "anomaly" and r[1] == ""]
    assert [r[2] for r in anomaly_all] == [1, 2] and anomaly_all[0][4] == 6300
    assert all((cli_env / r[3]).is_file() for r in rows)
    models = latest_models(engine, cli_env, "anomaly")
    det, version = models[("water_level", "")]
    assert version == 2 and det.n_train_ == 6300
    # the offline scorer picks up the latest version from the files
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text("timestamp,value\n" + "".join(f"{1_780_000_000 + 60 * i},{3 + 0.01 * (i % 3)}\n" for i in range(50)))
    assert main(["analytics", "detect", "--input", str(src), "--output", str(dst), "--metric", "water_level"]) == 0
    assert json.loads(capsys.readouterr().err.strip().splitlines()[-1])["model"] == "anomaly/water_level@v2"


def test_train_without_history_says_what_to_do(cli_env, capsys):
    assert main(["analytics", "train", "--days", "1"]) == 1
    assert "no readings in the last 1 days" in capsys.readouterr().err
