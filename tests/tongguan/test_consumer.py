"""The shared consumer machinery (tongguan.consumer): isolation, dead-letter envelopes, lag from
the high watermark, stall and wedge detection on the real broker, heartbeats and health."""

import base64
import time
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import sqlalchemy as sa

from tongguan.consumer import (EXIT_STALLED, INTERNAL_ERROR, Progress, RecordFailure, WorkerStalled,
                               deadletter_envelope, isolated, partition_lag, record_heartbeat, run_worker,
                               worker_health)


# -- pure functions ------------------------------------------------------------------------------
def test_isolated_turns_an_exception_into_a_failure_and_lets_interrupts_through():
    failures = []
    assert isolated(lambda raw: raw.decode()["x"], b"{}", stage="decode", on_failure=failures.append) is None
    (f,) = failures
    assert (f.reason, f.stage, f.exc_type) == (INTERNAL_ERROR, "decode", "TypeError")
    assert "test_consumer.py" in f.where and f.detail.startswith("decode: TypeError: ")
    assert isolated(lambda x: x + 1, 1, stage="s", on_failure=failures.append) == 2 and len(failures) == 1

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        isolated(interrupted, stage="s", on_failure=failures.append)


class _Rec:
    def __init__(self, value):
        self.value, self.topic, self.partition, self.offset, self.timestamp, self.key = value, "t", 1, 42, 7, b"k"


def test_run_worker_prints_the_stats_and_exits_75_when_the_worker_stalls(capsys):
    assert run_worker("ingest", lambda: {"stored": 3}, lambda: {}) == 0
    assert orjson.loads(capsys.readouterr().err) == {"stored": 3}

    def stalls():
        raise WorkerStalled("no commit for 60 s although 12 messages wait")

    assert run_worker("detect", stalls, lambda: {"scored": 1}) == EXIT_STALLED == 75
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "tongguan detect: no commit for 60 s although 12 messages wait"
    assert orjson.loads(err[1]) == {"scored": 1}


def test_deadletter_envelope_keeps_any_original_and_never_fails_to_encode():
    raw = b"\xff\xfe\x00 not utf-8 " + bytes(range(256))
    value, headers = deadletter_envelope(_Rec(raw), reason="internal_error", detail="x", worker="w",
                                         item={"nested": [1, {"deep": "\x00"}]}, extra={"exception": {"type": "E"}})
    env = orjson.loads(value)
    assert base64.b64decode(env["original_b64"]) == raw and env["original_size"] == len(raw)
    assert env["source"] == {"topic": "t", "partition": 1, "offset": 42, "timestamp": 7}
    assert env["exception"] == {"type": "E"} and env["item"]["nested"][1]["deep"] == "\x00"
    assert dict(headers)["reason"] == b"internal_error" and dict(headers)["source_offset"] == b"42"
    huge = b"x" * (300 * 1024)
    env = orjson.loads(deadletter_envelope(_Rec(huge), reason="r", detail="d", worker="w")[0])
    assert env["original_truncated"] and env["original_size"] == len(huge)
    assert len(base64.b64decode(env["original_b64"])) == 256 * 1024
    assert orjson.loads(deadletter_envelope(_Rec(None), reason="r", detail="d", worker="w")[0])["original_size"] == 0


def test_worker_health_is_red_for_lag_without_commits_or_a_stale_heartbeat():
    now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    ago = lambda s: now - timedelta(seconds=s)  # noqa: E731
    row = {"worker": "store:h:1", "role": "store", "started_at": ago(600), "last_seen": ago(2),
           "last_commit_at": ago(5), "lag": 1000, "state": "ok", "stall_after_s": 60.0}
    assert worker_health(row, now=now)["health"] == "green"
    stalled = worker_health({**row, "last_commit_at": ago(90)}, now=now)
    assert stalled["health"] == "red" and stalled["reasons"] == ["lag 1000 but no commit for 90 s"]
    assert worker_health({**row, "last_commit_at": ago(90), "lag": 0}, now=now)["health"] == "green"
    assert worker_health({**row, "last_commit_at": ago(90)}, now=now, stall_after_s=120)["health"] == "green"
    assert worker_health({**row, "last_seen": ago(300)}, now=now)["reasons"] == ["no heartbeat for 300 s"]
    assert worker_health({**row, "state": "wedged"}, now=now)["reasons"] == ["worker reports wedged"]
    never = worker_health({**row, "last_commit_at": None}, now=now)  # lag since start, 600 s, no commit
    assert never["health"] == "red" and never["last_commit_age_s"] is None


# -- on the real broker --------------------------------------------------------------------------


def _topic(settings, partitions=1) -> str:
    from tongguan.services import ensure_topics

    name = f"{settings.topic_prefix}consumer-{uuid.uuid4().hex[:6]}"
    ensure_topics(settings.kafka_bootstrap, partitions, (name,))
    return name


