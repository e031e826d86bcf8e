"""A batch the consumer cannot decode never stops it (tongguan.consumer.poll_past_undecodable),
against the real broker. The undecodable batches are real: zstd-compressed by librdkafka, read by a
kafka-python consumer made unable to undo zstd (as it is when the codec library is missing)."""

import time
import uuid

import orjson
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tongguan.consumer import poll_past_undecodable

pytestmark = pytest.mark.integration


@pytest.fixture
def no_zstd(monkeypatch):
    import kafka.codec

    monkeypatch.setattr(kafka.codec, "zstd", None)


def _produce(bootstrap: str, topic: str, layout: dict[int, list[tuple[str, int]]]) -> tuple[dict, set]:
    """Per partition, runs of ("good", n) plain records and ("bad", n) records in zstd batches.
    Returns the good values per partition, in order, and the (partition, offset)s of the bad ones."""
    from confluent_kafka import Producer

    plain = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    packed = Producer({"bootstrap.servers": bootstrap, "compression.type": "zstd", "linger.ms": 100})
    good: dict[int, list[bytes]] = {p: [] for p in layout}
    bad: set[tuple[int, int]] = set()
    for partition, runs in layout.items():
        for kind, n in runs:
            producer = plain if kind == "good" else packed
            for _ in range(n):
                # compressible, so librdkafka compresses even a batch of one (it sends a batch
                # plain when compression would not make it smaller)
                value = orjson.dumps({"kind": kind, "id": uuid.uuid4().hex, "pad": "x" * 2000})

                def done(err, msg, kind=kind, value=value):
                    assert err is None, err
                    if kind == "bad":
                        bad.add((msg.partition(), msg.offset()))

                producer.produce(topic, value, partition=partition, on_delivery=done)
                if kind == "good":
                    good[partition].append(value)
            assert producer.flush(30) == 0  # runs stay in order within the partition
    return good, bad


def _consume_all(bootstrap: str, topic: str):
    from kafka import KafkaConsumer, TopicPartition

    # Assigned, not subscribed: a group join is not what this test is about.
    c = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                      fetch_max_wait_ms=50)
    c.assign([TopicPartition(topic, p) for p in (0, 1)])
    got: dict[int, list[bytes]] = {}
    skipped = []
    empty = 0
    deadline = time.monotonic() + 60
    try:
        while empty < 30:
            assert time.monotonic() < deadline, (
                f"stuck: {[(tp.partition, c.position(tp), c.highwater(tp)) for tp in c.assignment()]} {skipped}")
            polled = poll_past_undecodable(c, skipped.append, timeout_ms=100, max_records=7)
            if not polled and c.assignment() and all(
                    c.highwater(tp) is not None and c.position(tp) >= c.highwater(tp) for tp in c.assignment()):
                empty += 1
            for tp, recs in polled.items():
                got.setdefault(tp.partition, []).extend(r.value for r in recs)
    finally:
        c.close()
    return got, skipped


runs = st.lists(st.tuples(st.sampled_from(["good", "bad"]), st.integers(1, 12)), min_size=1, max_size=5)


@hsettings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(layout=st.fixed_dictionaries({0: runs, 1: runs}))
def test_every_readable_record_arrives_once_and_exactly_the_unreadable_ranges_are_skipped(settings, no_zstd, layout):
    from tongguan.services import ensure_topics

    topic = f"{settings.topic_prefix}undecodable-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings.kafka_bootstrap, 2, (topic,))
    good, bad = _produce(settings.kafka_bootstrap, topic, layout)
    got, skipped = _consume_all(settings.kafka_bootstrap, topic)
    for p in (0, 1):
        want, have = good[p], got.get(p, [])
        assert have == want, (f"partition {p}: {len(have)} read, {len(want)} good; missing "
                              f"{[want.index(v) for v in want if v not in have]}, extra {len(have) - len(set(have))}, "
                              f"layout {layout[p]}, skipped {[(s.first, s.end) for s in skipped if s.partition == p]}, "
                              f"bad {sorted(o for q, o in bad if q == p)}")
    skipped_offsets = {(s.partition, o) for s in skipped for o in range(s.first, s.end)}
    assert skipped_offsets == bad
    assert all(s.topic == topic and "zstd" in s.error.lower() for s in skipped)


def test_an_error_that_is_not_about_the_data_is_raised(settings):
    from kafka import KafkaConsumer

    c = KafkaConsumer(settings.topic("readings"), bootstrap_servers=settings.kafka_bootstrap)
    c.close()
    with pytest.raises(Exception):  # noqa: B017 - whatever a closed consumer raises, it is not swallowed
        poll_past_undecodable(c, lambda s: pytest.fail(f"skipped {s}"), timeout_ms=10)


def test_the_detector_dead_letters_an_undecodable_batch_and_scores_what_follows(settings, engine, no_zstd):
    from datetime import UTC, datetime, timedelta

    from confluent_kafka import Producer
    from kafka import KafkaConsumer

    from analytics.live import DetectConfig, DetectWorker

    t0 = datetime.now(UTC) - timedelta(minutes=30)

    def reading(i):
        return orjson.dumps({"schema": "reading/1", "event_id": str(uuid.uuid4()), "sensor_id": "wl-z",
                             "metric": "water_level", "value": 1.0 + i / 100, "unit": "m",
                             "ts": (t0 + timedelta(minutes=i)).isoformat(), "lon": 113.33, "lat": 23.13})

    topic = settings.topic("readings")
    plain = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 0})
    packed = Producer({"bootstrap.servers": settings.kafka_bootstrap, "compression.type": "zstd", "linger.ms": 100})
    for producer, (lo, hi) in ((plain, (0, 5)), (packed, (5, 10)), (plain, (10, 15))):
        for i in range(lo, hi):
            producer.produce(topic, reading(i), key=b"wl-z")
        assert producer.flush(30) == 0
    w = DetectWorker(settings, DetectConfig(until_idle=True, idle_polls=40, poll_timeout_ms=100, load_models=False),
                     engine=engine, locate=lambda *_: {"county": "440106", "city": "440100", "province": "440000",
                                                       "grid_id": None})
    stats = w.run()
    assert (stats["readings"], stats["skipped_offsets"]) == (10, 5)
    c = KafkaConsumer(settings.topic("deadletter"), bootstrap_servers=settings.kafka_bootstrap,
                      auto_offset_reset="earliest", consumer_timeout_ms=3000, enable_auto_commit=False)
    dead = [orjson.loads(r.value) for r in c]
    c.close()
    (d,) = [d for d in dead if d["worker"] == w.worker_id]
    assert d["reason"] == "undecodable_batch" and d["skipped"]["count"] == 5
    assert d["source"]["topic"] == topic and "zstd" in d["detail"].lower()
