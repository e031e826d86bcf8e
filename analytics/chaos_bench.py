"""``tongguan bench chaos-alerts``: detector kills, notifier kills and a receiver outage, measured.

Everything real and on this machine, in a throw-away database and topics of its own: the workers
run as their own processes (``tongguan detect``, ``tongguan notify``) and are SIGKILLed.

Detector: a stream of readings with incidents (gas leaks, road ponding over normal readings) is
stored by the store worker, then detected once by a detector left alone — the baseline — and once
by one SIGKILLed ``kills`` times at random moments while it works. Printed: the alerts of each
run, extra / missing / differing alerts (by dedupe key and first sighting), outbox messages left
unpublished, the time from each restart to its first progress, and the wall time against the
baseline's.

Notifier: alerts for one webhook subscriber, delivered once without faults (the baseline), then
again with ``tongguan notify`` SIGKILLed while the receiver holds a request and the receiver down
for ``outage`` seconds. Printed: deliveries, undelivered, duplicates after the receiver
de-duplicates on ``X-Tongguan-Delivery`` (an alert event under two keys), re-sends, and the time
from the receiver's return to the last delivery against the baseline's delivery time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import sqlalchemy as sa

ALERT_TABLES = ("alert_history", "alert_handling", "alert_outbox", "detect_offsets", "alert_rollup",
                "region_alert_status", "alerts")
# alert changes written, input offsets stored: either moves while the detector works
PROGRESS = "SELECT (SELECT count(*) FROM alert_history) + (SELECT coalesce(sum(next_offset), 0) FROM detect_offsets)"
DONE = "SELECT coalesce(sum(next_offset), 0) FROM detect_offsets"  # messages processed (fresh topics)
TONGGUAN = [sys.executable, "-m", "tongguan.cli"]
KILL_BATCH = 200  # records per transaction of a detector about to be killed


# ------------------------------------------------------------------------------------- pieces
class ChaosReceiver:
    """A webhook endpoint that records every request (delivery key, attempt, re-send mark, the
    alert events it carries) and holds the first one for ``hold_s`` before answering — the window
    in which a notifier is killed. ``after``: a receiver started again keeps the record of the one
    before (as its database would)."""

    def __init__(self, port: int, hold_s: float = 0.0, *, after: ChaosReceiver | None = None):
        self.port, self.hold_s = port, hold_s
        self.requests: list[dict] = after.requests if after else []
        self.first = after.first if after else threading.Event()
        self.server = None

    def start(self) -> ChaosReceiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                outer.requests.append({"key": self.headers.get("X-Tongguan-Delivery"),
                                       "attempt": self.headers.get("X-Tongguan-Attempt"),
                                       "resend": self.headers.get("X-Tongguan-Resend") == "1",
                                       "events": [(a["id"], e) for a in body["alerts"] for e in a["events"]],
                                       "at": time.monotonic()})
                if not outer.first.is_set():
                    outer.first.set()
                    time.sleep(outer.hold_s)
                try:
                    self.send_response(200)
                    self.end_headers()
                except OSError:  # the notifier was killed while its request was held
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def by_key(self) -> dict[str, list[dict]]:
        got: dict[str, list[dict]] = {}
        for r in self.requests:
            got.setdefault(r["key"], []).append(r)
        return got


def worker_env(settings, *, webhook_allow: str | None = None) -> dict:
    """The environment of a worker process on ``settings``' services, topics and database;
    ``webhook_allow``: TONGGUAN_WEBHOOK_ALLOW (a receiver on loopback, say)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGGUAN_")}
    env.update(TONGGUAN_DATABASE_URL=settings.database_url, TONGGUAN_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
               TONGGUAN_TOPIC_PREFIX=settings.topic_prefix, TONGGUAN_PARTITIONS=str(settings.partitions),
               TONGGUAN_HOME=str(settings.home))
    if webhook_allow:
        env["TONGGUAN_WEBHOOK_ALLOW"] = webhook_allow
    return env


