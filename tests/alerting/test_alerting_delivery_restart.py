"""Delivery chaos against the real services: `tongguan notify` SIGKILLed while a webhook is in
flight, then the receiver down and back. Per delivery key nothing arrives twice after the
receiver de-duplicates on ``X-Tongguan-Delivery``, nothing is missing, nothing stays undelivered,
and the re-send after the kill is marked as one and carries the same key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import namedtuple
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
import yaml
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from analytics.alerting.config import ALERTING_FILE
from analytics.alerting.subscriptions import add_subscription
from tongguan.services import free_port

pytestmark = pytest.mark.integration

TONGGUAN = str(Path(sys.executable).with_name("tongguan"))


class Receiver:
    """Records every request (key, attempt, re-send mark, alert events); holds the first one for
    ``hold_s`` before answering (the window in which the test kills the notifier)."""

    def __init__(self, port: int, hold_s: float = 0.0, *, after: "Receiver | None" = None):
        self.port, self.hold_s = port, hold_s
        # a receiver started again keeps the record of the one before (its database, say)
        self.requests: list[dict] = after.requests if after else []
        self.first = after.first if after else threading.Event()
        self.server = None

    def start(self) -> "Receiver":
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                outer.requests.append({"key": self.headers.get("X-Tongguan-Delivery"),
                                       "attempt": self.headers.get("X-Tongguan-Attempt"),
                                       "resend": self.headers.get("X-Tongguan-Resend") == "1",
                                       "events": [(a["id"], e) for a in body["alerts"] for e in a["events"]]})
                if not outer.first.is_set():
                    outer.first.set()
                    time.sleep(outer.hold_s)
                try:
                    self.send_response(200)
                    self.end_headers()
                except OSError:  # the notifier was killed while we held its request
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


def _env(settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGGUAN_")}
    env.update(TONGGUAN_DATABASE_URL=settings.database_url, TONGGUAN_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
               TONGGUAN_TOPIC_PREFIX=settings.topic_prefix, TONGGUAN_PARTITIONS=str(settings.partitions),
               TONGGUAN_HOME=str(settings.home))
    return env


def _config(tmp_path) -> str:
    cfg = yaml.safe_load(ALERTING_FILE.read_text(encoding="utf-8"))
    cfg["notify"].update(group_wait="0s", group_interval="0s", webhook_timeout="1s", send_lease="3s")
    cfg["notify"]["retry"].update(max_attempts=2, base="0.5s", max_backoff="1s", parked_every="2s",
                                  parked_for="1h")
    path = tmp_path / "alerting.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return str(path)


def _publish(settings, alert_ids) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for aid in alert_ids:
        p.send(settings.topic("alerts"), key=aid.encode(), value=orjson.dumps({"schema": "alert/1", "id": aid}))
    p.flush()
    p.close()


def _deliveries(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT key, status FROM notification_deliveries "
                                         "WHERE channel = 'webhook'")).all())


def _wait(cond, timeout: float, what: str, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the notifier died: {proc.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_notifier_killed_mid_delivery_and_receiver_outage(settings, engine, make_alert, tmp_path):
    port = free_port()
    receiver = Receiver(port, hold_s=3.0).start()
    add_subscription(engine, name="city hook", owner="gz.duty", adcode="440100", channels=["webhook"],
                     webhook_url=f"http://127.0.0.1:{port}/hook")
    config, env = _config(tmp_path), _env(settings)
    now = datetime.now(UTC)
    first = make_alert(level="orange", first_seen=now)
    notify = [TONGGUAN, "notify", "--config", config, "--group-id", "chaos"]

    n1 = subprocess.Popen(notify, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _publish(settings, [first])
    _wait(receiver.first.is_set, 60, "the first webhook", n1)
    n1.send_signal(signal.SIGKILL)  # the receiver has the delivery; the notifier never hears back
    n1.wait(30)
    time.sleep(0.5)
    receiver.stop()  # and now the receiver is down

    n2 = subprocess.Popen(notify, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        later = [make_alert(level="yellow", first_seen=now) for _ in range(3)]
        _publish(settings, later)
        # every delivery fails against the dead receiver until it is parked (2 attempts)
        _wait(lambda: len(_deliveries(engine)) >= 2 and "failed" in _deliveries(engine).values(), 60,
              "a delivery parked while the receiver is down", n2)
        receiver = Receiver(port, after=receiver).start()
        t_back = time.monotonic()
        _wait(lambda: set(_deliveries(engine).values()) == {"sent"}, 60, "every delivery sent", n2)
        recovered_s = time.monotonic() - t_back
    finally:
        n2.send_signal(signal.SIGTERM)
        n2.communicate(timeout=60)
        receiver.stop()

    deliveries = _deliveries(engine)
    got: dict[str, list[dict]] = {}
    for r in receiver.requests:
        got.setdefault(r["key"], []).append(r)
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
    recs = [Rec(topic, 0, i, v, None, None) for i, v in enumerate(values)]
    recs.insert(len(recs) // 2, Rec(topic, 0, 99, orjson.dumps({"schema": "alert/1", "id": good}), None, None))
    before = n.stats.get("internal_errors", 0)
    n.handle(recs)  # never raises
    with engine.connect() as conn:
        matched = conn.execute(sa.text("SELECT count(*) FROM notification_items WHERE alert_id = :a"),
                               {"a": good}).scalar()
    assert matched == 1  # the good alert beside the poison was matched
    assert n.stats.get("internal_errors", 0) - before <= len(values)
