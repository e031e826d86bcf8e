"""The alert lifecycle (事件闭环): open → acknowledged → dispatched → resolved → closed.

Also: closed as a false alarm from any unfinished state; reopened when the condition returns
within ``lifecycle.reopen_window``; taken over by a region above; flagged overdue (督办) when a
dispatch passes its due time. Every function runs in ONE transaction that locks the alert, checks
the transition, updates ``alerts.status`` and ``alert_handling``, and appends to the append-only
``alert_history`` — so the record of who did what, when and why can never disagree with the state.

The transition table itself is pure (:func:`next_status`), so the rules are tested without a
database and refused transitions get the same message everywhere (CLI, apps, API).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

import geo
from analytics.alerting.config import AlertingConfig, AlertingError, load_alerting
from analytics.statuses import (
    ACTIVE_STATUSES,
    FINISHED_SQL,
    FINISHED_STATUSES,
    status_label,
)

GRID_RE = re.compile(r"^(\d{6})-")


class AlertTransitionError(AlertingError):
    """A handling action that makes no sense for the alert's current state; the message says why."""


# action -> (statuses it is allowed from, status it leads to)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "acknowledge": (("open",), "acknowledged"),
    "dispatch": (ACTIVE_STATUSES, "dispatched"),
    "resolve": (ACTIVE_STATUSES, "resolved"),
    "close": (("resolved",), "closed"),
    "close_false_alarm": ((*ACTIVE_STATUSES, "resolved"), "closed"),
    "reopen": (FINISHED_STATUSES, "open"),
    "take_over": (ACTIVE_STATUSES, ""),  # status unchanged
}

_NOT_RESOLVED = ("not_resolved", "it is not resolved yet: resolve it first (with a note), or close it as a false alarm")
# (action, status) -> (reason key, why)
_WHY = {
    ("acknowledge", "acknowledged"): ("already_acknowledged", "it is already acknowledged"),
    ("acknowledge", "dispatched"): ("already_dispatched", "it is already dispatched (dispatching acknowledges it)"),
    ("close", "open"): _NOT_RESOLVED,
    ("close", "acknowledged"): _NOT_RESOLVED,
    ("close", "dispatched"): _NOT_RESOLVED,
    ("reopen", "open"): ("still_open", "it is still open"),
}


def next_status(status: str, action: str) -> str:
    """The status after ``action``, or :class:`AlertTransitionError` saying why not.

    >>> next_status("open", "acknowledge"), next_status("resolved", "close")
    ('acknowledged', 'closed')
    >>> next_status("closed", "resolve")
    Traceback (most recent call last):
    ...
    analytics.alerting.lifecycle.AlertTransitionError: cannot resolve an alert that is closed (已办结): it is already finished; reopen it if the condition returned
    """
    if action not in TRANSITIONS:
        raise AlertTransitionError(f"unknown action {action!r}; use one of {', '.join(TRANSITIONS)}")
    allowed, to = TRANSITIONS[action]
    if status in allowed:
        return to or status
    key, why = _WHY.get((action, status)) or (None, None)
    if why is None:
        if status in FINISHED_STATUSES and action != "close":
            key, why = (("finished", "it is already finished; reopen it if the condition returned") if status == "closed"
                        else ("already_resolved", "it is already resolved; close it (verify) or reopen it"))
        elif status == "closed":
            key, why = "already_closed", "it is already closed"
        else:
            key, why = "not_from", f"{action} is allowed only from {', '.join(allowed)}"
    verb = action.replace("_", " ").replace("close false alarm", "close as a false alarm")
    raise AlertTransitionError(f"cannot {verb} an alert that is {status} ({status_label(status)}): {why}",
                               f"transition.{key}", action=action, state=status)


def region_path(alert: dict) -> list[str]:
    """The alert's regions from its county up: [county, city, province] without repeats.

    >>> region_path({"adcode": "440106", "city": "440100", "province": "440000"})
    ['440106', '440100', '440000']
    >>> region_path({"adcode": "441900", "city": "441900", "province": "440000"})
    ['441900', '440000']
    """
    return geo.region_path(alert.get("adcode"), alert.get("city"), alert.get("province"))


def rank_in_path(alert: dict, region: str) -> int:
    """0 for the county, 1 for the city, 2 for the province; a grid of the county ranks -1;
    -2 when ``region`` is not on the alert's path."""
    path = region_path(alert)
    if region in path:
        return path.index(region)
    m = GRID_RE.match(region or "")
    if m and path and m.group(1) == path[0]:
        return -1
    return -2