def alert_snapshot(engine) -> dict[tuple, dict]:
    """The alerts by (dedupe key, first sighting): what two runs of one stream must agree on."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, dedupe_key, extract(epoch FROM first_seen), extract(epoch FROM last_seen), level, status, "
            "count FROM alerts")).all()
    return {(r[1], round(float(r[2]), 3)): {"id": r[0], "last_seen": round(float(r[3]), 3), "level": r[4],
                                             "status": r[5], "count": r[6]} for r in rows}


def compare_alerts(expected: dict, got: dict) -> dict:
    extra = sorted(set(got) - set(expected))
    missing = sorted(set(expected) - set(got))
    differing = sorted(k for k in set(expected) & set(got)
                       if (expected[k]["level"], expected[k]["status"]) != (got[k]["level"], got[k]["status"]))
    return {"extra": extra, "missing": missing, "differing": differing}


def clear_alerts(engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(ALERT_TABLES)} CASCADE"))


def _scalar(engine, sql: str):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


def _alive_or_raise(p, err, t0: float, timeout: float, what: str) -> None:
    """Raise, with the tail of its log, when the detector ``p`` died or has run ``timeout`` s."""
    died = p.poll() is not None
    if died or time.monotonic() - t0 > timeout:
        p.kill()
        p.wait(30)
        err.seek(0)
        tail = err.read().decode(errors="replace")[-3000:]
        raise RuntimeError(f"the detector {f'died ({p.returncode})' if died else what}; its log ends:\n{tail}")


def detect_with_kills(settings, engine, *, group: str, kills: int, seed: int = 5, total: int | None = None,
                      progress_timeout: float = 60.0) -> dict:
    """Run ``tongguan detect`` on ``group``, SIGKILL it up to ``kills`` times, then let a last one
    finish (``--until-idle``); returns its stats, how many kills landed before the stream was done,
    and per restart the seconds from the process start to its first progress.

    With ``total`` (the messages on the topics, which must be fresh for this group) the kills land
    at random points of the stream rather than at random times, so they land mid-stream however
    fast the machine is, and once the stream is done nothing is left to interrupt: a live detector
    with nothing to do rightly waits, it does not "progress". The killed lives then take small
    batches (``KILL_BATCH``) so that even a short stream is many transactions to land between, and
    the alerts must not depend on the batch size either. Without ``total``, each kill comes a
    random moment after the restart's first progress."""
    rng = random.Random(seed)
    env = worker_env(settings)
    targets = sorted(rng.uniform(0.05, 0.9) * total for _ in range(kills)) if total else []
    recovery = []
    landed = 0

    def finished() -> bool:
        return total is not None and _scalar(engine, DONE) >= total

    for i in range(kills):
        if finished():
            break  # nothing left to interrupt
        with tempfile.TemporaryFile() as err:  # a file, not a pipe nobody reads: a full pipe blocks the child
            p = subprocess.Popen([*TONGGUAN, "detect", "--group-id", group,
                                  *(["--batch-size", str(KILL_BATCH)] if total else [])], env=env,
                                 stdout=subprocess.DEVNULL, stderr=err)
            t0 = time.monotonic()
            before = _scalar(engine, PROGRESS)
            while _scalar(engine, PROGRESS) == before and not finished():
                _alive_or_raise(p, err, t0, progress_timeout, f"made no progress in {progress_timeout:.0f} s")
                time.sleep(0.05)
            recovery.append(round(time.monotonic() - t0, 2))
            while targets and _scalar(engine, DONE) < targets[i]:
                _alive_or_raise(p, err, t0, progress_timeout,
                                f"did not reach message {targets[i]:.0f} in {progress_timeout:.0f} s")
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.3 if targets else 1.5))
            p.send_signal(signal.SIGKILL)
            p.wait(30)
        landed += 1 if total is None or _scalar(engine, DONE) < total else 0
    last = subprocess.run([*TONGGUAN, "detect", "--group-id", group, "--until-idle"], env=env,
                          capture_output=True, timeout=1800, check=False)
    if last.returncode != 0:
        raise RuntimeError(f"the last detector failed: {last.stderr.decode()[-2000:]}")
    return {"stats": json.loads(last.stderr.decode().strip().splitlines()[-1]), "kills": landed,
            "restart_to_progress_s": recovery}


