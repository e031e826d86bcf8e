"""Subscriptions and delivery: matching, grouping, silences, inhibition, quiet hours, retries and
parking, idempotency across restarts, inbox, signed webhook and e-mail over a real SMTP server."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from analytics.alerting.channels.webhook import WebhookReceiver, sign, verify
from analytics.alerting.config import AlertingConfig, InhibitRule
from analytics.alerting.linkage import add_silence
from analytics.alerting.notifier import Notifier
from analytics.alerting.subscriptions import (
    add_subscription,
    inbox,
    mark_read,
    remove_subscription,
    unread_count,
)

pytestmark = pytest.mark.integration

CFG = AlertingConfig(group_wait=0.0, group_interval=60.0, retry_max_attempts=3, retry_base=1.0,
                     retry_max_backoff=10.0, webhook_timeout=2.0, unacknowledged={"orange": 900.0},
                     inhibit=(InhibitRule("outage", ("rule:power-outage*",), "blue", ("rule:offline*",)),))
T0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)  # 10:00 in Guangzhou


def _items(engine, **where):
    sql = "SELECT alert_id, event, state, reason FROM notification_items"
    if where:
        sql += " WHERE " + " AND ".join(f"{k} = :{k}" for k in where)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql + " ORDER BY id"), where).mappings()]


def _deliveries(engine):
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT key, channel, status, attempts, alert_ids, payload FROM notification_deliveries ORDER BY created_at, key"
        )).mappings()]


@pytest.fixture
def receiver():
    secrets: dict[str, str] = {}
    r = WebhookReceiver(lambda path: secrets.get("s")).start()
    r.secrets = secrets
    yield r
    r.stop()


@pytest.fixture
def notifier(settings, engine):
    n = Notifier(settings, engine=engine, config=CFG)
    yield n
    n._pool.shutdown()


def _hook(engine, receiver, **kw):
    sub = add_subscription(engine, name=kw.pop("name", "city hook"), owner=kw.pop("owner", "gz.duty"),
                           adcode=kw.pop("adcode", "440100"), channels=kw.pop("channels", ["webhook"]),
                           webhook_url=receiver.url, **kw)
    receiver.secrets["s"] = sub["secret"]
    return sub


def test_signature_roundtrip_and_replay_window():
    body = b'{"x": 1}'
    sig = sign("secret", 1000, body)
    assert verify("secret", "1000", body, sig, now=1010) == (True, "ok")
    assert verify("secret", "1000", body + b" ", sig, now=1010)[1] == "signature mismatch"
    assert verify("other", "1000", body, sig, now=1010)[1] == "signature mismatch"
    assert "replay" in verify("secret", "1000", body, sig, now=5000)[1]


def test_matching_by_subtree_theme_level(engine, notifier, make_alert):
    s_city = add_subscription(engine, name="gz", owner="a", adcode="440100", channels=["inbox"])
    s_flood_orange = add_subscription(engine, name="gz flood", owner="b", adcode="440100", channels=["inbox"],
                                      themes=["flood"], min_level="orange")
    s_sz = add_subscription(engine, name="sz", owner="c", adcode="440300", channels=["inbox"])
    a_yellow = make_alert(level="yellow", theme="flood")
    a_orange = make_alert(level="orange", theme="flood")
    a_traffic = make_alert(level="red", theme="traffic", adcode="440305", city="440300")
    for a in (a_yellow, a_orange, a_traffic):
        notifier.process_alert(a, now=T0)
    got = {(i["alert_id"], i["event"]) for i in _items(engine, subscription_id=s_city["id"])}
    assert got == {(a_yellow, "level:yellow"), (a_orange, "level:orange")}
    assert {i["alert_id"] for i in _items(engine, subscription_id=s_flood_orange["id"])} == {a_orange}
    # Red goes one level up at once, so Shenzhen's subscription hears it twice (new; escalated to it).
    assert {i["event"] for i in _items(engine, subscription_id=s_sz["id"])} == {"level:red", "escalated:440300"}


def test_storm_is_one_message_then_one_digest(engine, notifier, receiver, make_alert):
    _hook(engine, receiver)
    first = [make_alert(level="yellow", adcode=ad) for ad in ("440106", "440104")]
    notifier.step(first, now=T0)
    storm = [make_alert(level="yellow", adcode=ad) for ad in ["440111", "440112", "440113"] * 13]  # 39 more
    notifier.step(storm, now=T0 + timedelta(seconds=5))
    notifier.step([], now=T0 + timedelta(seconds=30))
    assert len(receiver.received) == 1  # within the group interval: held
    notifier.step([], now=T0 + timedelta(seconds=61))
    assert len(receiver.received) == 2
    lead, digest = receiver.received
    assert lead["count"] == 2 and {a["id"] for a in lead["alerts"]} == set(first)
    assert digest["kind"] == "digest" and digest["count"] == 39
    assert {a["id"] for a in digest["alerts"]} == set(storm)
    assert all(a["schema"] == "alert/1" and a["events"] == ["level:yellow"] for a in digest["alerts"])
    assert receiver.rejected == []


def test_red_is_not_held_by_the_group_interval(engine, notifier, receiver, make_alert):
    _hook(engine, receiver)
    notifier.step([make_alert(level="yellow")], now=T0)
    notifier.step([make_alert(level="red", adcode="440104")], now=T0 + timedelta(seconds=2))
    assert len(receiver.received) == 2 and receiver.received[1]["top_level"] == "red"


def test_restarted_notifier_sends_nothing_twice(settings, engine, receiver, make_alert):
    _hook(engine, receiver)
    aid = make_alert(level="orange")
    n1 = Notifier(settings, engine=engine, config=CFG)
    n1.step([aid], now=T0)
    n1._pool.shutdown()
    n2 = Notifier(settings, engine=engine, config=CFG)  # a restart re-reads the same message
    n2.step([aid, aid], now=T0 + timedelta(minutes=5))
    n2.step([aid], now=T0 + timedelta(minutes=10))
    n2._pool.shutdown()
    assert len(receiver.received) == 1
    assert len(_items(engine)) == 1 and len(_deliveries(engine)) == 1


def test_retry_with_backoff_then_success_every_attempt_logged(engine, notifier, receiver, make_alert):
    _hook(engine, receiver)
    receiver.fail_first = 2
    notifier.step([make_alert()], now=T0)
    d = _deliveries(engine)[0]
    assert d["status"] == "retrying" and d["attempts"] == 1
    notifier.send_due(now=T0 + timedelta(seconds=0.5))  # backoff 1 s: not yet
    assert _deliveries(engine)[0]["attempts"] == 1
    notifier.send_due(now=T0 + timedelta(seconds=1.1))
    assert _deliveries(engine)[0]["attempts"] == 2 and _deliveries(engine)[0]["status"] == "retrying"
    notifier.send_due(now=T0 + timedelta(seconds=2.5))  # backoff 2 s after attempt 2: not yet
    notifier.send_due(now=T0 + timedelta(seconds=3.2))
    d = _deliveries(engine)[0]
    assert d["status"] == "sent" and d["attempts"] == 3 and len(receiver.received) == 1
    with engine.connect() as conn:
        attempts = conn.execute(sa.text("SELECT attempt, outcome, detail FROM delivery_attempts ORDER BY id")).all()
    assert [(a, o) for a, o, _ in attempts] == [(1, "error"), (2, "error"), (3, "ok")]
    assert attempts[0][2] == "HTTP 503"


def test_unreachable_webhook_is_parked_as_failed_then_retried_slowly(engine, notifier, make_alert):
    add_subscription(engine, name="dead", owner="x", adcode="440100", channels=["webhook"],
                     webhook_url="http://127.0.0.1:9/nothing-listens-here")
    notifier.step([make_alert()], now=T0)
    for s in (1.5, 4, 9):
        notifier.send_due(now=T0 + timedelta(seconds=s))
    d = _deliveries(engine)[0]
    assert d["status"] == "failed" and d["attempts"] == 3
    notifier.send_due(now=T0 + timedelta(seconds=60))
    assert _deliveries(engine)[0]["attempts"] == 3  # parked: not before the slower schedule
    notifier.send_due(now=T0 + timedelta(seconds=9 + CFG.retry_parked_every + 1))
    d = _deliveries(engine)[0]
    assert (d["status"], d["attempts"]) == ("failed", 4)  # tried once more, parked again
    notifier.send_due(now=T0 + timedelta(seconds=CFG.retry_parked_for + 3600))
    assert _deliveries(engine)[0]["attempts"] == 4  # past retry_parked_for: given up


def test_silence_stops_notifications_but_keeps_alert(engine, notifier, receiver, make_alert):
    _hook(engine, receiver)
    add_silence(engine, adcode="440106", starts_at=T0 - timedelta(minutes=1), ends_at=T0 + timedelta(hours=1),
                themes=["flood"], reason="泵站检修", created_by="ops")
    silenced = make_alert(adcode="440106", theme="flood")
    elsewhere = make_alert(adcode="440104", theme="flood")
    notifier.step([silenced, elsewhere], now=T0)
    states = {i["alert_id"]: (i["state"], i["reason"]) for i in _items(engine)}
    assert states[silenced][0] == "silenced" and "泵站检修" in states[silenced][1]
    assert states[elsewhere][0] == "grouped"
    assert [a["id"] for a in receiver.received[0]["alerts"]] == [elsewhere]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM alerts WHERE id = :i"), {"i": silenced}).scalar() == "open"


def test_umbrella_alert_inhibits_offline_notifications(engine, notifier, receiver, make_alert):
    _hook(engine, receiver)
    make_alert(source="rule:power-outage", theme="lifeline", level="orange", alert_id="outage-1")
    offline = make_alert(source="rule:offline", level="blue")
    notifier.step([offline], now=T0)
    assert _items(engine, alert_id=offline)[0]["state"] == "inhibited"
    assert all(offline not in [a["id"] for a in r["alerts"]] for r in receiver.received)
    with engine.connect() as conn:
        notes = conn.execute(sa.text("SELECT action, note FROM alert_history WHERE alert_id = :i"), {"i": offline}).all()
    assert notes[0][0] == "inhibited" and "outage-1" in notes[0][1]


def test_quiet_hours_hold_all_but_red(engine, notifier, make_alert):
    sub = add_subscription(engine, name="night", owner="n", adcode="440100", channels=["inbox"],
                           quiet_start="22:00", quiet_end="07:00")
    night = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)  # 00:00 in Guangzhou
    notifier.step([make_alert(level="orange"), make_alert(level="red", adcode="440104")], now=night)
    msgs = inbox(engine, "n")
    assert len(msgs) == 1 and msgs[0]["top_level"] == "red"
    morning = datetime(2026, 6, 1, 23, 30, tzinfo=UTC)  # 07:30
    notifier.step([], now=morning)
    assert [m["top_level"] for m in inbox(engine, "n")] == ["orange", "red"]
    assert sub["id"]


def test_inbox_read_unread(engine, notifier, make_alert):
    add_subscription(engine, name="me", owner="li", adcode="440106", channels=["inbox"])
    notifier.step([make_alert(level="orange")], now=T0)
    notifier.step([make_alert(level="red")], now=T0 + timedelta(minutes=5))
    assert unread_count(engine, "li") == 2
    first = inbox(engine, "li")[-1]
    assert "橙色预警" in first["title"]
    mark_read(engine, "li", [first["id"]])
    assert unread_count(engine, "li") == 1 and len(inbox(engine, "li", unread_only=True)) == 1
    mark_read(engine, "li")
    assert unread_count(engine, "li") == 0


def test_one_alert_is_one_inbox_item_new_then_escalated(engine, notifier, make_alert):
    """Issue 14 item 7: the Guangzhou desk hears of a Tianhe alert when it is new and again when it
    is escalated to the city: one item, updated (unread again, both events), linked to the alert."""
    add_subscription(engine, name="gz all", owner="gz-operator", adcode="440100", channels=["inbox"])
    add_subscription(engine, name="gz desk", owner="gz-operator", adcode="440100", channels=["inbox"],
                     escalated_only=True)
    aid = make_alert(level="orange", first_seen=T0)
    other = make_alert(level="yellow", adcode="440104", first_seen=T0)
    notifier.step([aid, other], now=T0)
    msgs = inbox(engine, "gz-operator")
    assert sorted(m["alert_id"] for m in msgs) == sorted([aid, other])  # a digest: one item per alert
    mark_read(engine, "gz-operator")
    out = notifier.tick(now=T0 + timedelta(minutes=16))
    assert (aid, "440100") in out["escalated"]
    notifier.step([], now=T0 + timedelta(minutes=17))
    msgs = {m["alert_id"]: m for m in inbox(engine, "gz-operator")}
    assert len(msgs) == 2 and unread_count(engine, "gz-operator") == 1
    item = msgs[aid]
    assert item["read_at"] is None and item["alert_ids"] == [aid]
    assert item["events"] == ["escalated:440100", "level:orange"] and "escalated" in item["title"]
    assert inbox(engine, "gz-operator")[0]["alert_id"] == aid  # the update brings it to the top
    # Three deliveries were made (new; escalated, for each of the two subscriptions) and the log
    # keeps them all; the inbox shows one item.
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM notification_deliveries WHERE channel = 'inbox' "
                                    "AND :a = ANY(alert_ids)"), {"a": aid}).scalar() == 3


def test_email_arrives_at_a_real_smtp_server(settings_factory, engine, make_alert):
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    from tongguan.services import free_port

    got = []

    class Collect(Message):
        def handle_message(self, message):
            got.append(message)

    port = free_port()
    ctl = Controller(Collect(), hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        s = settings_factory(smtp_host="127.0.0.1", smtp_port=port, smtp_from="alerts@tongguan.test")
        n = Notifier(s, engine=engine, config=CFG)
        add_subscription(engine, name="mail", owner="wang", adcode="440100", channels=["email", "inbox"],
                         email="wang@example.org")
        aid = make_alert(level="orange")
        n.step([aid], now=T0)
        n._pool.shutdown()
    finally:
        ctl.stop()
    assert len(got) == 1
    msg = got[0]
    assert msg["To"] == "wang@example.org" and msg["From"] == "alerts@tongguan.test"
    assert "橙色预警" in str(email.header.make_header(email.header.decode_header(msg["Subject"])))
    parts = {p.get_content_type(): p for p in msg.walk()}
    attached = json.loads(parts["application/json"].get_payload(decode=True))
    assert attached["alerts"][0]["id"] == aid
    assert {d["channel"]: d["status"] for d in _deliveries(engine)} == {"email": "sent", "inbox": "sent"}


def test_removed_subscription_gets_nothing(engine, notifier, make_alert):
    sub = add_subscription(engine, name="me", owner="li", adcode="440100", channels=["inbox"])
    remove_subscription(engine, sub["id"])
    notifier.refresh_subscriptions()
    notifier.step([make_alert()], now=T0)
    assert inbox(engine, "li") == []


def test_returning_condition_continues_the_resolved_case(engine, notifier, make_alert):
    from analytics.alerting.lifecycle import (
        dispatch,
        history,
        load_alert,
        resolve,
        take_over,
    )

    add_subscription(engine, name="gz", owner="gz", adcode="440100", channels=["inbox"])
    old = make_alert(level="orange", dedupe_key="rule:ponding|sensor:s9", first_seen=T0)
    take_over(engine, old, actor="city", region="440100", now=T0)
    dispatch(engine, old, actor="city", to_unit="排水所", due_at=T0 + timedelta(hours=2), now=T0)
    resolve(engine, old, actor="unit", note="疏通", now=T0 + timedelta(minutes=20))
    back = make_alert(level="orange", dedupe_key="rule:ponding|sensor:s9", first_seen=T0 + timedelta(minutes=50))
    notifier.step([back], now=T0 + timedelta(minutes=50))
    with engine.connect() as conn:
        a = load_alert(conn, back)
    assert a["continues"] == old and a["reopened"] == 1
    assert (a["owner_region"], a["assigned_unit"]) == ("440100", "排水所")  # the city kept the case
    assert "continues alert " + old in history(engine, back)[0]["note"]
    assert history(engine, old)[-1]["action"] == "reopened"
    # Carried over: visible at the city (it took the case over), so the city hears of it as such.
    assert {i["event"] for i in _items(engine, alert_id=back)} == {"level:orange", "reopened:1", "escalated:440100"}
    # Outside the reopen window (2 h): a new case.
    resolve(engine, back, actor="unit", note="ok", now=T0 + timedelta(minutes=55))
    late = make_alert(level="orange", dedupe_key="rule:ponding|sensor:s9", first_seen=T0 + timedelta(hours=5))
    notifier.step([late], now=T0 + timedelta(hours=5))
    with engine.connect() as conn:
        b = load_alert(conn, late)
    assert b["continues"] is None and b["reopened"] == 0 and b["continuity_checked"]
