"""``tongguan bench memory``: the resident memory of each worker and of the broker while a stream runs.

Everything as production runs it on one machine: the simulator (``tongguan simulate``) produces
about ``--rate`` readings/s for ``--duration`` seconds into topics of the bench's own (a prefix),
the store worker (``tongguan ingest``), the live detector (``tongguan detect``) and the notifier
(``tongguan notify``) consume them as child processes, and this process reads each one's RSS
(``/proc/<pid>/status``) and the managed broker's every ``--every`` seconds. Printed per process:
RSS at start, after the warm-up, at the end, the peak, and the slope after the warm-up in MB/min
(least squares), with the end / after-warm-up ratio: flat is a slope near 0 and a ratio near 1.
The readings stored per second say what load the figures are for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

WORKERS = {"store": ["ingest", "--batch-size", "2000"], "detect": ["detect", "--warm-hours", "0"],
           "notify": ["notify"]}


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` in MB (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def slope_per_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) samples, in MB per minute.

    >>> slope_per_min([(0, 100.0), (60, 101.0), (120, 102.0)])
    1.0
    """
    if len(samples) < 2:
        return None
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    if den == 0:
        return None
    return round(60.0 * sum((t - mt) * (v - mv) for t, v in samples) / den, 3)


def summarise(samples: list[tuple[float, float]], warmup_s: float) -> dict:
    """Start, after warm-up, end, peak and the slope after warm-up of one process's samples."""
    if not samples:
        return {"start_mb": None, "warm_mb": None, "end_mb": None, "peak_mb": None, "slope_mb_min": None,
                "end_over_warm": None}
    after = [(t, v) for t, v in samples if t >= warmup_s] or samples[-1:]
    warm, end = after[0][1], samples[-1][1]
    return {"start_mb": round(samples[0][1], 1), "warm_mb": round(warm, 1), "end_mb": round(end, 1),
            "peak_mb": round(max(v for _, v in samples), 1), "slope_mb_min": slope_per_min(after),
            "end_over_warm": round(end / warm, 3) if warm else None}