def chaos_stream(*, seed: int, sensors: int, hours: float, start: datetime):
    """Readings every minute from gas and ponding sensors in central Guangzhou, with incidents:
    about one sensor in eight has a leak (or ponding) of 10–40 minutes, some have two."""
    from ingest.simulator import Message

    rng = random.Random(seed)
    kinds = [("gas_lel", "%LEL", 0.5, [12, 22, 30, 55]), ("ponding_depth", "cm", 0.0, [20, 25, 30])]
    plan = []
    for i in range(sensors):
        metric, unit, normal, peak = kinds[i % 2]
        incidents = []
        if rng.random() < 0.125:
            for _ in range(rng.choice((1, 1, 2))):
                a = rng.uniform(0.1, 0.8) * hours * 60
                incidents.append((a, a + rng.uniform(10, 40)))
        plan.append((f"chaos-{metric}-{i:04d}", metric, unit, normal, peak, incidents,
                     113.25 + rng.random() * 0.15, 23.08 + rng.random() * 0.1))
    for minute in range(int(hours * 60)):
        ts = (start + timedelta(minutes=minute)).isoformat()
        for sid, metric, unit, normal, peak, incidents, lon, lat in plan:
            value = normal
            for a, b in incidents:
                if a <= minute < b:
                    value = peak[min(int(minute - a) // 3, len(peak) - 1)]
            yield Message("readings", sid, orjson.dumps({
                "schema": "reading/1", "event_id": f"{sid}-{minute}", "sensor_id": sid, "metric": metric,
                "value": value, "unit": unit, "ts": ts, "lon": round(lon, 6), "lat": round(lat, 6)}),
                start + timedelta(minutes=minute))


# ------------------------------------------------------------------------------------- the bench
def _insert_alert(conn, aid: str, level: str, first_seen: datetime) -> None:
    conn.execute(sa.text(
        "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, detail, subject, adcode, city, province, "
        "first_seen, last_seen, status) VALUES (:id, :k, 'rule:chaos', :lv, 'lifeline', :t, '{}'::jsonb, :s, "
        "'440106', '440100', '440000', :fs, :fs, 'open')"),
        {"id": aid, "k": f"rule:chaos|{aid}", "lv": level, "t": f"演练预警 {aid}", "s": f"sensor:{aid}",
         "fs": first_seen})


def publish_alerts(settings, ids) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for aid in ids:
        p.send(settings.topic("alerts"), key=aid.encode(), value=orjson.dumps({"schema": "alert/1", "id": aid}))
    p.flush()
    p.close()


def _deliveries(engine, sub_id: int) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT key, status FROM notification_deliveries WHERE subscription_id = :s"),
                                 {"s": sub_id}).all())


