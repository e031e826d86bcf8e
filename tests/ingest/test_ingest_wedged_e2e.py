"""Issue 12 items 4 and 6, end to end: a real store worker (``tongguan ingest``, a child process as
in production) whose group is wedged — another member holds every partition and never commits
while messages wait — notices, leaves and joins again with a fresh member id, and when that does
not help exits with status 75 for its supervisor, instead of logging ``lag=0`` for ever."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from ingest.chaos import worker_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _hog_assignor():
    """The group member that holds everything: whenever it leads a rebalance, every partition goes
    to itself (a stand-in for a member stuck before its first commit, or the broker's own wedge).
    It speaks the members' common protocol ("range"), so the coordinator picks it."""
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.abstract import ConsumerProtocolAssignment

    class Hog(RangePartitionAssignor):
        @classmethod
        def assign(cls, cluster, members):
            hogs = sorted(m.member_id for m in members if m.member_id.startswith("hog-"))
            topics = sorted({t for m in members for t in m.metadata.topics})
            return {m.member_id: ConsumerProtocolAssignment(
                cls.version, [(t, sorted(cluster.partitions_for_topic(t) or ())) for t in topics]
                if hogs and m.member_id == hogs[0] else [], b"") for m in members}

    return Hog


def _produce(bootstrap: str, topic: str, n: int, tag: str) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    now = datetime.now(UTC).isoformat()
    for i in range(n):
        p.send(topic, key=f"s{i % 5}".encode(), value=orjson.dumps({
            "schema": "reading/1", "event_id": f"w-{tag}-{i}", "sensor_id": f"ws-{i % 5}", "metric": "temperature",
            "value": 21.0, "unit": "degC", "ts": now, "lon": 113.3612, "lat": 23.1247}))
    p.flush()
    p.close()


def test_a_wedged_store_worker_rejoins_with_a_fresh_member_id_then_exits_75(settings_factory, services, tmp_path):
    from kafka import KafkaConsumer

    from tongguan.services import ensure_topics
    from tongguan.settings import TOPICS

    settings = settings_factory(partitions=1)
    ensure_topics(settings.kafka_bootstrap, 1, tuple(settings.topic(t) for t in TOPICS))
    group = settings.topic_prefix + "tongguan-store"
    topics = [settings.topic("readings"), settings.topic("video")]
    hog = KafkaConsumer(*topics, bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                        client_id=f"hog-{uuid.uuid4().hex[:6]}", enable_auto_commit=False,
                        auto_offset_reset="earliest", partition_assignment_strategy=[_hog_assignor()],
                        session_timeout_ms=6000, heartbeat_interval_ms=1000, max_poll_interval_ms=60000)
    stop = threading.Event()

    def hold():  # poll (so it takes part in every rebalance), keep nothing, commit nothing
        while not stop.is_set():
            hog.poll(timeout_ms=200, max_records=1)

    deadline = time.monotonic() + 60
    while not hog.assignment() and time.monotonic() < deadline:
        hog.poll(timeout_ms=200, max_records=1)
    assert hog.assignment(), "the hog holds the partitions before the worker starts"
    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    _produce(settings.kafka_bootstrap, settings.topic("readings"), 50, uuid.uuid4().hex[:6])

    env = {**worker_env(settings), "TONGGUAN_STALL_AFTER_S": "10", "TONGGUAN_WEDGE_AFTER_S": "7"}
    log_path = tmp_path / "worker.log"
    started = time.monotonic()
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "tongguan.cli", "ingest"], env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
            try:
                rc = proc.wait(timeout=400)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                rc = None
    finally:
        stop.set()
        holder.join(10)
        hog.close(autocommit=False)
    text = log_path.read_text(errors="replace")
    assert rc == 75, f"exit {rc} after {time.monotonic() - started:.0f} s:\n{text[-3000:]}"
    rejoins = re.findall(r"joining again with a fresh member id", text)
    assert len(rejoins) >= 3, text[-3000:]  # it tried rejoining first, and said why it gave up
    assert "wedged" in text and "exiting so the supervisor restarts the worker" in text
