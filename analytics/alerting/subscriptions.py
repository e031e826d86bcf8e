"""Self-service subscriptions: a region (its whole subtree), themes, a minimum level, channels,
optional quiet hours (red still goes through), and the in-app inbox.

Matching is pure (:func:`matches`, :func:`events_for`, :func:`in_quiet_hours`) so the notifier,
the ``subscriptions test`` command and the tests share one definition.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from analytics.alerting.channels import channel, channel_names, setting_fields
from analytics.alerting.config import AlertingError
from analytics.alerting.lifecycle import region_path
from analytics.levels import LEVELS, rank
from analytics.statuses import ACTIVE_STATUSES


def _themes() -> set[str] | None:
    try:
        from ingest import load_catalogue

        return set(load_catalogue().themes)
    except Exception:  # noqa: BLE001 - without the catalogue themes are not checked
        return None


def parse_time(text: str | time | None) -> time | None:
    """``22:00`` -> time(22, 0).

    >>> parse_time("7:30"), parse_time(None)
    (datetime.time(7, 30), None)
    """
    if text is None or isinstance(text, time):
        return text
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", str(text))
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise AlertingError(f"bad time {text!r}; write HH:MM, e.g. 22:00", "bad_time", text=str(text))
    return time(int(m.group(1)), int(m.group(2)))


def _check(*, name: str, adcode: str, channels: Iterable[str], themes: Iterable[str], min_level: str,
           quiet_start, quiet_end, timezone: str, settings: dict) -> dict:
    """The rules every new or changed subscription obeys (CLI, API and page alike); returns the
    cleaned values, or raises AlertingError saying how to fix the input."""
    channels = [c.strip() for c in channels if c and c.strip()]
    themes = [t.strip() for t in themes if t and t.strip()]
    names = channel_names()
    if not channels or set(channels) - set(names):
        raise AlertingError(f"channels must be some of {', '.join(names)} (got {', '.join(channels) or 'none'})",
                            "need_channel")
    if not re.fullmatch(r"\d{6}", adcode or ""):
        raise AlertingError(f"region {adcode!r} is not a six-digit adcode (e.g. 440100 for Guangzhou)", "bad_region",
                            adcode=str(adcode))
    if min_level not in LEVELS:
        raise AlertingError(f"min level {min_level!r} unknown; use one of {', '.join(LEVELS)}", "bad_level",
                            value=str(min_level))
    known = _themes()
    if known is not None and set(themes) - known:
        raise AlertingError(f"unknown theme(s) {', '.join(sorted(set(themes) - known))}; use {', '.join(sorted(known))}",
                            "bad_theme", value=", ".join(sorted(set(themes) - known)))
    unknown = set(settings) - {f.name for f in setting_fields()}
    if unknown:
        raise AlertingError(f"unknown channel setting(s) {', '.join(sorted(unknown))}; "
                            f"use {', '.join(f.name for f in setting_fields())}", "bad_setting_name",
                            value=", ".join(sorted(unknown)))
    for c in channels:
        channel(c).validate(settings)
    qs, qe = parse_time(quiet_start), parse_time(quiet_end)
    if (qs is None) != (qe is None):
        raise AlertingError("give both ends of the quiet hours (--quiet 22:00-07:00)", "quiet_both_ends")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise AlertingError(f"unknown time zone {timezone!r}; e.g. Asia/Shanghai", "bad_timezone",
                            value=str(timezone)) from None
    if not (name or "").strip():
        raise AlertingError("a subscription needs a name", "need_name")
    return {"name": name.strip(), "adcode": adcode, "channels": channels, "themes": themes,
            "min_level": min_level, "quiet_start": qs, "quiet_end": qe, "timezone": timezone}


def _check_region(conn, adcode: str) -> None:
    # Checked when the regions are loaded (`tongguan geo load`); before that any code is taken.
    loaded = conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM regions)")).scalar()
    if loaded and not conn.execute(sa.text("SELECT 1 FROM regions WHERE adcode = :a"), {"a": adcode}).first():
        raise AlertingError(f"no region {adcode}; find codes with `tongguan geo tree`", "bad_region", adcode=adcode)


def _channel_columns(channels: list[str], settings: dict, given: dict, old: dict | None) -> dict:
    """The subscription's channel columns: every channel's settings (None when not given) and
    what the chosen channels generate themselves (a webhook's signing secret)."""
    cols = {f.name: (settings.get(f.name) or None) for f in setting_fields()}
    for c in channels:
        cols.update(channel(c).generate(given, old))
    return cols


def add_subscription(engine, *, name: str, owner: str, adcode: str, channels: Iterable[str],
                     themes: Iterable[str] = (), min_level: str = "blue", quiet_start: str | time | None = None,
                     quiet_end: str | time | None = None, timezone: str = "Asia/Shanghai",
                     escalated_only: bool = False, secret: str | None = None, **settings: str | None) -> dict:
    """Create a subscription; returns it, with the webhook secret (shown once to the subscriber).

    ``settings`` are the chosen channels' settings, by field name (``webhook_url``, ``email``,
    …: :func:`analytics.alerting.channels.setting_fields`)."""
    v = _check(name=name, adcode=adcode, channels=channels, themes=themes, min_level=min_level,
               quiet_start=quiet_start, quiet_end=quiet_end, timezone=timezone, settings=settings)
    if not (owner or "").strip():
        raise AlertingError("a subscription needs a name and an owner")
    cols = _channel_columns(v["channels"], settings, {"secret": secret}, None)
    names = ", ".join(cols)
    with engine.begin() as conn:
        _check_region(conn, adcode)
        row = conn.execute(sa.text(
            f"INSERT INTO subscriptions (name, owner, adcode, themes, min_level, escalated_only, channels, "
            f"quiet_start, quiet_end, timezone, {names}) VALUES (:name, :owner, :adcode, :themes, :min_level, "
            f":esc, :channels, :quiet_start, :quiet_end, :timezone, {', '.join(':c_' + k for k in cols)}) "
            "RETURNING *"),
            {**v, "owner": owner.strip(), "esc": bool(escalated_only),
             **{"c_" + k: val for k, val in cols.items()}}).mappings().one()
    return dict(row)


def update_subscription(engine, sub_id: int, *, name: str, adcode: str, channels: Iterable[str],
                        themes: Iterable[str] = (), min_level: str = "blue", quiet_start: str | time | None = None,
                        quiet_end: str | time | None = None, escalated_only: bool = False,
                        **settings: str | None) -> dict:
    """Change an active subscription in place (not remove-and-add), so what its subscriber has
    already been told — keyed per subscription — is not sent again; the same rules as
    :func:`add_subscription`. Its owner, time zone and webhook secret stay."""
    old = get_subscription(engine, sub_id)
    if not old["active"]:
        raise AlertingError(f"no active subscription {sub_id}; list them with `tongguan subscriptions list`",
                            "not_found", kind="subscription", ident=str(sub_id))
    v = _check(name=name, adcode=adcode, channels=channels, themes=themes, min_level=min_level,
               quiet_start=quiet_start, quiet_end=quiet_end, timezone=old["timezone"], settings=settings)
    cols = _channel_columns(v["channels"], settings, {}, old)
    sets = ", ".join(f"{k} = :c_{k}" for k in cols)
    with engine.begin() as conn:
        _check_region(conn, adcode)
        row = conn.execute(sa.text(
            "UPDATE subscriptions SET name = :name, adcode = :adcode, themes = :themes, min_level = :min_level, "
            f"channels = :channels, quiet_start = :quiet_start, quiet_end = :quiet_end, escalated_only = :esc, "
            f"{sets} WHERE id = :id AND active RETURNING *"),
            {**v, "esc": bool(escalated_only), "id": int(sub_id),
             **{"c_" + k: val for k, val in cols.items()}}).mappings().first()
    if row is None:
        raise AlertingError(f"no active subscription {sub_id}; list them with `tongguan subscriptions list`",
                            "not_found", kind="subscription", ident=str(sub_id))
    return dict(row)


def list_subscriptions(engine, *, owner: str | None = None, active_only: bool = True) -> list[dict]:
    sql = "SELECT * FROM subscriptions WHERE true"
    if active_only:
        sql += " AND active"
    if owner:
        sql += " AND owner = :owner"
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql + " ORDER BY id"), {"owner": owner}).mappings()]


