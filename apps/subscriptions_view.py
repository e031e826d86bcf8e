"""What the subscriptions page (/subscriptions) does, as plain functions of the database and the
caller's :class:`apps.scope.Scope` (the page's callbacks only call these).

Subscriptions are analytics' (``analytics.alerting.subscriptions``): creating and editing go
through its ``add_subscription`` and ``update_subscription`` (one set of rules for CLI, API and
page; this module never writes analytics' tables itself). A user manages their own subscriptions inside their region; an admin any of the
subtree (the same rule as the API). Every change is audited. The inbox is the user's own.
"""

from __future__ import annotations

from datetime import time

import sqlalchemy as sa

from analytics.alerting import subscriptions as subs
from analytics.alerting.channels import setting_fields
from apps import audit
from apps.errors import AccessError, not_found
from apps.policy import tree_for
from apps.scope import Scope
from tongguan import TongguanError

# Test deliveries per user: a webhook test is an outgoing request on the user's behalf.
TEST_DELIVERIES_PER_WINDOW, TEST_WINDOW_S = 3, 60


def fields() -> tuple[str, ...]:
    """The form's fields: the rule, every channel's settings (the channel registry), quiet hours."""
    return ("name", "adcode", "themes", "min_level", "channels", *(f.name for f in setting_fields()),
            "quiet_start", "quiet_end", "escalated_only")


def _clean(form: dict) -> dict:
    """The form's fields, trimmed; empty strings become None."""
    out = {}
    for k in fields():
        v = form.get(k)
        if isinstance(v, str):
            v = v.strip() or None
        out[k] = v
    out["themes"] = [x for x in (out["themes"] or []) if x]
    out["channels"] = [x for x in (out["channels"] or []) if x]
    out["min_level"] = out["min_level"] or "blue"
    out["escalated_only"] = bool(out["escalated_only"])
    return out


def _in_scope(engine, scope: Scope, adcode: str) -> bool:
    return scope.within(tree_for(engine), str(adcode or "").strip())


def _may_manage(engine, scope: Scope, row: dict) -> bool:
    return _in_scope(engine, scope, row["adcode"]) and (row["owner"] == scope.username or scope.is_admin)


def list_mine(engine, scope: Scope) -> list[dict]:
    """Active subscriptions the caller manages: their own, or (admins) all of their subtree."""
    rows = subs.list_subscriptions(engine, owner=None if scope.is_admin else scope.username)
    return [{**r, "adcode": str(r["adcode"]).strip()} for r in rows if _may_manage(engine, scope, r)]


def get_mine(engine, scope: Scope, sub_id: int) -> dict:
    try:
        row = subs.get_subscription(engine, int(sub_id))
    except (TongguanError, TypeError, ValueError):
        raise not_found(f"subscription {sub_id}") from None
    if not row["active"] or not _may_manage(engine, scope, row):
        raise not_found(f"subscription {sub_id}")
    return {**row, "adcode": str(row["adcode"]).strip()}


def save(engine, scope: Scope, form: dict, sub_id: int | None = None) -> dict:
    """Create (``sub_id`` None) or edit a subscription of the caller; returns the row.

    Raises :class:`AccessError` outside the caller's region, or the analytics error (a
    TongguanError saying how to fix it) for bad input."""
    f = _clean(form)
    if not f["adcode"] or not _in_scope(engine, scope, f["adcode"]):
        audit.record(engine, actor=scope.username, user_id=scope.user_id, action="subscription_save",
                     region=None, target=str(sub_id or ""), outcome="denied",
                     detail={"adcode": f["adcode"]})
        raise AccessError(f"region {f['adcode']} is outside your region {scope.home}", 403, "forbidden",
                          "region_outside", region=str(f["adcode"] or ""), home=scope.home)
    values = {k: f[k] for k in fields() if k != "name"}
    if sub_id is None:
        row = subs.add_subscription(engine, owner=scope.username, name=f["name"] or "", **values)
        audit.record(engine, actor=scope.username, user_id=scope.user_id, action="subscription_create",
                     region=f["adcode"], target=str(row["id"]))
        return row
    old = get_mine(engine, scope, sub_id)
    row = subs.update_subscription(engine, int(sub_id), name=f["name"] or "", **values)
    changed = {k: str(f[k]) for k in fields()
               if str(f[k]) != str(old.get(k) if k != "adcode" else old["adcode"])}
    audit.record(engine, actor=scope.username, user_id=scope.user_id, action="subscription_update",
                 region=f["adcode"], target=str(sub_id), detail={"changed": changed})
    return row