def _produce_batched(settings, topic, n):
    """librdkafka batches (as every real gateway client does)."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 200, "batch.num.messages": 1000})
    for i in range(n):
        p.produce(topic, key=b"k", value=orjson.dumps({"i": i}), partition=0)
    assert p.flush(30) == 0


@pytest.mark.integration
def test_lag_from_the_high_watermark_sees_what_end_offsets_hides(settings):
    from kafka import KafkaConsumer, TopicPartition

    topic = _topic(settings)
    _produce_batched(settings, topic, 500)
    tp = TopicPartition(topic, 0)
    c = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None)
    try:
        c.assign([tp])
        c.seek_to_beginning(tp)
        got = 0
        deadline = time.monotonic() + 30
        while got < 100 and time.monotonic() < deadline:
            got += sum(len(v) for v in c.poll(timeout_ms=500, max_records=100 - got).values())
        assert got == 100 and c.position(tp) == 100
        assert partition_lag(c, [tp]) == 400
        # What the old lag saw: ListOffsets answers the last batch's base offset + 1.
        assert c.end_offsets([tp])[tp] < 500
    finally:
        c.close()


@pytest.mark.integration
def test_progress_says_stalled_for_the_holder_and_wedged_for_the_spare_when_nobody_commits(settings):
    """One consumer of a group holds the partition, another of the same group has nothing assigned,
    messages wait, nobody commits: the holder is stalled, the other sees a wedged group; once the
    holder commits, the other is only a spare.

    The holder's partition is assigned by hand and the spare never subscribes, so no rebalance can
    move the partition mid-test (with two subscribed members the broker sometimes rebalances and,
    for a while, neither holds it: the test would then observe the group's wedge, not the roles).
    Both read and commit through the group's offsets, which is all ``Progress`` looks at."""
    from kafka import KafkaConsumer, TopicPartition

    topic = _topic(settings)
    _produce_batched(settings, topic, 50)
    group = f"{settings.topic_prefix}g"
    tp = TopicPartition(topic, 0)
    common = dict(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False,
                  auto_offset_reset="earliest")
    holder, spare = KafkaConsumer(**common), KafkaConsumer(**common)
    try:
        holder.assign([tp])
        got = 0
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            got = sum(len(v) for v in holder.poll(timeout_ms=500, max_records=1).values())
        assert got == 1 and spare.assignment() == set()
        p_holder = Progress("t", "holder", stall_after_s=2.0, wedge_after_s=2.0)
        p_spare = Progress("t", "spare", stall_after_s=2.0, wedge_after_s=2.0)
        # Nothing commits: within a few of the 2 s bounds the roles show.
        states = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and states != {("holder", "stalled"), ("spare", "wedged")}:
            states = {("holder", p_holder.observe(holder, [topic])), ("spare", p_spare.observe(spare, [topic]))}
            time.sleep(0.2)
        assert states == {("holder", "stalled"), ("spare", "wedged")}
        assert p_holder.lag == 49 and p_spare.lag > 0
        # Once the holder commits, the spare is only a spare: the group makes progress.
        holder.commit()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and p_spare.state == "wedged":
            p_spare.observe(spare, [topic])
            time.sleep(0.2)
        assert p_spare.state == "idle"
    finally:
        holder.close()
        spare.close()


@pytest.mark.integration
def test_heartbeat_rows_from_psycopg_and_sqlalchemy_carry_progress(db_url, engine):
    import psycopg

    from tongguan.db import normalise_url

    started = datetime.now(timezone.utc)
    p = Progress("store", "store:h:1", stall_after_s=30.0)
    p.lag = 12
    p.committed()
    p.failure(RecordFailure("decode", "ValueError", "bad", "x.py:1 in f"))
    with psycopg.connect(normalise_url(db_url).replace("postgresql+psycopg://", "postgresql://")) as conn:
        record_heartbeat(conn, p, started, {"consumed": 3})
    q = Progress("detect", "detect:h:2")
    q.lag = 5
    q.state = "stalled"
    with engine.begin() as conn:
        record_heartbeat(conn, q, started, {})
    with engine.connect() as conn:
        rows = {r.worker: dict(r._mapping) for r in conn.execute(sa.text(
            "SELECT worker, role, started_at, last_seen, stats, lag, last_commit_at, last_error, last_error_at, "
            "state, stall_after_s FROM worker_heartbeats"))}
    store, detect = rows["store:h:1"], rows["detect:h:2"]
    assert (store["lag"], store["stall_after_s"], store["stats"]["consumed"]) == (12, 30.0, 3)
    assert store["last_error"] == "internal_error: decode: ValueError: bad (at x.py:1 in f)"
    assert store["stats"]["progress"]["internal_errors"] == 1
    assert worker_health(store)["health"] == "green"
    assert worker_health(detect)["health"] == "red" and detect["last_commit_at"] is None