def _stored(engine, topic: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM readings WHERE src_topic = :t"), {"t": topic}).scalar())


def run_memory_bench(ctx, *, duration: float = 600.0, rate: float = 2000.0, warmup: float = 120.0,
                     every: float = 10.0, sensors: int = 2000, out=print) -> dict:
    """Stream, sample, stop; returns the figures (also printed as they come)."""
    from ingest.simulator import GATEWAY_SIZE
    from tongguan.services import delete_topics, ensure_topics
    from tongguan.settings import TOPICS

    services = ctx.require()
    engine = ctx.engine
    with engine.connect() as conn:
        if not conn.execute(sa.text("SELECT count(*) > 0 FROM regions WHERE level = 'county'")).scalar():
            out("loading the regions first (tongguan geo load; once)")
            subprocess.run([sys.executable, "-m", "tongguan.cli", "geo", "load"], check=True,
                           env={**os.environ, "TONGGUAN_DATABASE_URL": services.database_url,
                                "TONGGUAN_KAFKA_BOOTSTRAP": services.kafka_bootstrap})
    prefix = f"mem{uuid.uuid4().hex[:6]}."
    settings = ctx.settings.model_copy(update={"topic_prefix": prefix})
    ensure_topics(services.kafka_bootstrap, settings.partitions, tuple(settings.topic(t) for t in TOPICS))
    env = {**os.environ, "TONGGUAN_DATABASE_URL": services.role_url("worker"),
           "TONGGUAN_KAFKA_BOOTSTRAP": services.kafka_bootstrap, "TONGGUAN_TOPIC_PREFIX": prefix,
           "TONGGUAN_PARTITIONS": str(settings.partitions)}
    workdir = Path(tempfile.mkdtemp(prefix="tongguan-memory-"))
    cmd = [sys.executable, "-m", "tongguan.cli"]
    procs: dict[str, subprocess.Popen] = {}
    logs = []
    # The simulator's --rate is messages/s; half the sensors report through gateways of
    # GATEWAY_SIZE readings per message, so readings/s = messages/s × readings per message.
    per_message = sensors / (sensors * 0.5 + sensors * 0.5 / GATEWAY_SIZE + 1)
    msg_rate = rate / per_message
    broker_pid = services.kafka.pid() if services.kafka is not None else None
    series: dict[str, list[tuple[float, float]]] = {name: [] for name in (*WORKERS, "broker")}
    try:
        for name, words in WORKERS.items():
            log = open(workdir / f"{name}.log", "ab")
            logs.append(log)
            procs[name] = subprocess.Popen([*cmd, *words], env=env, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(3)  # let them join their groups before the stream starts
        log = open(workdir / "simulate.log", "ab")
        logs.append(log)
        procs["simulate"] = subprocess.Popen(
            [*cmd, "simulate", "--rate", f"{msg_rate:.0f}", "--duration", str(duration), "--sensors", str(sensors),
             "--seed", "7"], env={**env, "TONGGUAN_DATABASE_URL": services.database_url}, stdout=log,
            stderr=subprocess.STDOUT)
        readings_topic = settings.topic("readings")
        t0 = time.monotonic()
        stored0 = _stored(engine, readings_topic)
        out(f"streaming ~{rate:.0f} readings/s ({msg_rate:.0f} messages/s, {sensors} sensors) for {duration:.0f} s; "
            f"RSS every {every:.0f} s (MB); logs in {workdir}")
        out("     t  " + "  ".join(f"{n:>8}" for n in series) + "   stored/s")
        last_stored, last_t = stored0, t0
        while True:
            now = time.monotonic()
            t = now - t0
            row = {}
            for name in series:
                pid = broker_pid if name == "broker" else procs[name].pid
                mb = rss_mb(pid) if pid else None
                row[name] = mb
                if mb is not None:
                    series[name].append((t, mb))
            stored = _stored(engine, readings_topic)
            rate_now = (stored - last_stored) / max(1e-6, now - last_t)
            last_stored, last_t = stored, now
            out(f"{t:6.0f}  " + "  ".join(f"{v:8.1f}" if v is not None else f"{'gone':>8}" for v in row.values())
                + f"   {rate_now:8.0f}")
            dead = [n for n in WORKERS if procs[n].poll() is not None]
            if dead:
                out(f"worker(s) exited early: {', '.join(dead)} (see {workdir})")
                break
            if procs["simulate"].poll() is not None and t >= duration:
                break
            time.sleep(max(0.0, every - (time.monotonic() - now)))
        elapsed = time.monotonic() - t0
        stored_total = _stored(engine, readings_topic) - stored0
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()
        # The memory broker frees a topic's messages only when the topic is deleted: without this,
        # every run's stream stayed in the broker (the next run started from where it ended).
        delete_topics(services.kafka_bootstrap, prefix=prefix)
    result = {"duration_s": round(elapsed, 1), "warmup_s": warmup, "target_readings_per_s": rate,
              "stored_readings_per_s": round(stored_total / max(elapsed, 1e-6), 1), "stored": stored_total,
              "processes": {name: summarise(s, warmup) for name, s in series.items()}, "logs": str(workdir)}
    out(f"\nstored {stored_total} readings in {elapsed:.0f} s ({result['stored_readings_per_s']:.0f}/s)")
    out(f"{'process':>8}  {'start':>7}  {'warm':>7}  {'end':>7}  {'peak':>7}  {'MB/min':>7}  end/warm")
    for name, s in result["processes"].items():
        out(f"{name:>8}  " + "  ".join(f"{s[k]:7}" if s[k] is not None else f"{'-':>7}" for k in (
            "start_mb", "warm_mb", "end_mb", "peak_mb", "slope_mb_min")) + f"  {s['end_over_warm']}")
    return result


def cmd_bench_memory(args, ctx) -> int:
    result = run_memory_bench(ctx, duration=args.duration, rate=args.rate, warmup=min(args.warmup, args.duration),
                              every=args.every, sensors=args.sensors)
    if args.json:
        print(json.dumps(result))
    return 0
