"""Per-record isolation in the live detector, against the real database and broker: a record
that raises while it is decoded or scored is dead-lettered (``internal_error``, with the
exception) and never stops the detector; arbitrary bytes and JSON never make it raise."""

import json
import uuid
from collections import namedtuple
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from analytics.live import DetectConfig, DetectWorker

pytestmark = pytest.mark.integration

GZ = {"county": "440106", "city": "440100", "province": "440000", "grid_id": None}
Rec = namedtuple("Rec", "topic partition offset value key timestamp")


def locate(device, _lon, _lat):
    if device.startswith("boom"):  # the region index failing on one device (a bug to isolate)
        raise ZeroDivisionError("cannot place this device")
    return GZ


def reading(sensor, metric, value, ts, unit="%LEL"):
    return orjson.dumps({"schema": "reading/1", "event_id": str(uuid.uuid4()), "sensor_id": sensor, "metric": metric,
                         "value": value, "unit": unit, "ts": ts.isoformat(), "lon": 113.33, "lat": 23.13})


def _deadletters(settings):
    from kafka import KafkaConsumer

    c = KafkaConsumer(settings.topic("deadletter"), bootstrap_servers=settings.kafka_bootstrap,
                      auto_offset_reset="earliest", consumer_timeout_ms=3000, enable_auto_commit=False)
    out = [orjson.loads(r.value) for r in c]
    c.close()
    return out


def test_a_record_that_raises_is_dead_lettered_and_detection_goes_on(settings, engine):
    from kafka import KafkaProducer

    t0 = datetime.now(UTC) - timedelta(minutes=40)
    values = [0.5] * 5 + [12, 12, 22, 30, 55, 55, 55] + [0.5] * 20
    p = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for i, v in enumerate(values):
        p.send(settings.topic("readings"), key=b"gas-1", value=reading("gas-1", "gas_lel", v, t0 + timedelta(minutes=i)))
        if i == 8:
            p.send(settings.topic("readings"), key=b"gas-1",  # same partition, between good records
                   value=reading("boom-1", "gas_lel", 30, t0 + timedelta(minutes=i)))
    p.flush()
    p.close()
    w = DetectWorker(settings, DetectConfig(until_idle=True, idle_polls=40, poll_timeout_ms=100, load_models=False),
                     engine=engine, locate=locate)
    stats = w.run()
    assert stats["internal_errors"] == 1 and stats["readings"] == len(values)
    with engine.connect() as conn:
        got = conn.execute(sa.text("SELECT level, status FROM alerts WHERE source = 'rule:gas-leak'")).all()
    assert got == [("red", "resolved")]  # the records after the bad one were scored
    (dead,) = [d for d in _deadletters(settings) if d["worker"] == w.worker_id]
    assert dead["reason"] == "internal_error" and dead["exception"]["type"] == "ZeroDivisionError"
    assert dead["exception"]["stage"] == "detect" and b"boom-1" in __import__("base64").b64decode(dead["original_b64"])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
reading_like = st.fixed_dictionaries({"schema": st.sampled_from(["reading/1", "readings/1", "video_event/1"])},
                                     optional={"sensor_id": st.text(), "metric": st.sampled_from(["gas_lel", "x"]),
                                               "value": json_values, "ts": st.text() | json_values,
                                               "lon": json_values, "lat": json_values, "readings": json_values,
                                               "camera_id": json_values, "type": json_values})
# json.dumps, not orjson: integers past 64 bits and NaN/Infinity tokens are part of the fuzz
poison = st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()) | reading_like.map(
    lambda d: json.dumps(d).encode())


@pytest.fixture
def bare_worker(settings, engine):
    """A detector without a consumer: records handed to it directly (the fuzzed path)."""
    from kafka import KafkaProducer

    from tongguan.consumer import DeadLetterSink

    w = DetectWorker(settings, DetectConfig(load_models=False), engine=engine, locate=locate)
    w.core = w._new_core()
    w.producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    w.dead = DeadLetterSink(w.producer, settings.topic("deadletter"), w.worker_id)
    yield w
    w.producer.close()


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(poison, min_size=1, max_size=5), topic=st.sampled_from(["readings", "video"]))
def test_arbitrary_messages_never_stop_the_detector(bare_worker, settings, values, topic):
    from ingest import parse_message

    w = bare_worker
    now = datetime.now(UTC)
    good_id = f"good-{uuid.uuid4().hex[:6]}"
    recs = [Rec(settings.topic(topic), 0, i, v, None, None) for i, v in enumerate(values)]
    recs.append(Rec(settings.topic("readings"), 0, len(values), reading(good_id, "gas_lel", 0.5, now), None, None))
    before = dict(w.stats)
    w._process(recs, parse_message)
    w._flush({})
    w.dead.flush()
    assert good_id in w.core.sensors  # the good record after the poison was scored
    assert w.stats["messages"] - before["messages"] == len(recs)


def test_a_refused_offset_commit_does_not_stop_the_detector(settings, engine, monkeypatch):
    """Put out of its group (a slow iteration, a rebalance), the detector's commit raises
    CommitFailedError: it goes on, and what follows is scored (its offsets are in the database)."""
    from kafka import KafkaProducer
    from kafka.errors import CommitFailedError

    t0 = datetime.now(UTC) - timedelta(minutes=40)
    p = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for i in range(30):
        p.send(settings.topic("readings"), key=b"gas-2", value=reading("gas-2", "gas_lel", 0.5, t0 + timedelta(minutes=i)))
    p.flush()
    p.close()
    w = DetectWorker(settings, DetectConfig(until_idle=True, idle_polls=40, poll_timeout_ms=100, load_models=False,
                                            batch_size=10),
                     engine=engine, locate=locate)
    connect, refused = w._connect, []

    def connect_then_refuse_the_first_commit():
        out = connect()
        commit = w.consumer.commit

        def once(*a, **kw):
            if not refused:
                refused.append(1)
                raise CommitFailedError("member was removed from the group")
            return commit(*a, **kw)

        w.consumer.commit = once
        return out

    monkeypatch.setattr(w, "_connect", connect_then_refuse_the_first_commit)
    stats = w.run()
    assert refused and stats["readings"] == 30
    assert "commit refused" in (w.progress.last_error or "")