def get_subscription(engine, sub_id: int) -> dict:
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM subscriptions WHERE id = :id"), {"id": int(sub_id)}).mappings().first()
    if row is None:
        raise AlertingError(f"no subscription {sub_id}; list them with `tongguan subscriptions list`",
                            "not_found", kind="subscription", ident=str(sub_id))
    return dict(row)


def remove_subscription(engine, sub_id: int) -> None:
    """Deactivate (the delivery log keeps referring to it)."""
    with engine.begin() as conn:
        n = conn.execute(sa.text("UPDATE subscriptions SET active = false WHERE id = :id AND active"),
                         {"id": int(sub_id)}).rowcount
    if not n:
        raise AlertingError(f"no active subscription {sub_id}; list them with `tongguan subscriptions list`",
                            "not_found", kind="subscription", ident=str(sub_id))


# -------------------------------------------------------------------------------- matching
def in_quiet_hours(sub: dict, now: datetime) -> bool:
    """True when ``now`` falls in the subscriber's quiet hours (which may wrap midnight).

    >>> from datetime import timezone as tz
    >>> s = {"quiet_start": time(22), "quiet_end": time(7), "timezone": "Asia/Shanghai"}
    >>> in_quiet_hours(s, datetime(2026, 6, 1, 15, 0, tzinfo=tz.utc))  # 23:00 in Shanghai
    True
    >>> in_quiet_hours(s, datetime(2026, 6, 1, 2, 0, tzinfo=tz.utc))   # 10:00
    False
    """
    qs, qe = sub.get("quiet_start"), sub.get("quiet_end")
    if qs is None or qe is None or qs == qe:
        return False
    local = now.astimezone(ZoneInfo(sub.get("timezone") or "Asia/Shanghai")).time()
    return qs <= local < qe if qs < qe else (local >= qs or local < qe)


