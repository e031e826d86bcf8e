"""``tongguan bench latency``: from a reading being produced to its alert being on ``city.alerts``.

Everything real and on this machine: the live detector runs as its own process (``tongguan
detect``) against the broker and a throw-away database; this process produces background
readings at ``rate``/s (normal temperatures from 2,000 sensors: every one passes through the rules
and the anomaly detectors, none alerts), and every so often a probe — a gas reading at 60 %LEL
from a new sensor, which the gas rule turns into a red alert at once. The latency of a probe is
the time from just before its ``send`` to the moment its alert is read back from ``city.alerts``
by a consumer in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

import numpy as np
import orjson
import sqlalchemy as sa

from analytics.errors import AnalyticsError

BACKGROUND_SENSORS = 2000


def _reading(sensor: str, metric: str, value: float, unit: str, lon: float, lat: float) -> bytes:
    return orjson.dumps({"schema": "reading/1", "event_id": str(uuid.uuid4()), "sensor_id": sensor, "metric": metric,
                         "value": value, "unit": unit, "ts": datetime.now(UTC).isoformat(),
                         "lon": lon, "lat": lat})


def scratch_db(services) -> tuple[str, str]:
    from tongguan.db import upgrade

    name = f"tg_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(sa.make_url(services.database_url).set(database="postgres"),
                             isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.make_url(services.database_url).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    return name, url


def drop_db(services, name: str) -> None:
    admin = sa.create_engine(sa.make_url(services.database_url).set(database="postgres"),
                             isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


class _Producer:
    """confluent-kafka's producer when installed (a C client: the load generator must not be the
    bottleneck), else kafka-python's."""

    def __init__(self, bootstrap: str):
        try:
            from confluent_kafka import Producer

            self._p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "acks": 1,
                                "queue.buffering.max.messages": 1_000_000})
            self.kind = "confluent-kafka"
        except ImportError:
            from kafka import KafkaProducer

            self._p = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=2, batch_size=256 * 1024)
            self.kind = "kafka-python"

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        if self.kind == "confluent-kafka":
            while True:
                try:
                    self._p.produce(topic, value=value, key=key)
                    break
                except BufferError:
                    self._p.poll(0.01)
            self._p.poll(0)
        else:
            self._p.send(topic, key=key, value=value)

    def flush(self) -> None:
        self._p.flush()

    def close(self) -> None:
        self.flush()
        if self.kind != "confluent-kafka":
            self._p.close()