def remove(engine, scope: Scope, sub_id: int) -> None:
    row = get_mine(engine, scope, sub_id)
    subs.remove_subscription(engine, int(sub_id))
    audit.record(engine, actor=scope.username, user_id=scope.user_id, action="subscription_remove",
                 region=row["adcode"], target=str(sub_id))


def send_test_delivery(engine, scope: Scope, sub_id: int) -> list[tuple[str, bool, str]]:
    """Send a test notification through each channel of one of the caller's subscriptions now
    (``tongguan subscriptions test``). The delivery log and inbox are written by the notifier's
    role, so after the caller's check the send runs unscoped."""
    from analytics.alerting.notifier import send_test
    from apps.scope import unscoped
    from tongguan.settings import get_settings

    row = get_mine(engine, scope, sub_id)
    with engine.connect() as conn:  # counted in the audit log: the same for every server process
        recent = conn.execute(sa.text(
            "SELECT count(*) FROM audit_log WHERE actor = :u AND action = 'subscription_test' AND outcome = 'ok' "
            "AND ts > now() - make_interval(secs => :window)"),
            {"u": scope.username, "window": TEST_WINDOW_S}).scalar_one()
    if recent >= TEST_DELIVERIES_PER_WINDOW:
        audit.record(engine, actor=scope.username, user_id=scope.user_id, action="subscription_test",
                     region=row["adcode"], target=str(sub_id), outcome="denied", detail={"reason": "rate limit"})
        raise AccessError(f"at most {TEST_DELIVERIES_PER_WINDOW} test deliveries a minute; try again shortly",
                          429, "rate_limited", "test_rate_limited", n=TEST_DELIVERIES_PER_WINDOW,
                          seconds=TEST_WINDOW_S)
    with unscoped():
        results = send_test(engine, get_settings(), int(sub_id))
    audit.record(engine, actor=scope.username, user_id=scope.user_id, action="subscription_test",
                 region=row["adcode"], target=str(sub_id),
                 detail={c: ("ok" if ok else d) for c, ok, d in results})
    return results


def delivery_outcome(ok: bool, detail: str, lang: str = "zh") -> str:
    """A test delivery's outcome for the page, in ``lang``: the URL guard's two answers by their
    labels, anything else (an HTTP status, an SMTP error) quoted after "failed".

    >>> from tongguan.netguard import REFUSED
    >>> delivery_outcome(True, "HTTP 200"), delivery_outcome(False, REFUSED), delivery_outcome(False, "HTTP 500", "en")
    ('✓', '✗ 地址不在允许范围内（仅限公网地址或白名单）', '✗ failed (HTTP 500)')
    """
    from apps.i18n import t
    from tongguan.netguard import NO_ANSWER, REFUSED

    if ok:
        return "✓"
    known = {REFUSED: "subs.test_refused", NO_ANSWER: "subs.test_no_answer"}
    return "✗ " + (t(known[detail], lang) if detail in known else t("subs.test_failed", lang, detail=detail))


def inbox(engine, scope: Scope, *, unread_only: bool = False, limit: int = 50) -> list[dict]:
    return subs.inbox(engine, scope.username, unread_only=unread_only, limit=limit)


def inbox_version(engine, scope: Scope) -> str:
    """Changes when the caller's inbox changes (the live tick's probe)."""
    return subs.inbox_version(engine, scope.username)


def unread(engine, scope: Scope) -> int:
    return subs.unread_count(engine, scope.username)


def set_read(engine, scope: Scope, message_ids: list[int] | None, read: bool = True) -> int:
    """Mark the caller's messages read or unread (all of them when ``message_ids`` is None)."""
    return subs.mark_read(engine, scope.username, message_ids, read=read)


def fmt_time(v: time | None) -> str:
    """HH:MM of a quiet-hours end, "" when unset.

    >>> fmt_time(time(7, 5)), fmt_time(None)
    ('07:05', '')
    """
    return v.strftime("%H:%M") if v else ""