def matches(sub: dict, alert: dict) -> bool:
    """Region subtree, themes and minimum level (not silences or quiet hours: those hold or drop
    a notification later, and are logged)."""
    if not sub.get("active", True) or alert.get("status") not in ACTIVE_STATUSES:
        return False
    if sub["themes"] and alert["theme"] not in sub["themes"]:
        return False
    if rank(alert["level"]) < rank(sub["min_level"]):
        return False
    if sub.get("escalated_only"):
        return sub["adcode"] in (alert.get("visible_at"), alert.get("owner_region"))
    return sub["adcode"] in region_path(alert)


def events_for(sub: dict, alert: dict) -> list[str]:
    """The notification events this alert means for this subscriber. Each is notified once per
    subscription (the database key), so replays and restarts send nothing twice.

    - ``level:<lv>``: the alert is new to them, or reached a level they have not been told about;
    - ``escalated:<adcode>``: it was escalated to the subscriber's own region (the region must act);
    - ``reopened:<n>``: the condition came back after it was resolved.
    """
    if not matches(sub, alert):
        return []
    out = []
    escalated_here = alert.get("visible_at") == sub["adcode"] and alert.get("visible_at") != alert.get("adcode")
    if not sub.get("escalated_only"):
        out.append(f"level:{alert['level']}")
        if alert.get("reopened"):
            out.append(f"reopened:{alert['reopened']}")
    if escalated_here or (sub.get("escalated_only") and alert.get("owner_region") == sub["adcode"]):
        out.append(f"escalated:{sub['adcode']}")
    return out


# ----------------------------------------------------------------------------------- inbox
def inbox(engine, recipient: str, *, unread_only: bool = False, limit: int = 50) -> list[dict]:
    sql = "SELECT * FROM inbox_messages WHERE recipient = :r" + (" AND read_at IS NULL" if unread_only else "")
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql + " ORDER BY updated_at DESC, id DESC LIMIT :n"),
                                              {"r": recipient, "n": limit}).mappings()]


def inbox_version(engine, recipient: str) -> str:
    """A token that changes when the recipient's inbox gains, updates or (un)reads a message:
    the web's live inbox reads the list again only then."""
    with engine.connect() as conn:
        n, newest, unread = conn.execute(sa.text(
            "SELECT count(*), max(updated_at), count(*) FILTER (WHERE read_at IS NULL) FROM inbox_messages "
            "WHERE recipient = :r"), {"r": recipient}).one()
    return f"{n}|{newest.isoformat() if newest else ''}|{unread}"


def unread_count(engine, recipient: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM inbox_messages WHERE recipient = :r AND read_at IS NULL"),
                                {"r": recipient}).scalar())


def mark_read(engine, recipient: str, message_ids: Iterable[int] | None = None, *, read: bool = True) -> int:
    """Mark messages read (or unread again); all of the recipient's when ``message_ids`` is None."""
    sql = "UPDATE inbox_messages SET read_at = " + ("now()" if read else "NULL") + " WHERE recipient = :r"
    params: dict = {"r": recipient}
    if message_ids is not None:
        sql += " AND id = ANY(:ids)"
        params["ids"] = [int(i) for i in message_ids]
    with engine.begin() as conn:
        return conn.execute(sa.text(sql), params).rowcount
