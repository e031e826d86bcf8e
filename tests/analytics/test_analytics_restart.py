"""Restart-safe detection against the real services: the same replayed stream, once through a
detector left alone and once through one SIGKILLed again and again, gives the same alerts —
none extra, none missing, every change published — and the table's own constraints never stop it."""

from datetime import UTC, datetime, timedelta

import orjson
import pytest
import sqlalchemy as sa

from analytics.chaos_bench import alert_snapshot, clear_alerts, compare_alerts, detect_with_kills

pytestmark = pytest.mark.integration


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


def _published(settings) -> list[dict]:
    from kafka import KafkaConsumer

    c = KafkaConsumer(settings.topic("alerts"), bootstrap_servers=settings.kafka_bootstrap,
                      auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=3000,
                      session_timeout_ms=6000, heartbeat_interval_ms=1000)
    out = [orjson.loads(r.value) for r in c]
    c.close()
    return out


@pytest.mark.timeout(900)  # a replayed stream, detected twice, one of them killed again and again
def test_sigkilled_detector_gives_the_alerts_of_a_clean_run(settings, engine):
    produced = _store_stream(settings, engine, seed=11, hours=3.0, sensors=400, cameras=40)

    clean = detect_with_kills(settings, engine, group="clean", kills=0)
    expected = alert_snapshot(engine)
    assert len(expected) >= 10, "the stream must raise alerts to compare"
    published_clean = {m["id"] for m in _published(settings)}

    clear_alerts(engine)
    # a restart rejoins the group and rebuilds state: a liveness bound, not a speed claim
    killed = detect_with_kills(settings, engine, group="killed", kills=5, total=produced, progress_timeout=180.0)
    got = alert_snapshot(engine)
    print(f"clean: {len(expected)} alerts, {clean}; after 5 kills: {len(got)} alerts, {killed}")

    assert compare_alerts(expected, got) == {"extra": [], "missing": [], "differing": []}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alert_outbox")).scalar() == 0
    assert killed["kills"] >= 3, "the kills must have landed mid-stream"
    assert killed["stats"]["messages"] < clean["stats"]["messages"]
    # every alert the table holds was published under its id, with its final status
    ids, published = {v["id"] for v in got.values()}, {}
    for m in _published(settings):  # in order per partition, and an alert stays on one
        if m["id"] in ids or m["id"] not in published_clean:
            published[m["id"]] = m["status"]
    assert {v["id"]: v["status"] for v in got.values()} == published
