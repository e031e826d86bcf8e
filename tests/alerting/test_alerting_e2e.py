"""The notifier on the real broker (consume, commit, replay), escalation notified from the tick,
and the ``tongguan alerts`` / ``tongguan subscriptions`` commands."""

from __future__ import annotations

import doctest
import importlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from analytics.alerting.channels.webhook import WebhookReceiver
from analytics.alerting.config import AlertingConfig
from analytics.alerting.notifier import Notifier
from analytics.alerting.subscriptions import add_subscription, inbox
from tongguan.cli import main

pytestmark = pytest.mark.integration
CFG = AlertingConfig(group_wait=0.05, group_interval=0.0, unacknowledged={"orange": 900.0}, tick_every=3600)


def _wait_for(cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _produce(settings, *values: bytes):
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    for v in values:
        p.send(settings.topic("alerts"), value=v)
    p.flush()
    p.close()


def _run(settings, engine):
    n = Notifier(settings, engine=engine, config=CFG)
    th = threading.Thread(target=n.run, daemon=True)
    th.start()
    assert n.ready.wait(60), "notifier got no partitions"
    return n, th


def test_notifier_consumes_the_topic_and_a_replay_sends_nothing_twice(settings, engine, make_alert):
    secret = "s3cret"
    with WebhookReceiver(secret) as rec:
        add_subscription(engine, name="gz", owner="gz", adcode="440100", channels=["webhook"],
                         webhook_url=rec.url, secret=secret)
        n, th = _run(settings, engine)
        aid = make_alert(level="orange", first_seen=datetime.now(UTC))  # not due for escalation
        msg = json.dumps({"schema": "alert/1", "id": aid, "level": "orange"}).encode()
        _produce(settings, b"not json at all", msg)
        assert _wait_for(lambda: len(rec.received) == 1)
        n.stop()
        th.join(30)
        # A restarted notifier (same group) sees the message replayed: nothing is sent twice.
        n2, th2 = _run(settings, engine)
        _produce(settings, msg)
        assert _wait_for(lambda: n2.stats["messages"] >= 1)
        n2.step([])
        n2.stop()
        th2.join(30)
        assert len(rec.received) == 1 and rec.requests == 1
        assert rec.received[0]["alerts"][0]["id"] == aid and rec.rejected == []
    assert n.stats["messages"] == 2  # the bad message was skipped, not fatal


def test_escalation_on_the_tick_notifies_the_city_desk(settings, engine, make_alert):
    add_subscription(engine, name="city desk", owner="desk", adcode="440100", channels=["inbox"], escalated_only=True)
    add_subscription(engine, name="county", owner="county", adcode="440106", channels=["inbox"])
    t0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
    aid = make_alert(level="orange", first_seen=t0)
    n = Notifier(settings, engine=engine, config=CFG)
    n.step([aid], now=t0)
    n.step([], now=t0 + timedelta(seconds=1))  # after the group wait
    assert inbox(engine, "desk") == [] and len(inbox(engine, "county")) == 1
    out = n.tick(now=t0 + timedelta(minutes=16))
    assert out["escalated"] == [(aid, "440100")]
    n.step([], now=t0 + timedelta(minutes=16, seconds=1))
    desk = inbox(engine, "desk")
    assert len(desk) == 1 and aid in desk[0]["alert_ids"]
    assert len(inbox(engine, "county")) == 1  # the county is not told twice
    n._pool.shutdown()


@pytest.fixture
def cli(settings, monkeypatch, capsys):
    monkeypatch.setenv("TONGGUAN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TONGGUAN_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("TONGGUAN_TOPIC_PREFIX", settings.topic_prefix)
    from tongguan.settings import get_settings

    get_settings.cache_clear()

    def run(*argv):
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    yield run
    get_settings.cache_clear()


def test_alerts_commands(cli, make_alert, engine):
    aid = make_alert(level="orange")
    code, out, _ = cli("alerts", "list", "--region", "440100")
    assert code == 0 and aid in out
    assert cli("alerts", "ack", aid, "--actor", "li")[1].strip() == f"{aid}: acknowledged"
    code, _, err = cli("alerts", "close", aid, "--actor", "li")
    assert code == 1 and "not resolved yet" in err and "Traceback" not in err
    assert cli("alerts", "dispatch", aid, "--to-unit", "排水所", "--due", "+2h")[0] == 0
    assert cli("alerts", "resolve", aid, "--note", "疏通完毕")[0] == 0
    assert cli("alerts", "close", aid)[1].strip() == f"{aid}: closed"
    code, out, _ = cli("alerts", "show", aid)
    shown = json.loads(out)
    assert [h["action"] for h in shown["history"]] == ["acknowledged", "dispatched", "resolved", "closed"]
    assert shown["handling"]["assigned_unit"] == "排水所"
    make_alert(level="red", adcode="440104")
    code, out, _ = cli("alerts", "rollup", "440100", "--json")
    r = json.loads(out)
    assert r["region"]["open_total"] == 1 and r["region"]["worst_level"] == "red"
    assert [c["adcode"] for c in r["children"]] == ["440104", "440106"]
    code, _, err = cli("alerts", "ack", "no-such-alert")
    assert code == 1 and "no alert" in err
    assert cli("alerts", "silence", "--region", "440106", "--until", "+1h", "--reason", "检修")[0] == 0
    assert "检修" in cli("alerts", "silences")[1]


def test_subscriptions_commands(cli, engine):
    with WebhookReceiver(lambda path: secrets[0]) as rec:
        secrets = ["x"]
        code, out, _ = cli("subscriptions", "add", "--name", "gz hook", "--owner", "gz", "--region", "440100",
                           "--channels", "webhook,inbox", "--webhook-url", rec.url, "--themes", "flood",
                           "--min-level", "orange", "--quiet", "22:00-07:00")
        assert code == 0
        sid = int(out.split()[1])
        secrets[0] = out.strip().split()[-1]
        code, out, _ = cli("subscriptions", "test", str(sid))
        assert code == 0 and "webhook  ok" in out
        assert rec.received and rec.received[0]["kind"] == "test"
    code, out, _ = cli("subscriptions", "list")
    assert "gz hook" in out and "quiet 22:00-07:00" in out
    code, _, err = cli("subscriptions", "add", "--name", "bad", "--region", "440100", "--channels", "pigeon")
    assert code == 1 and "channels must be" in err
    code, _, err = cli("subscriptions", "add", "--name", "bad", "--region", "440100", "--channels", "webhook")
    assert code == 1 and "--webhook-url" in err
    assert cli("subscriptions", "remove", str(sid))[0] == 0
    assert "no subscriptions" in cli("subscriptions", "list")[1]
    with engine.connect() as conn:
        logged = conn.execute(sa.text("SELECT outcome FROM delivery_attempts")).scalars().all()
    assert sorted(logged) == ["ok", "ok"]


@pytest.mark.parametrize("module", ["analytics.alerting.lifecycle", "analytics.alerting.linkage",
                                    "analytics.alerting.subscriptions", "analytics.alerting.channels.webhook",
                                    "analytics.alerting.config", "analytics.alerting.cli",
                                    "analytics.alerting.bench", "analytics.alerting.channels"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_demo_subscriptions_are_idempotent(engine):
    from analytics.alerting.demo import ensure_demo_subscriptions

    a = ensure_demo_subscriptions(engine, region="440100", webhook_url="http://127.0.0.1:8099/hook", email="d@x.org")
    b = ensure_demo_subscriptions(engine, region="440100", webhook_url="http://127.0.0.1:8100/hook", email="d@x.org")
    assert {k: v["id"] for k, v in a.items()} == {k: v["id"] for k, v in b.items()}
    assert a["webhook"]["secret"] == b["webhook"]["secret"]
    with engine.connect() as conn:
        url = conn.execute(sa.text("SELECT webhook_url FROM subscriptions WHERE id = :i"), {"i": a["webhook"]["id"]}).scalar()
    assert url.endswith(":8100/hook")


def test_demo_configuration_loads():
    from analytics.alerting.config import ALERTING_FILE, load_alerting

    demo = load_alerting(str(ALERTING_FILE.with_name("alerting-demo.yaml")))
    assert demo.unacknowledged["orange"] == 120 and load_alerting().unacknowledged["orange"] == 900


def test_bench_notify_latency_reaches_its_own_receiver_under_the_url_guard(cli):
    """The bench's receiver is on loopback, which the URL guard refuses by default (no
    TONGGUAN_WEBHOOK_ALLOW here): the bench admits its own port for its run, and only then."""
    import os

    code, out, err = cli("bench", "notify-latency", "--alerts", "10")
    assert code == 0, err[-2000:]
    result = json.loads(out[out.index("{"):])
    assert (result["alerts"], result["delivered"]) == (10, 10)
    assert "TONGGUAN_WEBHOOK_ALLOW" not in os.environ
