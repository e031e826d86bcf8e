"""Faults injected into a running pipeline, measured: ``tongguan bench chaos`` and the chaos tests.

Each fault runs a replayed stream of unique readings (singles and gateway batches) into the
store worker (``tongguan ingest`` as a child process, as in production) and reconciles the
``readings`` table against what the broker acknowledged:

* ``worker-kill`` — SIGKILL the store worker N times mid-stream, restart it each time;
* ``db-outage`` — stop PostgreSQL hard (immediate mode) for S seconds mid-stream, start it again;
* ``broker-kill`` — SIGKILL the embedded broker mid-stream and start it again (memory storage:
  what no consumer had committed is lost with it; measured, not hidden).

Figures per fault: produced (acknowledged readings), stored, lost, doubled, rollup check, and the
recovery times (restart → first stored row; fault over → first stored row; → caught up).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import sqlalchemy as sa

GUANGZHOU = [(113.3612, 23.1247), (113.2644, 23.1291), (113.3240, 23.1066), (113.2442, 23.1255)]


@dataclass
class Stream:
    """A producer thread replaying unique readings at ``rate`` messages/s until stopped."""

    bootstrap: str
    topic: str
    rate: float = 400.0
    batch_every: int = 10          # every n-th message is a gateway batch of ``batch_size`` readings
    batch_size: int = 20
    tag: str = field(default_factory=lambda: os.urandom(4).hex())
    acked_readings: int = 0
    failed_readings: int = 0
    messages: int = 0
    mark_at: int | None = None     # messages from this index on are also counted in ``acked_after_mark``
    acked_after_mark: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "Stream":
        self._thread = threading.Thread(target=self._run, name="chaos-stream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(120)

    failures_in_a_row: int = 0

    def mark(self) -> int:
        """From the next message on, acknowledged readings are also counted in ``acked_after_mark``
        (what must all be stored after a fault, while what came before may be lost with a broker)."""
        with self._lock:
            self.mark_at = self.messages
            self.acked_after_mark = 0
        return self.mark_at

    def _count(self, n: int, ok: bool, i: int = -1) -> None:
        with self._lock:
            if ok:
                self.acked_readings += n
                if self.mark_at is not None and i >= self.mark_at:
                    self.acked_after_mark += n
                self.failures_in_a_row = 0
            else:
                self.failed_readings += n
                self.failures_in_a_row += 1

    def _producer(self):
        from kafka import KafkaProducer

        return KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5, retries=5,
                             request_timeout_ms=5000, max_block_ms=5000, reconnect_backoff_max_ms=1000)

    def _run(self) -> None:
        producer = self._producer()
        base = datetime.now(timezone.utc) - timedelta(minutes=50)
        i = 0
        t0 = time.monotonic()
        try:
            while not self._stop.is_set():
                lag = i / self.rate - (time.monotonic() - t0)
                if lag > 0:
                    time.sleep(min(lag, 0.05))
                    continue
                ts = (base + timedelta(milliseconds=50 * i)).isoformat()
                lon, lat = GUANGZHOU[i % len(GUANGZHOU)]
                if i % self.batch_every == 0:
                    rs = [{"event_id": f"cx-{self.tag}-{i}-{j}", "sensor_id": f"cgs-{j}", "metric": "noise",
                           "value": 50.0 + j % 7, "unit": "dB(A)", "ts": ts, "lon": lon, "lat": lat}
                          for j in range(self.batch_size)]
                    value = {"schema": "readings/1", "gateway_id": f"cgw-{i % 7}", "readings": rs}
                    n = self.batch_size
                else:
                    value = {"schema": "reading/1", "event_id": f"cx-{self.tag}-{i}", "sensor_id": f"cs-{i % 200}",
                             "metric": "temperature", "value": 20.0 + i % 10, "unit": "degC", "ts": ts,
                             "lon": lon, "lat": lat}
                    n = 1
                try:
                    fut = producer.send(self.topic, key=f"k{i % 50}".encode(), value=orjson.dumps(value))
                    fut.add_callback(lambda _m, n=n, i=i: self._count(n, True, i))
                    fut.add_errback(lambda _e, n=n: self._count(n, False))
                except Exception:  # noqa: BLE001 - the broker is down: this message is not produced
                    self._count(n, False)
                    time.sleep(0.2)
                i += 1
                self.messages = i
                if self.failures_in_a_row > 200:
                    # As a gateway would: a client that keeps failing after a broker restart is
                    # replaced by a fresh one (new connections, new metadata).
                    try:
                        producer.close(timeout=1)
                    except Exception:  # noqa: BLE001
                        pass
                    producer = self._producer()
                    self.failures_in_a_row = 0
                    time.sleep(0.5)
        finally:
            try:
                producer.flush(timeout=30)
            except Exception:  # noqa: BLE001 - unacknowledged messages are counted as failed
                pass
            producer.close(timeout=5)


class StoreProcess:
    """``tongguan ingest`` as a child process (the way production runs it)."""

    def __init__(self, env: dict, log_path: Path):
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = Path(sys.executable).with_name("tongguan")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tongguan.cli"]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*cmd, "ingest", "--batch-size", "500"], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        if self.proc is not None:
            self.log.close()

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def worker_env(settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGGUAN_")}
    env.update(TONGGUAN_DATABASE_URL=settings.database_url, TONGGUAN_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
               TONGGUAN_TOPIC_PREFIX=settings.topic_prefix, TONGGUAN_PARTITIONS=str(settings.partitions),
               TONGGUAN_HOME=str(settings.home), TONGGUAN_SECRET_KEY=settings.secret_key.get_secret_value(),
               TONGGUAN_ENV=settings.env)
    return env


def _count(engine, tag: str) -> int:
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM readings WHERE event_id LIKE :p"),
                                {"p": f"cx-{tag}-%"}).scalar()
    except sa.exc.OperationalError:
        return -1  # the database is down (the db-outage fault)


def _wait_growth(engine, tag: str, above: int, timeout: float) -> float | None:
    """Seconds until more than ``above`` rows are stored (None on timeout)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if _count(engine, tag) > above:
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def _count_from(engine, tag: str, message: int) -> int:
    """Stored readings of the stream's messages from index ``message`` on."""
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM readings WHERE event_id LIKE :p AND split_part(event_id, '-', 3)::int >= :m"),
            {"p": f"cx-{tag}-%", "m": message}).scalar()


