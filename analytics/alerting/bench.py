"""``tongguan bench notify-latency``: from an alert on ``city.alerts`` to the signed webhook
received, against a bare signed POST to the same receiver as the in-run baseline."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from analytics.alerting.config import AlertingError


def register_bench(bench_sub) -> None:
    p = bench_sub.add_parser("notify-latency",
                             help="alert on city.alerts → signed webhook received: p50/p95/p99 (target p95 < 1 s)")
    p.add_argument("--alerts", type=int, default=200)
    p.add_argument("--rate", type=float, default=20.0, help="alerts per second")
    p.set_defaults(func=cmd_bench_notify)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile.

    >>> percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95)
    10
    """
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]


def allow_for_this_run(entry: str):
    """Add ``entry`` to TONGGUAN_WEBHOOK_ALLOW in this process; returns the function that
    restores the previous value. The settings are cached per process, hence the cache clears."""
    import os

    from tongguan.settings import get_settings

    before = os.environ.get("TONGGUAN_WEBHOOK_ALLOW")
    current = get_settings().webhook_allow
    os.environ["TONGGUAN_WEBHOOK_ALLOW"] = ",".join(x for x in (current, entry) if x)
    get_settings.cache_clear()

    def restore() -> None:
        if before is None:
            os.environ.pop("TONGGUAN_WEBHOOK_ALLOW", None)
        else:
            os.environ["TONGGUAN_WEBHOOK_ALLOW"] = before
        get_settings.cache_clear()

    return restore


def cmd_bench_notify(args, ctx) -> int:
    """A throw-away database and topic; a webhook subscription to an in-process receiver; the
    notifier in a thread; alerts written and published like the detector does, at ``--rate``."""
    import threading
    import uuid

    import sqlalchemy as sa
    from kafka import KafkaProducer

    from analytics.alerting.channels.webhook import WebhookReceiver, send_webhook
    from analytics.alerting.config import load_alerting
    from analytics.alerting.notifier import Notifier
    from analytics.alerting.subscriptions import add_subscription
    from tongguan.db import engine_for, upgrade
    from tongguan.services import ensure_topics

    ctx.require()
    restore_allow = None
    run = uuid.uuid4().hex[:8]
    dbname = f"tg_bench_notify_{run}"
    base = sa.make_url(ctx.database_url)
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {dbname}"))
    url = base.set(database=dbname).render_as_string(hide_password=False)
    try:
        upgrade(url)
        engine = engine_for(url)
        settings = ctx.settings.model_copy(update={"database_url": url, "kafka_bootstrap": ctx.kafka_bootstrap,
                                                   "topic_prefix": f"bench-{run}."})
        topic = settings.topic("alerts")
        ensure_topics(settings.kafka_bootstrap, settings.partitions, (topic,))
        received: dict[str, float] = {}
        lock = threading.Lock()

        def on_delivery(payload, headers):
            t = time.perf_counter()
            with lock:
                for a in payload.get("alerts") or []:
                    received.setdefault(a["id"], t)

        secret = "bench-secret"
        rec = WebhookReceiver(secret, on_delivery=on_delivery).start()
        # The receiver is the bench's own, on loopback, which the URL guard refuses unless
        # allow-listed: admit exactly its port, for this run only (restored below).
        restore_allow = allow_for_this_run(f"127.0.0.1:{rec.port}")
        # Baseline: a bare signed POST to the same receiver.
        base_ms = []
        for i in range(50):
            t = time.perf_counter()
            send_webhook(rec.url, secret, {"alerts": []}, delivery_key=f"baseline-{i}")
            base_ms.append((time.perf_counter() - t) * 1000)
        add_subscription(engine, name="bench", owner="bench", adcode="440100", channels=["webhook"],
                         webhook_url=rec.url, secret=secret)
        # Every alert measured on its own: no group interval (the first alert of a group waits
        # only group_wait, which is kept as configured).
        cfg = load_alerting()
        from dataclasses import replace

        cfg = replace(cfg, group_interval=0.0)
        notifier = Notifier(settings, engine=engine, config=cfg, group_id=f"bench-{run}")
        th = threading.Thread(target=notifier.run, daemon=True)
        th.start()
        if not notifier.ready.wait(60):
            raise AlertingError("the bench notifier got no partitions within 60 s")
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks=1, linger_ms=0)
        sent: dict[str, float] = {}
        counties = ["440103", "440104", "440105", "440106", "440111", "440112", "440113", "440114"]
        gap = 1.0 / args.rate
        t_next = time.perf_counter()
        for i in range(args.alerts):
            aid = f"bench-{run}-{i}"
            now = datetime.now(UTC)
            with engine.begin() as conn:  # the detector writes the alert, then publishes it
                conn.execute(sa.text(
                    "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, subject, adcode, city, "
                    "province, first_seen, last_seen) VALUES (:id, :id, 'rule:bench', 'yellow', 'flood', "
                    "'基准测试预警', 'sensor:bench', :c, '440100', '440000', :now, :now)"),
                    {"id": aid, "c": counties[i % len(counties)], "now": now})
            sent[aid] = time.perf_counter()
            producer.send(topic, key=aid.encode(), value=json.dumps({"schema": "alert/1", "id": aid}).encode())
            producer.flush()
            t_next += gap
            time.sleep(max(0.0, t_next - time.perf_counter()))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(received) < len(sent):
            time.sleep(0.05)
        notifier.stop()
        th.join(15)
        producer.close()
        rec.stop()
        lat = [(received[a] - sent[a]) * 1000 for a in sent if a in received]
        if not lat:
            raise AlertingError("no alert reached the webhook; is the notifier able to reach the broker?")
        result = {
            "alerts": len(sent), "delivered": len(lat), "rate_per_s": args.rate,
            "group_wait_s": cfg.group_wait,
            "latency_ms": {"p50": round(percentile(lat, 50), 1), "p95": round(percentile(lat, 95), 1),
                           "p99": round(percentile(lat, 99), 1), "max": round(max(lat), 1)},
            "baseline_bare_post_ms_p50": round(percentile(base_ms, 50), 2),
            "target_p95_ms": 1000, "p95_ok": percentile(lat, 95) < 1000,
        }
        print(json.dumps(result, indent=2))
        return 0 if len(lat) == len(sent) else 1
    finally:
        if restore_allow is not None:
            restore_allow()
        engine_for(url).dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"))
        admin.dispose()
