"""tongguan.rdkafka: the librdkafka consumer behind kafka-python's interface, on the real broker —
records per partition with kafka-python's names, lag from the high watermark, pause, seek, and
offsets that move only by an explicit commit (a second member of the group resumes there)."""

import time
import uuid

import orjson
import pytest
from kafka.structs import OffsetAndMetadata, TopicPartition

from tongguan.consumer import Progress, partition_lag
from tongguan.rdkafka import RdKafkaConsumer

pytestmark = pytest.mark.integration


def _topic_with(settings, n: int) -> str:
    from confluent_kafka import Producer

    from tongguan.services import ensure_topics

    topic = f"{settings.topic_prefix}rdkafka-{uuid.uuid4().hex[:6]}"
    ensure_topics(settings.kafka_bootstrap, 1, (topic,))
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 50})
    for i in range(n):
        p.produce(topic, key=f"k{i}".encode(), value=orjson.dumps({"i": i}), partition=0,
                  headers=[("h", b"v")])
    assert p.flush(30) == 0
    return topic


def _poll_until(c, n: int, *, max_records: int, timeout_s: float = 30) -> list:
    got: list = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        for tp, recs in c.poll(timeout_ms=300, max_records=min(max_records, n - len(got))).items():
            assert all((r.topic, r.partition) == (tp.topic, tp.partition) for r in recs)
            got.extend(recs)
    return got


def test_records_lag_pause_seek_and_commit_as_with_kafka_python(settings):
    topic = _topic_with(settings, 300)
    tp = TopicPartition(topic, 0)
    group = f"{settings.topic_prefix}rd-{uuid.uuid4().hex[:6]}"
    c = RdKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id=group, client_id="rd-test",
                        session_timeout_ms=6000, max_poll_interval_ms=8000)
    try:
        first = _poll_until(c, 100, max_records=40)
        assert [r.offset for r in first] == list(range(100))
        r = first[7]
        assert (r.key, orjson.loads(r.value), r.headers, r.timestamp > 0) == (b"k7", {"i": 7}, [("h", b"v")], True)
        assert c.assignment() == {tp} and c.position(tp) == 100 and c.highwater(tp) == 300
        assert partition_lag(c, [tp]) == 200
        assert c.committed(tp) is None  # nothing committed by reading: only commit() moves the group
        c.commit({tp: OffsetAndMetadata(100, "", -1)})
        assert c.committed(tp) == 100

        c.pause(tp)
        assert c.paused() == {tp} and c.poll(timeout_ms=500) == {}
        c.resume(tp)
        assert c.paused() == set()
        c.seek(tp, 250)
        rest = _poll_until(c, 50, max_records=100)
        assert [r.offset for r in rest] == list(range(250, 300))
        progress = Progress("store", "rd-test")
        assert progress.observe(c, [topic]) == "idle" and progress.lag == 0
        assert c.partitions_for_topic(topic) == {0} and c.end_offsets([tp])[tp] <= 300
    finally:
        c.close()

    # Another member of the group starts where the commit left it, not where the reading did.
    again = RdKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id=group, client_id="rd-test-2")
    try:
        assert [r.offset for r in _poll_until(again, 1, max_records=1)] == [100]
    finally:
        again.close()


def test_auto_commit_is_refused(settings):
    with pytest.raises(ValueError, match="enable_auto_commit"):
        RdKafkaConsumer("t", bootstrap_servers=settings.kafka_bootstrap, group_id="g", enable_auto_commit=True)


def test_poll_hands_over_what_is_there_without_waiting_for_max_records(settings):
    """kafka-python's poll returns as soon as records are there; librdkafka's consume(n, timeout)
    waits for n or the timeout, which made a store worker at a few hundred messages a second
    sleep through every poll. (A liveness bound far from any speed: 60 s asked, 30 s allowed.)"""
    topic = _topic_with(settings, 5)
    c = RdKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                        group_id=f"{settings.topic_prefix}rd-{uuid.uuid4().hex[:6]}", client_id="rd-test-3")
    try:
        got: list = []
        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline:  # joining the group comes first
            t0 = time.monotonic()
            got = [r for recs in c.poll(timeout_ms=60_000, max_records=1000).values() for r in recs]
        assert got and time.monotonic() - t0 < 30
        got += _poll_until(c, 5 - len(got), max_records=1000)
        assert sorted(r.offset for r in got) == [0, 1, 2, 3, 4]
    finally:
        c.close()