# What the region an alert is dispatched to may do besides the owner: report it handled. The
# owner (the county by default, or the city or province that took it over) does everything else,
# including verifying and closing what it dispatched.
ASSIGNEE_ACTIONS = ("resolve",)


def assignee_region(alert: dict) -> str | None:
    """The region an active dispatch points at; a grid unit counts as its county.

    >>> assignee_region({"status": "dispatched", "assigned_region": "440106-1000-0001-0002"})
    '440106'
    >>> assignee_region({"status": "resolved", "assigned_region": "440106"}) is None
    True
    """
    region = str(alert.get("assigned_region") or "").strip()
    if alert.get("status") != "dispatched" or not region:
        return None
    m = GRID_RE.match(region)
    return m.group(1) if m else region


def may_act(alert: dict, region: str, action: str) -> bool:
    """Whether an operator of ``region`` may apply ``action`` as far as the handling goes (role
    and subtree are the access layer's): the owner may do anything, the region the alert is
    dispatched to may resolve it.

    >>> a = {"owner_region": "440100", "status": "dispatched", "assigned_region": "440106"}
    >>> may_act(a, "440100", "close"), may_act(a, "440106", "resolve"), may_act(a, "440106", "close")
    (True, True, False)
    """
    owner = str(alert.get("owner_region") or alert.get("handling_region") or alert.get("adcode") or "").strip()
    if region == owner:
        return True
    return action in ASSIGNEE_ACTIONS and region == assignee_region(alert)


def checked_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise AlertingError("times must carry a time-zone offset")
    return now


_SELECT = sa.text("""
    SELECT a.id, a.dedupe_key, a.source, a.level, a.theme, a.title, a.detail, a.subject, a.confidence,
           trim(a.adcode) AS adcode, trim(a.city) AS city, trim(a.province) AS province, a.grid_id,
           a.first_seen, a.last_seen, a.count, a.status, a.updated_at,
           h.owner_region, h.visible_at, h.escalated_at, h.escalation_reason, h.acknowledged_at,
           h.acknowledged_by, h.assigned_unit, h.assigned_region, h.dispatched_at, h.dispatched_by,
           h.due_at, h.overdue_at, h.resolved_at, h.resolution, h.closed_at, h.false_alarm,
           h.reopened, h.inhibited_by, h.continues, h.continuity_checked,
           ST_AsGeoJSON(a.geom)::jsonb AS geometry
    FROM alerts a LEFT JOIN alert_handling h ON h.alert_id = a.id
    WHERE a.id = :id
""")


def load_alert(conn, alert_id: str, *, lock: bool = False) -> dict:
    """The alert with its handling state (locked FOR UPDATE when ``lock``)."""
    sql = _SELECT.text + (" FOR UPDATE OF a" if lock else "")
    row = conn.execute(sa.text(sql), {"id": str(alert_id)}).mappings().first()
    if row is None:
        raise AlertingError(f"no alert {alert_id!r}; list alerts with `tongguan alerts list`", "not_found",
                            kind="alert", ident=str(alert_id))
    alert = dict(row)
    if alert["owner_region"] is None:  # created before the handling trigger existed
        conn.execute(sa.text("INSERT INTO alert_handling (alert_id, owner_region, visible_at) "
                             "VALUES (:id, :r, :r) ON CONFLICT DO NOTHING"), {"id": alert["id"], "r": alert["adcode"]})
        alert.update(owner_region=alert["adcode"], visible_at=alert["adcode"], reopened=0, false_alarm=False)
    return alert


def load_alerts(conn, alert_ids: list[str], *, lock: bool = False) -> list[dict]:
    """Several alerts with their handling state in one query, in id order (the lock order)."""
    sql = _SELECT.text.replace("WHERE a.id = :id", "WHERE a.id = ANY(:ids) ORDER BY a.id")
    rows = conn.execute(sa.text(sql + (" FOR UPDATE OF a" if lock else "")),
                        {"ids": [str(i) for i in alert_ids]}).mappings().all()
    out = []
    for row in rows:
        alert = dict(row)
        if alert["owner_region"] is None:  # created before the handling trigger existed
            alert = load_alert(conn, alert["id"])
        out.append(alert)
    return out