def _reconcile(engine, stream: Stream, worker: StoreProcess, *, settle_s: float) -> dict:
    """Stop the stream, wait until every acknowledged reading is stored (or ``settle_s``).

    After a ``mark`` (a broker crash) only what was acknowledged from the mark on must arrive:
    what the crashed memory broker held is gone, and waiting for it would only wait ``settle_s``.
    The store consumes each partition in order, so once the marked part is stored, everything
    the broker still had before it is stored too."""
    stream.stop()

    def settled() -> bool:
        if stream.mark_at is not None:
            return _count_from(engine, stream.tag, stream.mark_at) >= stream.acked_after_mark
        return _count(engine, stream.tag) >= stream.acked_readings

    t0 = time.monotonic()
    while time.monotonic() - t0 < settle_s and not settled():
        time.sleep(0.2)
    caught_up = time.monotonic() - t0
    time.sleep(1.0)  # anything doubled would show now
    code = worker.stop()
    with engine.connect() as conn:
        total, distinct = conn.execute(sa.text(
            "SELECT count(*), count(DISTINCT event_id) FROM readings WHERE event_id LIKE :p"),
            {"p": f"cx-{stream.tag}-%"}).one()
        # Rollups hold only chaos readings in a bench/test database of their own: compare totals.
        rolled = conn.execute(sa.text(
            "SELECT coalesce(sum(n), 0) FROM reading_rollups_minute WHERE adcode = '440000'")).scalar()
        raw_all = conn.execute(sa.text("SELECT count(*) FROM readings WHERE province = '440000'")).scalar()
    return {"produced": stream.acked_readings, "not_acknowledged": stream.failed_readings, "stored": distinct,
            "lost": max(0, stream.acked_readings - distinct), "doubled": total - distinct,
            "rollups_equal_raw": int(rolled) == int(raw_all), "catch_up_s": round(caught_up, 1),
            "worker_exit": code}


