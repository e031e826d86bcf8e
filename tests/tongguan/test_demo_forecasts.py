"""The demo shows forecasts: its setup step trains and registers them on the demo's own history,
and the live detector, with the models it loads at start, pre-warns of the simulator's flood."""

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from tongguan.demo import DEMO_SIM, ensure_forecasts

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)  # a simulated day of 2,000 sensors, trained, then an hour streamed: slow on a busy machine
def test_demo_setup_trains_forecasts_and_the_detector_prewarns_the_flood(engine, tmp_path):
    from analytics.engine import DetectorCore
    from analytics.evaluate import evaluate
    from analytics.live import load_models
    from ingest.cli import tick_interval
    from ingest.simulator import Simulator, counties_from_db

    counties = counties_from_db(engine)
    now = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    saved = ensure_forecasts(engine, tmp_path, now=now, counties=counties)
    assert {s["metric"] for s in saved} >= {"ponding_depth", "water_level"}
    assert all(s["kind"] == "forecast" and s["version"] == 1 for s in saved)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT metric, path FROM models WHERE kind = 'forecast'")).all()
    assert len(rows) == len(saved) and all((tmp_path / path).is_file() for _, path in rows)
    assert ensure_forecasts(engine, tmp_path, now=now, counties=counties) == []  # once: a rerun skips it

    # what `tongguan detect` loads at start, in the detection core it runs, over the demo stream's
    # first hour (its seed, devices, counties and reading interval)
    _, forecasters, _ = load_models(engine, tmp_path)
    assert {m for m, _ in forecasters} >= {"ponding_depth", "water_level"}
    opened = []

    class RecordingCore(DetectorCore):
        def drain(self):
            changes = super().drain()
            opened.extend(ch.alert for ch in changes if ch.action == "opened")
            return changes

    report = evaluate(seed=DEMO_SIM["seed"], days=1 / 24, sensors=DEMO_SIM["sensors"], cameras=DEMO_SIM["cameras"],
                      interval_s=tick_interval(DEMO_SIM["sensors"], DEMO_SIM["rate"], DEMO_SIM["speedup"]),
                      start=now, train_days=0, counties=counties,
                      # the anomaly detectors play no part in a forecast; off, the test runs in half the time
                      core_factory=lambda locate: RecordingCore(locate=locate, forecasters=forecasters,
                                                                anomalies=False))
    flood = report["types"]["rainstorm"]
    assert flood["detected"] == flood["incidents"] == 1
    interval = tick_interval(DEMO_SIM["sensors"], DEMO_SIM["rate"], DEMO_SIM["speedup"])
    storm = next(i for i in Simulator(seed=DEMO_SIM["seed"], counties=counties, start=now, duration_s=3600,
                                      interval_s=interval, sensors=DEMO_SIM["sensors"],
                                      cameras=DEMO_SIM["cameras"]).incidents if i.type == "rainstorm")
    first_rule = {}
    for a in opened:
        if a.source.startswith("rule:"):
            first_rule.setdefault(a.subject, a.first_seen)
    # a forecast pre-warning (预警) on a sensor of the flood, with its lead time ("in N minutes"),
    # raised before that sensor's own rule alert: the crossing it predicted came, later
    prewarned = [a for a in opened if a.source.startswith("model:forecast/") and a.subject[7:] in storm.sensor_ids
                 and a.detail["minutes"] > 0 and a.first_seen < first_rule.get(a.subject, -1)]
    assert prewarned, [(a.source, a.subject, a.first_seen) for a in opened if "forecast" in a.source]
    assert all(a.level and a.detail["kind"] == "forecast" and "分钟内超过" in a.title for a in prewarned)