def append_history(conn, alert: dict, *, action: str, actor: str, note: str | None, ts: datetime,
                   status: str | None = None, level: str | None = None) -> None:
    conn.execute(sa.text(
        "INSERT INTO alert_history (alert_id, ts, action, actor, level, status, note) "
        "VALUES (:id, :ts, :action, :actor, :level, :status, :note)"),
        {"id": alert["id"], "ts": ts, "action": action, "actor": actor, "level": level or alert["level"],
         "status": status or alert["status"], "note": note})


def _update(conn, alert_id: str, now: datetime, status: str | None = None, **handling: Any) -> None:
    if status is not None:
        conn.execute(sa.text("UPDATE alerts SET status = :s, updated_at = :now WHERE id = :id"),
                     {"s": status, "now": now, "id": alert_id})
    if handling:
        sets = ", ".join(f"{k} = :{k}" for k in handling)
        conn.execute(sa.text(f"UPDATE alert_handling SET {sets}, updated_at = :now WHERE alert_id = :id"),
                     {**handling, "now": now, "id": alert_id})


def _actor(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor:
        raise AlertTransitionError("say who does this (actor), e.g. --actor zhang.san", "need_actor")
    return actor


def _join(*parts: str | None) -> str:
    return " | ".join(p for p in parts if p)


def _fmt(ts: datetime) -> str:
    return ts.astimezone(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M (UTC+8)")


def acknowledge(engine, alert_id: str, *, actor: str, note: str | None = None,
                now: datetime | None = None) -> dict:
    """open → acknowledged: someone has seen it and owns it."""
    actor, now = _actor(actor), checked_now(now)
    with engine.begin() as conn:
        a = load_alert(conn, alert_id, lock=True)
        status = next_status(a["status"], "acknowledge")
        _update(conn, a["id"], now, status, acknowledged_at=now, acknowledged_by=actor)
        append_history(conn, a, action="acknowledged", actor=actor, status=status, ts=now,
                       note=_join("已签收 / acknowledged", note))
        return load_alert(conn, a["id"])


def dispatch(engine, alert_id: str, *, actor: str, to_unit: str, due_at: datetime,
             to_region: str | None = None, note: str | None = None, now: datetime | None = None,
             config: AlertingConfig | None = None) -> dict:
    """→ dispatched: assigned to a named unit or person (``to_unit``) with a due time.

    ``to_region`` hands it down (派单): a city or province to the alert's county, a county to a grid
    unit of its own (a grid id of the county). Default: the region that owns it now, or the county
    when the owner is above it. Dispatching upwards is refused — that is escalation or take-over.
    """
    actor, now = _actor(actor), checked_now(now)
    cfg = config or load_alerting()
    to_unit = (to_unit or "").strip()
    if not to_unit:
        raise AlertTransitionError("say to whom it is dispatched (a unit or person), e.g. --to-unit 天河区排水所",
                                   "need_unit")
    if due_at is None or due_at.tzinfo is None:
        raise AlertTransitionError("give a due time with a time-zone offset, e.g. 2026-06-01T18:00:00+08:00",
                                   "need_due")
    if due_at < now + timedelta(seconds=cfg.min_due_ahead):
        raise AlertTransitionError(f"the due time {_fmt(due_at)} is not in the future (at least "
                                   f"{cfg.min_due_ahead:g} s ahead); give a later one", "due_past",
                                   due=_fmt(due_at), seconds=f"{cfg.min_due_ahead:g}")
    with engine.begin() as conn:
        a = load_alert(conn, alert_id, lock=True)
        status = next_status(a["status"], "dispatch")
        owner_rank = rank_in_path(a, a["owner_region"])
        # Without a region: a city or province dispatches down to the county; a county keeps it.
        target = (to_region or "").strip() or a["adcode"]
        r = rank_in_path(a, target)
        if r == -2:
            raise AlertTransitionError(
                f"cannot dispatch to {target}: it is neither a region on the alert's path "
                f"({' < '.join(region_path(a))}) nor a grid unit of its county {a['adcode']}",
                "dispatch_elsewhere", target=target, county=a["adcode"])
        if r > max(owner_rank, 0):
            raise AlertTransitionError(
                f"cannot dispatch up to {target}: the alert is handled by {a['owner_region']}; dispatch goes "
                "down (escalation and take-over go up)", "dispatch_up", target=target, owner=a["owner_region"])
        # The owner does not change: a city that took an alert over and dispatches it down still
        # handles the case (it verifies and closes what it dispatched); the region it was
        # dispatched to reports it resolved (see ASSIGNEE_ACTIONS).
        _update(conn, a["id"], now, status, assigned_unit=to_unit, assigned_region=target, due_at=due_at,
                dispatched_at=now, dispatched_by=actor, overdue_at=None)
        append_history(conn, a, action="dispatched", actor=actor, status=status, ts=now, note=_join(
            f"派往 {to_unit} ({target}), 限期 {_fmt(due_at)} / dispatched to {to_unit} ({target}), "
            f"due {due_at.isoformat()}", note))
        return load_alert(conn, a["id"])


def resolve(engine, alert_id: str, *, actor: str, note: str, now: datetime | None = None) -> dict:
    """→ resolved: handled on the ground; the note says what was done."""
    actor, now = _actor(actor), checked_now(now)
    if not (note or "").strip():
        raise AlertTransitionError("a resolution note is required: say what was done (--note ...)", "need_note")
    with engine.begin() as conn:
        a = load_alert(conn, alert_id, lock=True)
        status = next_status(a["status"], "resolve")
        _update(conn, a["id"], now, status, resolved_at=now, resolution=note.strip())
        append_history(conn, a, action="resolved", actor=actor, status=status, ts=now,
                       note=_join("已处置 / resolved", note.strip()))
        return load_alert(conn, a["id"])


def close(engine, alert_id: str, *, actor: str, note: str | None = None, false_alarm: bool = False,
          now: datetime | None = None) -> dict:
    """resolved → closed (verified, 核查办结); or any unfinished state → closed as a false alarm."""
    actor, now = _actor(actor), checked_now(now)
    with engine.begin() as conn:
        a = load_alert(conn, alert_id, lock=True)
        status = next_status(a["status"], "close_false_alarm" if false_alarm else "close")
        _update(conn, a["id"], now, status, closed_at=now, false_alarm=bool(false_alarm))
        what = "误报关闭 / closed as false alarm" if false_alarm else "核查办结 / verified and closed"
        append_history(conn, a, action="closed", actor=actor, status=status, ts=now, note=_join(what, note))
        return load_alert(conn, a["id"])


# What the history says of a reopen: by a person (a command, the web), or because the detector saw
# the condition come back.
REOPENED_BY_HAND = "重新打开 / reopened"
REOPENED_CONDITION_RETURNED = "条件复现, 重新打开 / condition returned, reopened"


def _reopen_locked(conn, a: dict, *, actor: str, note: str | None, now: datetime, cfg: AlertingConfig,
                   level: str | None = None, what: str = REOPENED_BY_HAND) -> dict:
    status = next_status(a["status"], "reopen")
    if a["false_alarm"]:
        raise AlertTransitionError("cannot reopen an alert closed as a false alarm; a new alert will be opened",
                                   "reopen_false_alarm")
    since = a["resolved_at"] or a["closed_at"] or a["updated_at"]
    if since is not None and now - since > timedelta(seconds=cfg.reopen_window):
        raise AlertTransitionError(
            f"cannot reopen: it was resolved at {_fmt(since)}, longer ago than the reopen window "
            f"({cfg.reopen_window:g} s); a new alert will be opened", "reopen_window", since=_fmt(since))
    conn.execute(sa.text("UPDATE alerts SET status = 'open', level = coalesce(:lv, level), last_seen = "
                         "greatest(last_seen, :now), updated_at = :now WHERE id = :id"),
                 {"lv": level, "now": now, "id": a["id"]})
    _update(conn, a["id"], now, None, reopened=int(a["reopened"] or 0) + 1, resolved_at=None, resolution=None,
            closed_at=None, acknowledged_at=None, acknowledged_by=None, overdue_at=None)
    append_history(conn, a, action="reopened", actor=actor, status=status, level=level or a["level"], ts=now,
                   note=_join(what, note))
    return load_alert(conn, a["id"])


def reopen(engine, alert_id: str, *, actor: str, note: str | None = None, now: datetime | None = None,
           config: AlertingConfig | None = None) -> dict:
    """resolved/closed → open by a person, within the reopen window."""
    actor, now = _actor(actor), checked_now(now)
    with engine.begin() as conn:
        a = load_alert(conn, alert_id, lock=True)
        return _reopen_locked(conn, a, actor=actor, note=note, now=now, cfg=config or load_alerting())


def reopen_if_returning(conn, *, dedupe_key: str, level: str | None = None, now: datetime | None = None,
                        actor: str = "system:detect", config: AlertingConfig | None = None) -> dict | None:
    """For the detector, before it opens a new alert for ``dedupe_key``: reopen the latest alert of
    that condition if it was resolved (or verified-closed) within the reopen window; returns the
    reopened alert, or None when a new alert should be opened. Runs in the caller's transaction."""
    now, cfg = checked_now(now), config or load_alerting()
    row = conn.execute(sa.text(
        "SELECT a.id FROM alerts a JOIN alert_handling h ON h.alert_id = a.id "
        f"WHERE a.dedupe_key = :k AND a.status IN {FINISHED_SQL} AND NOT h.false_alarm "
        "AND coalesce(h.resolved_at, h.closed_at, a.updated_at) >= :since "
        "ORDER BY coalesce(h.resolved_at, h.closed_at, a.updated_at) DESC LIMIT 1 FOR UPDATE OF a"),
        {"k": dedupe_key, "since": now - timedelta(seconds=cfg.reopen_window)}).first()
    if row is None:
        return None
    a = load_alert(conn, row[0], lock=True)
    return _reopen_locked(conn, a, actor=actor, note=None, now=now, cfg=cfg, level=level,
                          what=REOPENED_CONDITION_RETURNED)


def continue_returning(conn, alert: dict, *, now: datetime | None = None,
                       config: AlertingConfig | None = None) -> dict | None:
    """A newly opened alert whose condition (``dedupe_key``) was resolved within the reopen window
    continues that case: it takes over its owner, escalation and dispatch, counts as reopened, and
    both histories say so. Checked once per alert; returns the predecessor, if any.

    (The live detector opens a new id when a condition returns; :func:`reopen_if_returning` is
    the in-place alternative for a detector that calls it before opening.)
    """
    now, cfg = checked_now(now), config or load_alerting()
    if alert.get("continuity_checked"):
        return None
    prev = None
    if alert["status"] in ACTIVE_STATUSES:
        prev = conn.execute(sa.text(
            "SELECT a.id, a.level, a.status, coalesce(h.resolved_at, h.closed_at, a.updated_at) AS ended, "
            "h.owner_region, h.visible_at, h.escalated_at, h.escalation_reason, h.assigned_unit, h.assigned_region, "
            "h.due_at, h.reopened FROM alerts a JOIN alert_handling h ON h.alert_id = a.id "
            f"WHERE a.dedupe_key = :k AND a.id <> :id AND a.status IN {FINISHED_SQL} AND NOT h.false_alarm "
            "AND a.first_seen < :first AND coalesce(h.resolved_at, h.closed_at, a.updated_at) >= :since "
            "ORDER BY coalesce(h.resolved_at, h.closed_at, a.updated_at) DESC LIMIT 1"),
            {"k": alert["dedupe_key"], "id": alert["id"], "first": alert["first_seen"],
             "since": alert["first_seen"] - timedelta(seconds=cfg.reopen_window)}).mappings().first()
    if prev is None:
        conn.execute(sa.text("UPDATE alert_handling SET continuity_checked = true WHERE alert_id = :id"),
                     {"id": alert["id"]})
        alert["continuity_checked"] = True
        return None
    prev = dict(prev)
    carried = {k: prev[k] for k in ("owner_region", "visible_at", "escalated_at", "escalation_reason",
                                    "assigned_unit", "assigned_region", "due_at")}
    reopened = int(prev["reopened"] or 0) + 1
    _update(conn, alert["id"], now, None, continues=prev["id"], continuity_checked=True, reopened=reopened,
            **carried)
    gap = (alert["first_seen"] - prev["ended"]).total_seconds() / 60
    append_history(conn, alert, action="reopened", actor="system:notify", ts=now, note=(
        f"条件在处置后 {gap:.0f} 分钟内复现, 续接预警 {prev['id']} / condition returned {gap:.0f} min after "
        f"it was resolved: continues alert {prev['id']} (owner, escalation and dispatch carried over)"))
    append_history(conn, {**prev, "id": prev["id"]}, action="reopened", actor="system:notify", ts=now,
                   note=f"条件复现, 由预警 {alert['id']} 续接 / condition returned: continued as alert {alert['id']}")
    alert.update(carried, continues=prev["id"], continuity_checked=True, reopened=reopened)
    return prev


def take_over(engine, alert_id: str, *, actor: str, region: str, note: str | None = None,
              now: datetime | None = None) -> dict:
    """A city or province takes an alert over (提级管理): it handles it from now on, and it is
    visible at that level."""
    actor, now = _actor(actor), checked_now(now)
    region = (region or "").strip()
    with engine.begin() as conn:
        a = load_alert(conn, alert_id, lock=True)
        next_status(a["status"], "take_over")
        r, owner = rank_in_path(a, region), rank_in_path(a, a["owner_region"])
        if r < 1:
            raise AlertTransitionError(
                f"{region or '(none)'} cannot take over this alert: only its city or province can "
                f"({' < '.join(region_path(a)[1:])})", "take_over_from_below")
        if r <= owner:
            raise AlertTransitionError(f"{region} already handles this alert (owner {a['owner_region']})",
                                       "already_yours", owner=a["owner_region"])
        visible = region if r > rank_in_path(a, a["visible_at"]) else a["visible_at"]
        _update(conn, a["id"], now, None, owner_region=region, visible_at=visible,
                escalated_at=now if visible != a["visible_at"] else a["escalated_at"])
        append_history(conn, a, action="taken_over", actor=actor, ts=now,
                       note=_join(f"{region} 接管 / taken over by {region}", note))
        return load_alert(conn, a["id"])


def flag_overdue(engine, *, now: datetime | None = None, actor: str = "system:supervise") -> list[str]:
    """Flag dispatched alerts past their due time (督办), once each; returns their ids."""
    now = checked_now(now)
    with engine.begin() as conn:
        rows = conn.execute(sa.text(
            "SELECT a.id, a.level, a.status, h.assigned_unit, h.due_at FROM alert_handling h "
            "JOIN alerts a ON a.id = h.alert_id WHERE h.overdue_at IS NULL AND h.due_at < :now "
            "AND a.status = 'dispatched' ORDER BY a.id FOR UPDATE OF h SKIP LOCKED"), {"now": now}).mappings().all()
        for r in rows:
            _update(conn, r["id"], now, None, overdue_at=now)
            append_history(conn, dict(r), action="overdue", actor=actor, ts=now,
                           note=f"督办: {r['assigned_unit']} 逾期 (限期 {_fmt(r['due_at'])}) / overdue since "
                                f"{r['due_at'].isoformat()}")
        return [r["id"] for r in rows]


ACTION_FUNCS = {"acknowledge": "acknowledge", "ack": "acknowledge", "dispatch": "dispatch",
                "resolve": "resolve", "close": "close", "false_alarm": "close_false_alarm",
                "reopen": "reopen", "take_over": "take_over"}


def transition(engine, *, alert_id: str, action: str, actor: str, note: str | None = None,
               **kwargs: Any) -> dict:
    """One entry point for the views: ``action`` is acknowledge | dispatch | resolve | close |
    false_alarm | reopen | take_over; extra keywords go to that function (``to_unit``, ``due_at``,
    ``to_region``, ``region``, ``false_alarm``). Returns the alert with its new ``status``."""
    name = ACTION_FUNCS.get(action)
    if name is None:
        raise AlertTransitionError(f"unknown action {action!r}; use one of {', '.join(ACTION_FUNCS)}")
    if name == "acknowledge":
        return acknowledge(engine, alert_id, actor=actor, note=note, **kwargs)
    if name == "dispatch":
        if not kwargs.get("to_unit") or not kwargs.get("due_at"):
            raise AlertTransitionError("dispatch needs a unit or person (to_unit) and a due time (due_at)", "need_unit")
        return dispatch(engine, alert_id, actor=actor, note=note, **kwargs)
    if name == "resolve":
        return resolve(engine, alert_id, actor=actor, note=note or "", **kwargs)
    if name == "close":
        return close(engine, alert_id, actor=actor, note=note, **kwargs)
    if name == "close_false_alarm":
        return close(engine, alert_id, actor=actor, note=note, false_alarm=True, **kwargs)
    if name == "reopen":
        return reopen(engine, alert_id, actor=actor, note=note, **kwargs)
    return take_over(engine, alert_id, actor=actor, note=note, **kwargs)


def history(conn_or_engine, alert_id: str) -> list[dict]:
    """The alert's history, oldest first."""
    sql = sa.text("SELECT ts, action, actor, level, status, note FROM alert_history "
                  "WHERE alert_id = :id ORDER BY ts, id")
    if isinstance(conn_or_engine, sa.Engine):
        with conn_or_engine.connect() as conn:
            return [dict(r) for r in conn.execute(sql, {"id": str(alert_id)}).mappings()]
    return [dict(r) for r in conn_or_engine.execute(sql, {"id": str(alert_id)}).mappings()]