def worker_kills(settings, engine, *, kills: int = 20, rate: float = 400.0, workdir: Path) -> dict:
    """SIGKILL the store worker ``kills`` times during a stream; restart it each time."""
    stream = Stream(settings.kafka_bootstrap, settings.topic("readings"), rate=rate).start()
    env = worker_env(settings)
    worker = StoreProcess(env, workdir / "chaos-worker.log")
    restarts: list[float | None] = []
    import random

    rnd = random.Random(7)
    for _ in range(kills):
        worker.start()
        restarts.append(_wait_growth(engine, stream.tag, _count(engine, stream.tag), timeout=60))
        time.sleep(rnd.uniform(0.3, 1.5))  # let it work a little, then kill it mid-batch
        worker.kill()
    worker.start()
    restarts.append(_wait_growth(engine, stream.tag, _count(engine, stream.tag), timeout=60))
    time.sleep(2)
    out = _reconcile(engine, stream, worker, settle_s=120)
    ok = [r for r in restarts if r is not None]
    out.update(fault="worker-kill", kills=kills, restarts_without_progress=len(restarts) - len(ok),
               restart_to_first_row_s={"median": round(sorted(ok)[len(ok) // 2], 2) if ok else None,
                                       "max": round(max(ok), 2) if ok else None})
    return out


def db_outage(settings, engine, postgres, *, outage_s: float = 60.0, rate: float = 400.0, workdir: Path) -> dict:
    """Stop PostgreSQL hard (``pg_ctl -m immediate``) for ``outage_s`` during a stream."""
    stream = Stream(settings.kafka_bootstrap, settings.topic("readings"), rate=rate).start()
    worker = StoreProcess(worker_env(settings), workdir / "chaos-worker.log")
    worker.start()
    first = _wait_growth(engine, stream.tag, 0, timeout=60)
    time.sleep(2)
    engine.dispose()
    postgres._pg("pg_ctl", "-D", str(postgres.data), "-m", "immediate", "-w", "stop")
    time.sleep(outage_s)
    postgres.start()
    back_at = time.monotonic()
    before = -1
    while before < 0 and time.monotonic() - back_at < 30:
        before = _count(engine, stream.tag)
        time.sleep(0.05)
    resumed = _wait_growth(engine, stream.tag, before, timeout=60)
    resumed_s = None if resumed is None else round(time.monotonic() - back_at, 2)
    alive = worker.alive()
    out = _reconcile(engine, stream, worker, settle_s=180)
    out.update(fault="db-outage", outage_s=outage_s, first_row_s=None if first is None else round(first, 2),
               db_back_to_first_row_s=resumed_s, worker_alive_through_outage=alive)
    return out


def broker_kill(settings, engine, kafka, *, down_s: float = 5.0, rate: float = 400.0, workdir: Path,
                status_probe=None) -> dict:
    """SIGKILL the embedded broker mid-stream, start it again after ``down_s``.

    The memory broker loses what it held: messages the store had not consumed yet are gone
    (``lost``). What the stream produced after the restart must all be stored."""
    from tongguan.services import ensure_topics
    from tongguan.settings import TOPICS

    stream = Stream(settings.kafka_bootstrap, settings.topic("readings"), rate=rate).start()
    worker = StoreProcess(worker_env(settings), workdir / "chaos-worker.log")
    worker.start()
    _wait_growth(engine, stream.tag, 0, timeout=60)
    time.sleep(3)
    acked_before = stream.acked_readings
    os.kill(kafka.pid(), signal.SIGKILL)
    time.sleep(0.5)
    during = status_probe() if status_probe else None
    time.sleep(down_s)
    kafka.start()
    ensure_topics(settings.kafka_bootstrap, settings.partitions, tuple(settings.topic(t) for t in TOPICS))
    stream.mark()  # from here on, every acknowledged reading must be stored
    back = time.monotonic()
    stored_at_restart = _count(engine, stream.tag)
    resumed = _wait_growth(engine, stream.tag, stored_at_restart, timeout=90)
    resumed_s = None if resumed is None else round(time.monotonic() - back, 2)
    time.sleep(3)
    alive = worker.alive()
    out = _reconcile(engine, stream, worker, settle_s=120)
    lost_after = max(0, stream.acked_after_mark - _count_from(engine, stream.tag, stream.mark_at))
    out.update(fault="broker-kill", down_s=down_s, acknowledged_before_kill=acked_before, worker_alive=alive,
               acknowledged_after_restart=stream.acked_after_mark, lost_after_restart=lost_after,
               broker_back_to_first_row_s=resumed_s,
               lost_share=round(out["lost"] / max(1, out["produced"]), 4), status_during_outage=during)
    return out