def wait_for(cond, timeout: float, what: str, proc=None) -> None:
    """Until ``cond()``; an error when ``proc`` (a worker) dies first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the notifier died: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def notifier_config(path) -> str:
    import yaml

    from analytics.alerting.config import ALERTING_FILE
    from tongguan.yamlfile import read_yaml

    cfg = read_yaml(ALERTING_FILE, "alerting configuration")
    cfg["notify"].update(group_wait="0s", group_interval="0s", webhook_timeout="1s", send_lease="3s")
    cfg["notify"]["retry"].update(max_attempts=2, base="0.5s", max_backoff="1s", parked_every="2s", parked_for="1h")
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return str(path)


def _notify_round(settings, engine, config: str, *, n_alerts: int, kill: bool, outage: float) -> dict:
    from analytics.alerting.subscriptions import add_subscription
    from tongguan.services import free_port

    port = free_port()
    receiver = ChaosReceiver(port, hold_s=3.0 if kill else 0.0).start()
    sub = add_subscription(engine, name=f"chaos {uuid.uuid4().hex[:6]}", owner="chaos", adcode="440100",
                           channels=["webhook"], webhook_url=f"http://127.0.0.1:{port}/hook")
    group = f"chaos-{uuid.uuid4().hex[:6]}"
    cmd = [*TONGGUAN, "notify", "--config", config, "--group-id", group]
    env = worker_env(settings, webhook_allow=f"127.0.0.1:{port}")
    now = datetime.now(UTC)
    ids = [f"chaos-{uuid.uuid4().hex[:10]}" for _ in range(n_alerts)]
    with engine.begin() as conn:
        for i, aid in enumerate(ids):
            _insert_alert(conn, aid, "orange" if i % 2 else "yellow", now)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    back_at = t0
    try:
        publish_alerts(settings, ids[:1] if kill else ids)
        if kill:
            wait_for(receiver.first.is_set, 120, "the first webhook", proc)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            receiver.stop()
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            publish_alerts(settings, ids[1:])
            time.sleep(outage)
            receiver = ChaosReceiver(port, after=receiver).start()
            back_at = time.monotonic()
        wait_for(lambda: (d := _deliveries(engine, sub["id"])) and set(d.values()) == {"sent"}
              and {a for reqs in receiver.by_key().values() for a, _ in reqs[0]["events"]} >= set(ids),
              300, "every delivery sent", proc)
        done_s = time.monotonic() - back_at
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        receiver.stop()
    deliveries = _deliveries(engine, sub["id"])
    got = receiver.by_key()
    events = [e for reqs in got.values() for e in reqs[0]["events"]]
    return {"alerts": n_alerts, "deliveries": len(deliveries),
            "undelivered": sum(1 for s in deliveries.values() if s != "sent") + len(set(deliveries) - set(got)),
            "duplicates_after_dedupe": len(events) - len(set(events)),
            "missing_alerts": len(set(ids) - {a for a, _ in events}),
            "requests": len(receiver.requests), "resent": sum(1 for r in receiver.requests if r["resend"]),
            "delivered_s": round(done_s, 2)}


def run_chaos_alerts(settings, services, *, kills: int = 5, sensors: int = 200, hours: float = 3.0,
                     n_alerts: int = 6, outage: float = 6.0, seed: int = 11) -> dict:
    import tempfile
    from pathlib import Path

    from analytics.bench import drop_db, scratch_db
    from ingest.simulator import produce
    from ingest.worker import StoreWorker, WorkerConfig
    from tongguan.db import engine_for
    from tongguan.services import ensure_topics
    from tongguan.settings import TOPICS

    prefix = f"chaos{uuid.uuid4().hex[:6]}."
    db_name, db_url = scratch_db(services)
    bench = settings.model_copy(update={"topic_prefix": prefix, "database_url": db_url,
                                        "kafka_bootstrap": services.kafka_bootstrap})
    ensure_topics(bench.kafka_bootstrap, bench.partitions, tuple(bench.topic(t) for t in TOPICS))
    engine = engine_for(db_url)
    try:
        from geo import load_regions

        load_regions(engine, ("440000",), progress=False)  # the store worker places every reading
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours + 0.5)
        produced = produce(chaos_stream(seed=seed, sensors=sensors, hours=hours, start=start), bench)
        StoreWorker(bench, WorkerConfig(until_idle=True)).run()

        t0 = time.monotonic()
        base = detect_with_kills(bench, engine, group="baseline", kills=0)
        base_wall = time.monotonic() - t0
        expected = alert_snapshot(engine)
        clear_alerts(engine)
        t0 = time.monotonic()
        chaos = detect_with_kills(bench, engine, group="chaos", kills=kills, seed=seed, total=produced)
        chaos_wall = time.monotonic() - t0
        got = alert_snapshot(engine)
        diff = compare_alerts(expected, got)
        detector = {"readings": produced, "kills": chaos["kills"], "baseline_alerts": len(expected), "alerts": len(got),
                    "extra": len(diff["extra"]), "missing": len(diff["missing"]),
                    "differing": len(diff["differing"]),
                    "outbox_left": _scalar(engine, "SELECT count(*) FROM alert_outbox"),
                    "restart_to_progress_s": chaos["restart_to_progress_s"],
                    "baseline_wall_s": round(base_wall, 1), "chaos_wall_s": round(chaos_wall, 1),
                    "wall_ratio": round(chaos_wall / base_wall, 2) if base_wall else None,
                    "baseline_messages": base["stats"]["messages"], "last_run_messages": chaos["stats"]["messages"]}
        clear_alerts(engine)
        with tempfile.TemporaryDirectory() as tmp:
            config = notifier_config(Path(tmp) / "alerting.yaml")
            baseline = _notify_round(bench, engine, config, n_alerts=n_alerts, kill=False, outage=0.0)
            faulty = _notify_round(bench, engine, config, n_alerts=n_alerts, kill=True, outage=outage)
        notifier = {"baseline": baseline, "kill_and_outage": {**faulty, "kills": 1, "outage_s": outage},
                    "receiver_back_to_all_delivered_s": faulty["delivered_s"],
                    "ratio_to_baseline": round(faulty["delivered_s"] / baseline["delivered_s"], 2)
                    if baseline["delivered_s"] else None}
        return {"detector": detector, "notifier": notifier}
    finally:
        engine.dispose()
        drop_db(services, db_name)


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value
    return parse


def register_bench(bench_sub) -> None:
    p = bench_sub.add_parser("chaos-alerts", help="detector kills, notifier kills, a receiver outage: extra / "
                                                  "missing alerts, undelivered / duplicate deliveries, recovery")
    p.add_argument("--kills", type=_positive(int), default=5, help="SIGKILLs of the detector (default 5)")
    p.add_argument("--sensors", type=_positive(int), default=200, help="sensors in the stream (default 200)")
    p.add_argument("--hours", type=_positive(float), default=3.0, help="hours of stream time (default 3)")
    p.add_argument("--alerts", type=_positive(int), default=6, help="alerts for the notifier rounds (default 6)")
    p.add_argument("--outage", type=_positive(float), default=6.0, help="seconds the receiver is down (default 6)")
    p.set_defaults(func=cmd_bench_chaos_alerts)


def cmd_bench_chaos_alerts(args, ctx) -> int:
    services = ctx.require()
    result = run_chaos_alerts(ctx.settings, services, kills=args.kills, sensors=args.sensors, hours=args.hours,
                              n_alerts=args.alerts, outage=args.outage)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    return 0
