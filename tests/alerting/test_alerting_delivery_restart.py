"""Delivery chaos against the real services: `tongguan notify` SIGKILLed while a webhook is in
flight, then the receiver down and back. Per delivery key nothing arrives twice after the
receiver de-duplicates on ``X-Tongguan-Delivery``, nothing is missing, nothing stays undelivered,
and the re-send after the kill is marked as one and carries the same key."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import namedtuple
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from analytics.alerting.subscriptions import add_subscription
from analytics.chaos_bench import ChaosReceiver, notifier_config, publish_alerts, wait_for, worker_env
from tongguan.services import free_port

pytestmark = pytest.mark.integration

TONGGUAN = str(Path(sys.executable).with_name("tongguan"))


def _deliveries(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT key, status FROM notification_deliveries "
                                         "WHERE channel = 'webhook'")).all())


def test_notifier_killed_mid_delivery_and_receiver_outage(settings, engine, make_alert, tmp_path,
                                                          loopback_webhooks_allowed):
    port = free_port()
    receiver = ChaosReceiver(port, hold_s=3.0).start()
    add_subscription(engine, name="city hook", owner="gz.duty", adcode="440100", channels=["webhook"],
                     webhook_url=f"http://127.0.0.1:{port}/hook")
    config = notifier_config(tmp_path / "alerting.yaml")
    env = worker_env(settings, webhook_allow=f"127.0.0.1:{port}")
    now = datetime.now(UTC)
    first = make_alert(level="orange", first_seen=now)
    notify = [TONGGUAN, "notify", "--config", config, "--group-id", "chaos"]

    n1 = subprocess.Popen(notify, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    publish_alerts(settings, [first])
    wait_for(receiver.first.is_set, 60, "the first webhook", n1)
    n1.send_signal(signal.SIGKILL)  # the receiver has the delivery; the notifier never hears back
    n1.wait(30)
    time.sleep(0.5)
    receiver.stop()  # and now the receiver is down

    n2 = subprocess.Popen(notify, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        later = [make_alert(level="yellow", first_seen=now) for _ in range(3)]
        publish_alerts(settings, later)
        # every delivery fails against the dead receiver until it is parked (2 attempts)
        wait_for(lambda: len(_deliveries(engine)) >= 2 and "failed" in _deliveries(engine).values(), 60,
                 "a delivery parked while the receiver is down", n2)
        receiver = ChaosReceiver(port, after=receiver).start()
        t_back = time.monotonic()
        wait_for(lambda: set(_deliveries(engine).values()) == {"sent"}, 60, "every delivery sent", n2)
        recovered_s = time.monotonic() - t_back
    finally:
        n2.send_signal(signal.SIGTERM)
        n2.communicate(timeout=60)
        receiver.stop()

    deliveries = _deliveries(engine)
    got = receiver.by_key()
    # zero undelivered: every delivery the notifier made reached the receiver, and it says so
    assert set(deliveries.values()) == {"sent"} and set(got) == set(deliveries)
    # none twice after de-duplication: no alert event travels under two keys, and none is missing
    events = [e for reqs in got.values() for e in reqs[0]["events"]]
    assert len(events) == len(set(events))
    assert {a for a, _ in events} == {first, *later}
    # the delivery in flight at the kill went out again under its key, marked as a re-send
    (held_key,) = [k for k, reqs in got.items() if reqs[0]["events"][0][0] == first]
    again = got[held_key][1:]
    assert again and all(r["resend"] for r in again) and not got[held_key][0]["resend"]
    with engine.connect() as conn:
        outcomes = [o for (o,) in conn.execute(sa.text(
            "SELECT outcome FROM delivery_attempts WHERE delivery_key = :k ORDER BY attempt, id"), {"k": held_key})]
    assert outcomes[0] == "unknown" and outcomes[-1] == "ok"
    print(f"receiver back -> all delivered in {recovered_s:.1f} s; requests {len(receiver.requests)} "
          f"for {len(deliveries)} deliveries")


# ------------------------------------------------------------------------- poison on city.alerts
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
alert_like = st.fixed_dictionaries({"schema": st.just("alert/1")}, optional={"id": json_values | st.text()})
# json.dumps, not orjson: integers past 64 bits, NaN tokens and NUL characters are part of the fuzz
poison = (st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode())
          | alert_like.map(lambda d: json.dumps(d).encode()) | st.just(b"[" * 5000) | st.just(b""))
Rec = namedtuple("Rec", "topic partition offset value key timestamp")


@pytest.fixture
def fuzz_notifier(settings, engine):
    from analytics.alerting.config import AlertingConfig
    from analytics.alerting.notifier import Notifier

    n = Notifier(settings, engine=engine, config=AlertingConfig(group_wait=0.0))
    yield n
    if n._deadletters is not None:
        n._deadletters.producer.close()
    n._pool.shutdown()


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(poison, min_size=1, max_size=4))
def test_poison_on_city_alerts_never_stops_the_notifier(fuzz_notifier, settings, engine, make_alert, values):
    n = fuzz_notifier
    if not getattr(n, "_subscribed", False):
        add_subscription(engine, name="inbox", owner="gz.duty", adcode="440100", channels=["inbox"])
        n._subscribed = True
    good = make_alert(level="orange", first_seen=datetime.now(UTC))
    topic = settings.topic("alerts")
    # published an hour ago, as a poison replayed from the topic: the notifier does not wait for
    # an old id's commit (a fresh record's wait is notifier.commit_wait's doctest)
    old_ms = int((time.time() - 3600) * 1000)
    recs = [Rec(topic, 0, i, v, None, old_ms) for i, v in enumerate(values)]
    recs.insert(len(recs) // 2, Rec(topic, 0, 99, orjson.dumps({"schema": "alert/1", "id": good}), None, None))
    before = n.stats.get("internal_errors", 0)
    n.handle(recs)  # never raises
    with engine.connect() as conn:
        matched = conn.execute(sa.text("SELECT count(*) FROM notification_items WHERE alert_id = :a"),
                               {"a": good}).scalar()
    assert matched == 1  # the good alert beside the poison was matched
    assert n.stats.get("internal_errors", 0) - before <= len(values)
