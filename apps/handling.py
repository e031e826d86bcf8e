"""Alert handling by a signed-in caller, through the analytics lifecycle: from the API
(``act``) and from the views' buttons and forms (``handle``: take over, acknowledge, dispatch with
unit and due time, resolve with note, verify and close, close as a false alarm, reopen). Both
check ``apps.policy.can_handle`` first and are audited.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apps import audit
from apps.api_queries import alert
from apps.errors import AccessError, AppsError
from apps.policy import ACTIONS, Reason, can_handle
from apps.scope import Scope, current
from tongguan import TongguanError

DEFAULT_UNIT = "区县值班处置组"
DISPATCH_DUE = timedelta(hours=4)
# The views' button names and the lifecycle action each applies.
VIEW_ACTIONS = {"ack": "acknowledge", "take_over": "take_over", "dispatch": "dispatch", "resolve": "resolve",
                "close": "close", "false_alarm": "false_alarm", "reopen": "reopen"}


def act(engine, scope: Scope, alert_id: str, action: str, *, note: str | None = None,
        channel: str = "web", ip: str | None = None, **kwargs) -> dict:
    """Apply one handling action through the analytics lifecycle after the scope and role check;
    audited either way (ok, denied, failed). Returns the alert as it is afterwards."""
    if action not in ACTIONS:
        raise AccessError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}", 422, "invalid")
    try:
        row = alert(engine, scope, alert_id, history=False)
    except AccessError as exc:  # unknown, or outside the region (one answer): audited, as a bulk action's ids are
        audit.record(engine, actor=scope.username, user_id=scope.user_id, action=f"alert_{action}",
                     target=str(alert_id), outcome="denied", channel=channel, ip=ip, detail={"reason": str(exc)})
        raise
    ok, how = can_handle(engine, scope, row, action)
    base = dict(actor=scope.username, user_id=scope.user_id, region=row["adcode"], target=str(alert_id),
                channel=channel, ip=ip)
    if not ok:
        audit.record(engine, action=f"alert_{action}", outcome="denied", detail={"reason": how}, **base)
        raise AccessError(how, 403, "forbidden")
    from analytics.alerting.lifecycle import transition

    kw = {k: v for k, v in kwargs.items() if v is not None}
    if action == "take_over":
        kw["region"] = scope.home
    try:
        if how == "take_over":  # an ancestor the alert escalated to: take it over, then act
            transition(engine, alert_id=str(alert_id), action="take_over", actor=scope.username,
                       note=None, region=scope.home)
            audit.record(engine, action="alert_take_over", detail={"implicit": True}, **base)
        transition(engine, alert_id=str(alert_id), action=action, actor=scope.username, note=note, **kw)
    except TongguanError as exc:
        audit.record(engine, action=f"alert_{action}", outcome="failed", detail={"error": str(exc)}, **base)
        raise AccessError(str(exc), 409, "conflict", getattr(exc, "key", None),
                          **(getattr(exc, "params", None) or {})) from None
    except TypeError as exc:  # a keyword this action does not take
        raise AccessError(f"bad arguments for {action}: {exc}", 422, "invalid") from None
    audit.record(engine, action=f"alert_{action}", detail={"note": note, **{k: str(v) for k, v in kw.items()}},
                 **base)
    return alert(engine, scope, alert_id)


def check_action(engine, *, alert_id: str, action: str, actor: str) -> str:
    """Inside a signed-in request, refuse an action the user may not take (AccessError, audited —
    an id outside the region or unknown too) and return the user's name as the actor; outside a
    request (CLI, workers, tests of the views) return ``actor`` unchanged. Only refusals are
    recorded here: what an allowed action did is recorded by :func:`act` once it is known."""
    scope = current()
    if scope is None:
        return actor
    base = dict(actor=scope.username, user_id=scope.user_id, action=f"alert_{action}", target=str(alert_id))
    try:
        row = alert(engine, scope, alert_id, history=False)
    except AccessError as exc:  # not found, or not in the caller's region: the same answer, audited
        audit.record(engine, outcome="denied", detail={"reason": str(exc)}, **base)
        raise
    ok, how = can_handle(engine, scope, row, action)
    if not ok or how == "take_over":
        why = how if not ok else Reason("take the alert over first", "take_over_first")
        audit.record(engine, region=row["adcode"], outcome="denied", detail={"reason": why}, **base)
        raise AccessError(why, 403, "forbidden")
    return scope.username


def handle(engine, *, alert_id: str, action: str, actor: str, note: str | None = None,
           to_unit: str | None = None, due_at: datetime | None = None) -> str:
    """Apply one of the views' actions (``VIEW_ACTIONS``); returns the new status.

    Inside a signed-in request this is :func:`act` (the API's path): the same access rule, the
    same audit, and acting on an alert escalated to the caller's level takes it over first. A
    dispatch goes to ``to_unit`` by ``due_at`` — its own fields, never the note; without them (the
    tables' quick button) to the county's duty team within four hours. Raises the lifecycle's
    error (a TongguanError saying why) for a transition that makes no sense, AccessError when the
    user may not take it."""
    from analytics.alerting.lifecycle import transition

    if action not in VIEW_ACTIONS:
        raise AppsError(f"unknown action {action!r}; use one of {', '.join(VIEW_ACTIONS)}")
    lifecycle_action = VIEW_ACTIONS[action]
    extra: dict = {}
    if lifecycle_action == "dispatch":
        extra = {"to_unit": (to_unit or "").strip() or DEFAULT_UNIT,
                 "due_at": due_at or datetime.now(UTC) + DISPATCH_DUE}
    scope = current()
    if scope is not None:
        return act(engine, scope, alert_id, lifecycle_action, note=note, **extra)["status"]
    if lifecycle_action == "take_over":
        extra["region"] = actor.split(":", 1)[-1]
    result = transition(engine, alert_id=alert_id, action=lifecycle_action, actor=actor, note=note, **extra)
    return result["status"]