def run_latency_bench(settings, services, *, rate: float = 5000.0, duration: float = 30.0, probes: int = 200,
                      workers: int = 1) -> dict:
    from kafka import KafkaConsumer

    from tongguan.services import ensure_topics
    from tongguan.settings import TOPICS

    prefix = f"bench{uuid.uuid4().hex[:6]}."
    bench = settings.model_copy(update={"topic_prefix": prefix, "database_url": services.database_url,
                                        "kafka_bootstrap": services.kafka_bootstrap})
    ensure_topics(bench.kafka_bootstrap, bench.partitions, tuple(bench.topic(t) for t in TOPICS))
    db_name, db_url = scratch_db(services)
    env = {**os.environ, "TONGGUAN_DATABASE_URL": db_url, "TONGGUAN_KAFKA_BOOTSTRAP": bench.kafka_bootstrap,
           "TONGGUAN_TOPIC_PREFIX": prefix, "TONGGUAN_PARTITIONS": str(bench.partitions)}
    detectors = [subprocess.Popen([sys.executable, "-m", "tongguan.cli", "detect", "--warm-hours", "0"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(workers)]
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    stop = threading.Event()
    alerts_topic = bench.topic("alerts")

    def read_alerts():
        consumer = KafkaConsumer(alerts_topic, bootstrap_servers=bench.kafka_bootstrap, group_id=prefix + "bench",
                                 auto_offset_reset="earliest", fetch_max_wait_ms=5, session_timeout_ms=6000,
                                 heartbeat_interval_ms=1000)
        try:
            while not stop.is_set():
                for recs in consumer.poll(timeout_ms=50).values():
                    now = time.time()
                    for r in recs:
                        msg = orjson.loads(r.value)
                        sid = msg.get("subject", "")[7:]
                        if sid.startswith("probe-") and msg["action"]["action"] == "opened":
                            got.setdefault(sid, now)
        finally:
            consumer.close()

    producer = _Producer(bench.kafka_bootstrap)
    topic = bench.topic("readings")
    rng = np.random.default_rng(0)
    lon = 113.2 + rng.random(BACKGROUND_SENSORS) * 0.3
    lat = 23.0 + rng.random(BACKGROUND_SENSORS) * 0.2
    background = {"sent": 0}

    def load():
        t0 = time.monotonic()
        k = 0
        while not stop.is_set():
            i = k % BACKGROUND_SENSORS
            sid = f"bench-temp-{i:05d}"
            producer.send(topic, key=sid.encode(), value=_reading(sid, "temperature", round(24 + rng.normal(0, 0.3), 3),
                                                                  "degC", float(lon[i]), float(lat[i])))
            k += 1
            if k % 200 == 0:
                ahead = k / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        background["sent"] = k
        background["seconds"] = time.monotonic() - t0

    reader = threading.Thread(target=read_alerts, daemon=True)
    reader.start()
    try:
        # Wait for the detector to join its group and answer a first probe.
        deadline = time.monotonic() + 120
        while "probe-warmup" not in got:
            if any(d.poll() is not None for d in detectors):
                raise AnalyticsError("a detector process exited early; run `tongguan detect` to see why")
            if time.monotonic() > deadline:
                raise AnalyticsError("no alert for the warm-up probe within 120 s; is the broker healthy?")
            # one warm-up probe per partition, so every detector process has joined and answered
            for p in range(bench.partitions):
                sid = f"probe-warmup-{p}"
                sent[sid] = time.time()
                producer.send(topic, key=sid.encode(), value=_reading(sid, "gas_lel", 60.0, "%LEL", 113.3, 23.1))
            producer.flush()
            time.sleep(2.0)
            if all(f"probe-warmup-{p}" in got for p in range(bench.partitions)):
                got["probe-warmup"] = time.time()
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(min(3.0, duration / 5))  # the load reaches its steady state first
        gap = duration / probes
        for k in range(probes):
            sid = f"probe-{k:05d}"
            msg = _reading(sid, "gas_lel", 60.0, "%LEL", 113.3 + 0.001 * (k % 100), 23.1)
            sent[sid] = time.time()
            producer.send(topic, key=sid.encode(), value=msg)
            time.sleep(gap)
        wait_until = time.monotonic() + 10
        while time.monotonic() < wait_until and sum(1 for s in sent if s in got) < len(sent):
            time.sleep(0.1)
    finally:
        stop.set()
        for d in detectors:
            d.terminate()
        for d in detectors:
            try:
                d.wait(timeout=15)
            except subprocess.TimeoutExpired:
                d.kill()
        producer.close()
        reader.join(timeout=5)
        drop_db(services, db_name)
    lat_ms = np.array([1000 * (got[s] - sent[s]) for s in sent if s.startswith("probe-0") and s in got])
    missing = sum(1 for s in sent if s.startswith("probe-0") and s not in got)
    if not len(lat_ms):
        raise AnalyticsError("no probe alert arrived; see `tongguan detect` logs")
    achieved = background["sent"] / max(background.get("seconds", duration), 1e-9)
    return {"probes": len(lat_ms), "missing": missing, "background_rate_target": rate,
            "background_rate_achieved": round(achieved), "background_readings": background["sent"],
            "p50_ms": round(float(np.percentile(lat_ms, 50)), 1), "p95_ms": round(float(np.percentile(lat_ms, 95)), 1),
            "p99_ms": round(float(np.percentile(lat_ms, 99)), 1), "max_ms": round(float(lat_ms.max()), 1),
            "target_p95_ms": 1000, "detector_processes": workers, "producer": producer.kind}
