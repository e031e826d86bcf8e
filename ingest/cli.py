"""``tongguan simulate``, ``tongguan ingest`` and ``tongguan bench ingest``."""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import time
from datetime import datetime, timedelta, timezone

from ingest.errors import IngestError

log = logging.getLogger("tongguan.ingest")


def _positive(kind):
    """An argparse type: a positive number of ``kind``; the error says what was wrong."""
    what = "a whole number" if kind is int else "a number"

    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what} greater than 0, got {text!r}") from None
        if not v > 0 or v == float("inf"):
            raise argparse.ArgumentTypeError(f"must be {what} greater than 0, got {text!r}")
        return v
    parse.__name__ = kind.__name__
    return parse


def _non_negative(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, got {text!r}")
    return v


def _iso(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        t = None
    if t is None or t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"must be a time with a time-zone offset, e.g. 2026-06-01T08:00:00+08:00, "
                                         f"got {text!r}")
    return t


def register(sub) -> None:
    p = sub.add_parser("simulate", help="simulated sensors, cameras and incidents → Kafka (or a file)")
    p.add_argument("--rate", type=_positive(float), default=1000.0, help="messages per second (default 1000)")
    p.add_argument("--duration", type=_non_negative, default=60.0,
                   help="wall-clock seconds (default 60); 0 = run until stopped: catch up from --start "
                        "(default 2 h ago), then follow the clock in one-hour episodes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speedup", type=_positive(float), default=60.0,
                   help="simulated seconds per wall second (default 60: an hour per minute)")
    p.add_argument("--start", type=_iso, default=None,
                   help="simulated start, RFC 3339 with offset (default: so that the simulation ends now)")
    p.add_argument("--sensors", type=_positive(int), default=2000)
    p.add_argument("--cameras", type=_positive(int), default=300)
    p.add_argument("--output", help="write the stream as JSON lines to this file instead of Kafka")
    p.add_argument("--replay", help="re-produce a file written with --output (ignores the other options but --rate)")
    p.add_argument("--truth", help="also write the incidents' ground truth as JSON to this file")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("ingest", help="the store worker: Kafka → validate → regions → PostGIS (group tongguan-store)")
    p.add_argument("--until-idle", action="store_true", help="exit once every assigned partition is caught up")
    p.add_argument("--batch-size", type=_positive(int), default=5000, help="records per poll (default 5000)")
    p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    p.set_defaults(func=cmd_ingest)


def build_simulator(engine, *, seed: int, rate: float, duration: float, speedup: float,
                    start: datetime | None, sensors: int, cameras: int):
    """A Simulator whose stream fills ``duration`` wall seconds at ``rate`` messages/s."""
    from ingest.simulator import Simulator, counties_from_db

    sim_duration = duration * speedup
    if start is None:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        # Real time: start now. Faster than real time: end now, so no reading lies in the future.
        start = now if speedup <= 1 else now - timedelta(seconds=sim_duration)
    return Simulator(seed=seed, counties=counties_from_db(engine), start=start, duration_s=sim_duration,
                     interval_s=tick_interval(sensors, rate, speedup), sensors=sensors, cameras=cameras)


def tick_interval(sensors: int, rate: float, speedup: float) -> float:
    """Simulated seconds between two readings of a sensor, so that ``sensors`` (half of them
    behind gateways) fill ``rate`` messages per wall second at ``speedup``."""
    from ingest.simulator import GATEWAY_SIZE

    msgs_per_tick = sensors * 0.5 + sensors * 0.5 / GATEWAY_SIZE + 1
    return max(0.5, msgs_per_tick * speedup / rate)


def cmd_simulate(args, ctx) -> int:
    from ingest.simulator import produce, read_jsonl, write_jsonl, write_truth

    if args.replay:
        n = produce(read_jsonl(args.replay), _live_settings(ctx), rate=args.rate)
        print(json.dumps({"replayed": n, "file": args.replay}))
        return 0
    if args.duration == 0:
        return _simulate_forever(args, ctx)
    sim = build_simulator(ctx.engine, seed=args.seed, rate=args.rate, duration=args.duration, speedup=args.speedup,
                          start=args.start, sensors=args.sensors, cameras=args.cameras)
    truth = write_truth(ctx.engine, sim)
    if args.truth:
        with open(args.truth, "w", encoding="utf-8") as f:
            json.dump(sim.truth(), f, ensure_ascii=False, indent=1)
    t0 = time.monotonic()
    if args.output:
        n = write_jsonl(sim.iter_messages(), args.output)
    else:
        n = produce(sim.iter_messages(), _live_settings(ctx), rate=args.rate)
    print(json.dumps({"messages": n, "incidents": truth, "seed": args.seed, "start": sim.start.isoformat(),
                      "simulated_seconds": sim.duration_s, "interval_s": round(sim.interval_s, 3),
                      "wall_seconds": round(time.monotonic() - t0, 1), "output": args.output or "kafka"}))
    return 0


def _simulate_forever(args, ctx) -> int:
    """Continuous simulation (the demo): consecutive one-hour episodes, never ahead of the clock."""
    from ingest.simulator import Simulator, counties_from_db, make_producer, produce, write_truth

    if args.output:
        raise IngestError("--duration 0 runs until stopped; it cannot write a file (give a duration)")
    settings = _live_settings(ctx)
    counties = counties_from_db(ctx.engine)
    episode_s = 3600.0
    start = args.start or datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    interval = tick_interval(args.sensors, args.rate, args.speedup)
    producer = make_producer(settings.kafka_bootstrap)
    total = 0
    k = 0
    try:
        while True:
            sim = Simulator(seed=args.seed, episode=k, counties=counties, start=start + timedelta(seconds=k * episode_s),
                            duration_s=episode_s, interval_s=interval, sensors=args.sensors, cameras=args.cameras)
            write_truth(ctx.engine, sim)
            total += produce(sim.iter_messages(), settings, rate=args.rate, producer=producer, live=True)
            log.info("simulation episode %d done (%s … +1 h): %d messages so far", k, sim.start.isoformat(), total)
            k += 1
    except KeyboardInterrupt:
        log.info("simulation stopped after %d messages", total)
    finally:
        producer.flush(timeout=30)
        producer.close()
    print(json.dumps({"messages": total, "episodes": k, "seed": args.seed}))
    return 0


def _live_settings(ctx):
    """Settings with the broker and database URLs filled in (managed services started if needed)."""
    return ctx.settings.model_copy(update={"database_url": ctx.role_url("worker"),
                                           "kafka_bootstrap": ctx.kafka_bootstrap})




def cmd_ingest(args, ctx) -> int:
    from ingest.worker import StoreWorker, WorkerConfig
    from tongguan.consumer import run_worker

    settings = _live_settings(ctx)
    worker = StoreWorker(settings, WorkerConfig(batch_size=args.batch_size, until_idle=args.until_idle,
                                                metrics_port=args.metrics_port))
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    return run_worker("ingest", lambda: worker.run().as_dict(), lambda: worker.stats.as_dict(), out=sys.stdout)


# -- benchmark -------------------------------------------------------------------------------
def register_bench(bench_sub) -> None:
    _register_bench_chaos(bench_sub)
    _register_bench_memory(bench_sub)
    p = bench_sub.add_parser("ingest", help="store-worker throughput vs a bare COPY of the same rows")
    p.add_argument("--events", type=_positive(int), default=200_000, help="readings to produce (default 200000)")
    p.add_argument("--batch-size", type=_positive(int), default=100, help="readings per gateway batch (default 100)")
    p.add_argument("--poll-size", type=_positive(int), default=5000, help="records per poll of the worker")
    p.add_argument("--target-rows", type=_positive(int), default=None,
                   help="readings per database transaction the worker aims for (default: the worker's)")
    p.add_argument("--mode", choices=("both", "single", "batched"), default="both")
    p.add_argument("--repeat", type=_positive(int), default=3,
                   help="runs of each mode, modes alternating; the median run is reported (default 3)")
    p.add_argument("--profile", help="write a pyinstrument profile of the worker's main thread (.html, else text) per mode")
    p.set_defaults(func=cmd_bench_ingest)


def _bench_messages(engine, n: int, batch: int, run: str):
    """``n`` valid readings from real county locations: as singles (batch=1) or gateway batches."""
    import numpy as np
    import orjson

    from ingest.catalogue import load_catalogue
    from ingest.simulator import Simulator, counties_from_db

    cat = load_catalogue()
    sim = Simulator(seed=7, counties=counties_from_db(engine), start=datetime.now(timezone.utc), sensors=2000,
                    cameras=1, incidents=False, faults=False)
    rng = np.random.default_rng(1)
    base = datetime.now(timezone.utc) - timedelta(minutes=30)
    out = []
    s = 0
    for j in range(0, n, batch):
        rs = []
        for i in range(j, min(n, j + batch)):
            k = i % len(sim.sensor_ids)
            m = sim.s_metric[k]
            meta = cat.metrics[m]
            v = float(np.clip(sim.s_base[k] + rng.normal() * max(sim.s_noise[k], 1e-3), meta.min, meta.max))
            rs.append({"event_id": f"{run}-{i}", "sensor_id": sim.sensor_ids[k], "metric": m,
                       "value": round(v, 3), "unit": meta.unit,
                       "ts": (base + timedelta(milliseconds=i * 7)).isoformat(timespec="milliseconds"),
                       "lon": float(sim.s_lon[k]), "lat": float(sim.s_lat[k])})
        if batch == 1:
            out.append((rs[0]["sensor_id"], orjson.dumps({"schema": "reading/1", **rs[0]})))
        else:
            s += 1
            out.append((f"gw-bench-{s % 97}", orjson.dumps({"schema": "readings/1", "gateway_id": f"gw-bench-{s % 97}",
                                                             "readings": rs})))
    return out


def _bench_once(ctx, settings, label: str, n: int, batch: int, poll: int, profile: str | None,
                target_rows: int | None = None) -> dict:
    import uuid

    from ingest.simulator import make_producer
    from ingest.store import READING_COLUMNS, copy_ceiling
    from ingest.worker import StoreWorker, WorkerConfig
    from tongguan.services import delete_topics, ensure_topics
    from tongguan.settings import TOPICS

    run = uuid.uuid4().hex[:8]
    s = settings.model_copy(update={"topic_prefix": f"bench-{run}."})
    ensure_topics(s.kafka_bootstrap, s.partitions, tuple(s.topic(t) for t in TOPICS))
    msgs = _bench_messages(ctx.engine, n, batch, run)
    t0 = time.monotonic()
    producer = make_producer(s.kafka_bootstrap)
    topic = s.topic("readings")
    for key, value in msgs:
        producer.send(topic, key=key.encode(), value=value)
    producer.flush(timeout=300)
    producer.close()
    produce_s = time.monotonic() - t0

    # The ceiling: the same rows, bare COPY into the same table (rolled back afterwards), once
    # before and once after the worker's run, averaged: on a shared machine one COPY of ~1 s
    # alone moved the ratio by half its value from run to run.
    from ingest.schemas import parse_message

    rows = []
    for _, value in msgs:
        for r in parse_message(value).readings:
            rows.append((r.ts, r.event_id + "-ceiling", r.sensor_id, r.metric, r.value, r.quality, "440106", "440100",
                         "440000", None, r.lon, r.lat, r.gateway_id, topic, 0, 0))
    # As the tables' owner: the worker's role is under row-level security, which refuses COPY FROM
    # (and the ceiling is the database's, not a role's).
    copy_before_s = copy_ceiling(ctx.database_url, rows)

    extra = {"target_rows": target_rows} if target_rows else {}
    worker = StoreWorker(s, WorkerConfig(batch_size=poll, until_idle=True, group_id=f"bench-{run}",
                                         log_every_s=30, **extra))
    worker.region_index  # loaded before the clock starts: a worker loads it once per process
    profiler = None
    if profile:
        try:
            from pyinstrument import Profiler
        except ImportError:
            raise IngestError("--profile needs pyinstrument (a development extra): "
                              ".venv/bin/pip install -e '.[dev]'") from None

        profiler = Profiler()
        profiler.start()
    t0 = time.monotonic()
    cpu0 = time.process_time()
    stats = worker.run()
    # The worker process's CPU (every thread: Kafka client, preparing, the database thread's
    # Python): less sensitive than seconds to what else runs on the machine.
    worker_cpu_s = time.process_time() - cpu0
    # The worker's clock starts at its first record, not at the group join (Tansu joins take ~3 s).
    worker_s = time.monotonic() - t0
    # The memory broker frees a topic's messages only when the topic is deleted.
    delete_topics(s.kafka_bootstrap, prefix=s.topic_prefix)
    if profiler:
        profiler.stop()
        with open(profile, "w") as f:
            f.write(profiler.output_html() if profile.endswith(".html") else profiler.output_text(color=False))
    first = getattr(worker, "first_record_at", None)
    last = getattr(worker, "last_commit_at", None)
    active_s = (last - first) if first and last else worker_s
    if stats.stored_readings != n:
        raise IngestError(f"bench {label}: stored {stats.stored_readings} of {n} readings "
                          f"(dead-lettered {stats.dead_lettered}: {stats.reasons})")

    copy_s = (copy_before_s + copy_ceiling(ctx.database_url, rows)) / 2
    return {"mode": label, "readings": n, "messages": len(msgs), "produce_s": round(produce_s, 2),
            "worker_s": round(active_s, 2), "readings_per_s": round(n / active_s),
            "copy_s": round(copy_s, 2), "copy_readings_per_s": round(n / copy_s),
            "ratio": round((n / active_s) / (n / copy_s), 3),
            "worker_cpu_us_per_reading": round(1e6 * worker_cpu_s / n, 1)}


CHAOS_FAULTS = ("worker-kill", "db-outage", "broker-kill")


def _faults(text: str) -> list[str]:
    faults = [f.strip() for f in text.split(",") if f.strip()]
    if not faults or set(faults) - set(CHAOS_FAULTS):
        raise ValueError(text)
    return faults


_faults.__name__ = "fault list (worker-kill, db-outage, broker-kill)"


def _register_bench_memory(bench_sub) -> None:
    from ingest.memory_bench import cmd_bench_memory

    p = bench_sub.add_parser("memory", help="RSS of the store, detect and notify workers and of the broker over "
                                            "a stream: start, after warm-up, end, slope MB/min")
    p.add_argument("--duration", type=_positive(float), default=600.0, help="seconds of streaming (default 600)")
    p.add_argument("--rate", type=_positive(float), default=2000.0, help="readings per second (default 2000)")
    p.add_argument("--warmup", type=_positive(float), default=120.0,
                   help="seconds before the slope is measured (default 120)")
    p.add_argument("--every", type=_positive(float), default=10.0, help="seconds between samples (default 10)")
    p.add_argument("--sensors", type=_positive(int), default=2000, help="simulated sensors (default 2000)")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.set_defaults(func=cmd_bench_memory)


def _register_bench_chaos(bench_sub) -> None:
    p = bench_sub.add_parser("chaos", help="faults mid-stream (worker kills, database outage, broker kill): "
                                           "lost / doubled / recovered readings and recovery times")
    p.add_argument("--faults", type=_faults, default="worker-kill,db-outage,broker-kill",
                   help="comma-separated: worker-kill, db-outage, broker-kill (default all three)")
    p.add_argument("--kills", type=_positive(int), default=20, help="SIGKILLs of the store worker (default 20)")
    p.add_argument("--outage", type=_positive(float), default=60.0, help="seconds PostgreSQL is down (default 60)")
    p.add_argument("--broker-down", type=_positive(float), default=5.0,
                   help="seconds the killed broker stays down (default 5)")
    p.add_argument("--rate", type=_positive(float), default=400.0, help="messages per second of the stream")
    p.set_defaults(func=cmd_bench_chaos)


def cmd_bench_chaos(args, ctx) -> int:
    """Each fault on topics of its own; figures printed per fault, then all as JSON."""
    import os
    import tempfile
    from pathlib import Path

    from ingest import chaos
    from tongguan.db import engine_for
    from tongguan.services import delete_topics, ensure_topics
    from tongguan.settings import TOPICS

    faults = args.faults if isinstance(args.faults, list) else _faults(args.faults)
    services = ctx.services
    if ("db-outage" in faults and services.postgres is None) or ("broker-kill" in faults and services.kafka is None):
        raise IngestError("db-outage and broker-kill stop the managed services; with TONGGUAN_DATABASE_URL/"
                          "TONGGUAN_KAFKA_BOOTSTRAP set, run only --faults worker-kill")
    base = _live_settings(ctx)
    engine = engine_for(base.database_url)
    workdir = Path(tempfile.mkdtemp(prefix="tongguan-chaos-"))
    results = []
    for fault in faults:
        settings = base.model_copy(update={"topic_prefix": f"chaos{os.urandom(3).hex()}."})
        ensure_topics(settings.kafka_bootstrap, settings.partitions, tuple(settings.topic(t) for t in TOPICS))
        if fault == "worker-kill":
            r = chaos.worker_kills(settings, engine, kills=args.kills, rate=args.rate, workdir=workdir)
            extra = (f"{r['kills']} kills; restart → first stored row median {r['restart_to_first_row_s']['median']} s, "
                     f"max {r['restart_to_first_row_s']['max']} s; restarts without progress "
                     f"{r['restarts_without_progress']}")
        elif fault == "db-outage":
            r = chaos.db_outage(settings, engine, services.postgres, outage_s=args.outage, rate=args.rate,
                                workdir=workdir)
            extra = (f"PostgreSQL down {r['outage_s']:.0f} s; back → first stored row {r['db_back_to_first_row_s']} s; "
                     f"worker alive throughout: {r['worker_alive_through_outage']}")
        else:
            from apps.health import probe_broker

            r = chaos.broker_kill(settings, engine, services.kafka, down_s=args.broker_down, rate=args.rate,
                                  workdir=workdir, status_probe=lambda: probe_broker(settings.kafka_bootstrap))
            extra = (f"broker down {r['down_s']:.0f} s; back → first stored row {r['broker_back_to_first_row_s']} s; "
                     f"lost with the memory broker: {r['lost']} ({100 * r['lost_share']:.1f} %); of the "
                     f"{r['acknowledged_after_restart']} acknowledged after the restart lost {r['lost_after_restart']}")
        delete_topics(settings.kafka_bootstrap, prefix=settings.topic_prefix)
        results.append(r)
        print(f"{fault:>12}: produced {r['produced']}, stored {r['stored']}, lost {r['lost']}, doubled "
              f"{r['doubled']}, rollups equal raw: {r['rollups_equal_raw']}, caught up in {r['catch_up_s']} s; "
              f"{extra}", flush=True)
    print(json.dumps(results, default=str))
    return 0


def median_run(runs: list[dict]) -> dict:
    """The run with the median ratio (the lower middle one of an even count), with the spread
    of the ratios over all runs.

    >>> median_run([{"ratio": 0.3}, {"ratio": 0.5}, {"ratio": 0.4}])
    {'ratio': 0.4, 'runs': 3, 'ratio_min': 0.3, 'ratio_max': 0.5}
    """
    ordered = sorted(runs, key=lambda r: r["ratio"])
    return {**ordered[(len(ordered) - 1) // 2], "runs": len(runs), "ratio_min": ordered[0]["ratio"],
            "ratio_max": ordered[-1]["ratio"]}


def cmd_bench_ingest(args, ctx) -> int:
    settings = _live_settings(ctx)
    modes = {"both": ("single", "batched"), "single": ("single",), "batched": ("batched",)}[args.mode]
    repeat = getattr(args, "repeat", 1)
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    # Modes alternate (single, batched, single, …) so a burst of load elsewhere on the machine
    # does not land on one mode only; every run has topics, a group and a worker of its own.
    for i in range(repeat):
        for mode in modes:
            batch = 1 if mode == "single" else args.batch_size
            prof = None
            if args.profile and i == 0:
                stem, dot, ext = args.profile.rpartition(".")
                prof = f"{stem}-{mode}.{ext}" if dot else f"{args.profile}-{mode}"
            r = _bench_once(ctx, settings, mode if batch == 1 else f"batched({batch})", args.events, batch,
                            args.poll_size, prof, args.target_rows)
            runs[mode].append(r)
            print(f"  run {i + 1}/{repeat} {r['mode']}: {r['readings_per_s']} readings/s, bare COPY "
                  f"{r['copy_readings_per_s']}/s, ratio {r['ratio']}", flush=True)
    results = [median_run(runs[m]) for m in modes]
    for r in results:
        print(f"{r['mode']:>14}: {r['readings_per_s']:>8} readings/s stored "
              f"({r['readings']} readings in {r['messages']} messages, {r['worker_s']} s); "
              f"bare COPY {r['copy_readings_per_s']} readings/s; ratio {r['ratio']} "
              f"(median of {r['runs']} runs, {r['ratio_min']}-{r['ratio_max']}); "
              f"worker CPU {r['worker_cpu_us_per_reading']} us/reading", flush=True)
    # Which Kafka client the worker used (TONGGUAN_STORE_CONSUMER), so runs compare like with like.
    print(f"store worker consumer: {settings.store_consumer}")
    print(json.dumps(results))
    return 0
