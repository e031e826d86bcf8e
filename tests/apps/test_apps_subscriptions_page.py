"""The subscriptions page's functions (apps.subscriptions_view) against the real database, under
the row-level security of signed-in users: create / edit / remove kept to the user's subtree and
to their own subscriptions, audited; test delivery to the in-app inbox; read / unread."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("loopback_webhooks_allowed")]

PASSWORD = "subs-page-pass-2026"


@pytest.fixture
def users(engine):
    from apps.identity import create_demo_users, get_user, scope_of
    from apps.scope import install

    install(engine)
    create_demo_users(engine, password=PASSWORD)
    return {u: scope_of(get_user(engine, u)) for u in ("tianhe-operator", "gz-operator", "gd-admin")}


FORM = {"name": "天河积水", "adcode": "440106", "themes": ["flood"], "min_level": "yellow",
        "channels": ["inbox"], "webhook_url": "", "email": "", "quiet_start": "22:00", "quiet_end": "07:00",
        "escalated_only": False}


def test_create_edit_remove_scoped_to_the_users_subtree(engine, users):
    from analytics.alerting.subscriptions import get_subscription
    from apps import audit
    from apps import subscriptions_view as view
    from apps.errors import AccessError
    from apps.scope import scoped
    from tongguan import TongguanError

    th, gz = users["tianhe-operator"], users["gz-operator"]
    with scoped(th):
        row = view.save(engine, th, FORM)
        sid = row["id"]
        assert row["owner"] == "tianhe-operator" and row["themes"] == ["flood"]
        with pytest.raises(AccessError) as e:  # Yuexiu is not in Tianhe
            view.save(engine, th, {**FORM, "adcode": "440104"})
        assert e.value.status == 403
        with pytest.raises(TongguanError, match="webhook"):  # analytics' own rules apply
            view.save(engine, th, {**FORM, "channels": ["webhook"]})
        with pytest.raises(TongguanError, match="both ends"):
            view.save(engine, th, {**FORM, "quiet_end": ""}, sub_id=sid)
        # edit in place: same id, new level, themes, channels, quiet hours cleared
        edited = view.save(engine, th, {**FORM, "name": "天河全部", "themes": [], "min_level": "orange",
                                        "channels": ["inbox", "webhook"], "webhook_url": "http://127.0.0.1:9/h",
                                        "quiet_start": "", "quiet_end": ""}, sub_id=sid)
        assert edited["id"] == sid and edited["min_level"] == "orange" and edited["themes"] == []
        assert edited["quiet_start"] is None and edited["secret"]  # a webhook gets its signing key
        with pytest.raises(AccessError):  # cannot move it out of the region either
            view.save(engine, th, {**FORM, "adcode": "440100"}, sub_id=sid)
        assert [r["id"] for r in view.list_mine(engine, th)] == [sid]
    # The Guangzhou operator sees the city, but the subscription is not theirs.
    with scoped(gz):
        assert view.list_mine(engine, gz) == []
        with pytest.raises(AccessError) as e:
            view.save(engine, gz, FORM, sub_id=sid)
        assert e.value.status == 404
        with pytest.raises(AccessError):
            view.remove(engine, gz, sid)
        other = view.save(engine, gz, {**FORM, "name": "广州", "adcode": "440100"})
    # An admin of the province manages every subscription of the subtree.
    with scoped(users["gd-admin"]):
        assert {r["id"] for r in view.list_mine(engine, users["gd-admin"])} == {sid, other["id"]}
    with scoped(th):
        assert [r["id"] for r in view.list_mine(engine, th)] == [sid]  # not Guangzhou's
        view.remove(engine, th, sid)
        assert view.list_mine(engine, th) == []
    assert get_subscription(engine, sid)["active"] is False
    rows, _ = audit.query(engine, actor="tianhe-operator")
    seen = {(r["action"], r["outcome"]) for r in rows}
    assert {("subscription_create", "ok"), ("subscription_update", "ok"), ("subscription_remove", "ok"),
            ("subscription_save", "denied")} <= seen


def test_test_delivery_and_inbox_read_unread(engine, users):
    from apps import subscriptions_view as view
    from apps.errors import AccessError
    from apps.scope import scoped

    th, gz = users["tianhe-operator"], users["gz-operator"]
    with scoped(th):
        sid = view.save(engine, th, FORM)["id"]
        results = view.send_test_delivery(engine, th, sid)
        assert results == [("inbox", True, "inbox")]
        view.send_test_delivery(engine, th, sid)
        msgs = view.inbox(engine, th)
        assert len(msgs) == 2 and all(m["read_at"] is None for m in msgs)
        assert view.unread(engine, th) == 2
        assert view.set_read(engine, th, [msgs[0]["id"]]) == 1
        assert view.unread(engine, th) == 1
        assert [m["id"] for m in view.inbox(engine, th, unread_only=True)] == [msgs[1]["id"]]
        assert view.set_read(engine, th, [msgs[0]["id"]], read=False) == 1  # unread again
        assert view.unread(engine, th) == 2
        assert view.set_read(engine, th, None) == 2  # mark all read
        assert view.unread(engine, th) == 0
    with scoped(gz):
        assert view.inbox(engine, gz) == []  # another user's inbox is not theirs
        assert view.set_read(engine, gz, [msgs[0]["id"]], read=False) == 0
        with pytest.raises(AccessError):
            view.send_test_delivery(engine, gz, sid)
    with engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM notification_deliveries WHERE subscription_id = :s"),
                         {"s": sid}).scalar()
    assert n == 2


CJK = re.compile(r"[\u4e00-\u9fff]")
ENGLISH_PHRASE = re.compile(r"[A-Za-z]+(?:[ ,'’]+[A-Za-z]+){2,}")  # three English words in a row
CLI_WORDS = re.compile(r"--[a-z]|`|tongguan ")


def _said(call, lang):
    from apps.i18n import user_message
    from tongguan import TongguanError

    with pytest.raises(TongguanError) as e:
        call()
    return user_message(e.value, lang)


def test_refusals_and_form_errors_are_said_in_the_users_language(engine, users):
    """Every way the subscription form, the test button and the alerts filter refuse, said in
    Chinese without English sentences or CLI flags, and in English with ?lang=en."""
    from analytics.alerting.lifecycle import load_alert
    from apps import alerts_view
    from apps import subscriptions_view as view
    from apps.scope import scoped

    th = users["tianhe-operator"]
    with scoped(th):
        sid = view.save(engine, th, FORM)["id"]

        def load_missing():
            with engine.connect() as conn:
                load_alert(conn, "no-such-alert")

        calls = {
            "webhook url": lambda: view.save(engine, th, {**FORM, "channels": ["webhook"], "webhook_url": "ftp://x"}),
            "e-mail": lambda: view.save(engine, th, {**FORM, "channels": ["email"], "email": "not-an-address"}),
            "no channel": lambda: view.save(engine, th, {**FORM, "channels": []}),
            "quiet hours": lambda: view.save(engine, th, {**FORM, "quiet_end": ""}),
            "bad time": lambda: view.save(engine, th, {**FORM, "quiet_start": "25:00"}),
            "no name": lambda: view.save(engine, th, {**FORM, "name": " "}),
            "level": lambda: view.save(engine, th, {**FORM, "min_level": "purple"}),
            "theme": lambda: view.save(engine, th, {**FORM, "themes": ["no-such-theme"]}),
            "outside": lambda: view.save(engine, th, {**FORM, "adcode": "440104"}),
            "not found": lambda: view.get_mine(engine, th, sid + 1000),
            "removed": lambda: view.remove(engine, th, sid + 1000),
            "filter unknown": lambda: alerts_view.check_region(engine, "440106", "999999"),
            "filter outside": lambda: alerts_view.check_region(engine, "440106", "440104"),
            "no alert": load_missing,
        }
        for _ in range(view.TEST_DELIVERIES_PER_WINDOW):
            view.send_test_delivery(engine, th, sid)
        calls["rate limit"] = lambda: view.send_test_delivery(engine, th, sid)
        for what, call in calls.items():
            zh, en = _said(call, "zh"), _said(call, "en")
            assert CJK.search(zh) and not ENGLISH_PHRASE.search(zh) and not CLI_WORDS.search(zh), (what, zh)
            assert not CJK.search(en) and ENGLISH_PHRASE.search(en) and not CLI_WORDS.search(en), (what, en)
    assert "Webhook" in _said(calls["webhook url"], "zh") and "邮箱" in _said(calls["e-mail"], "zh")
    assert view.delivery_outcome(False, "HTTP 503", "zh") == "✗ 发送失败（HTTP 503）"
