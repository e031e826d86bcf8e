"""What people do with alerts (事件闭环): acknowledge, dispatch, resolve, close — each step checked,
applied to the ``alerts`` row and appended to its history in one transaction."""

from __future__ import annotations

import sqlalchemy as sa

from analytics.errors import AnalyticsError

# status -> the statuses a person may move an alert to from there
TRANSITIONS = {
    "open": ("acknowledged", "dispatched", "resolved", "closed"),
    "acknowledged": ("dispatched", "resolved", "closed"),
    "dispatched": ("resolved", "closed"),
    "resolved": ("closed",),
    "closed": (),
}
ACTION_OF = {"acknowledged": "acknowledged", "dispatched": "dispatched", "resolved": "resolved", "closed": "closed"}


def transition_alert(engine, alert_id: str, status: str, *, actor: str, note: str | None = None) -> dict:
    """Move alert ``alert_id`` to ``status`` on behalf of ``actor``; returns the new row as a dict.

    Raises :class:`AnalyticsError` for an unknown alert or a step the event loop does not allow
    (e.g. reopening a closed alert). Scope checks (may this person act on this county?) belong to
    the caller, which knows the person.
    """
    if status not in TRANSITIONS:
        raise AnalyticsError(f"unknown alert status {status!r}; use one of {', '.join(TRANSITIONS)}")
    with engine.begin() as conn:
        row = conn.execute(sa.text("SELECT status, level FROM alerts WHERE id = :id FOR UPDATE"),
                           {"id": alert_id}).first()
        if row is None:
            raise AnalyticsError(f"no alert with id {alert_id!r}")
        current, level = row
        if status not in TRANSITIONS[current]:
            allowed = ", ".join(TRANSITIONS[current]) or "nothing (it is closed)"
            raise AnalyticsError(f"alert {alert_id} is {current}; it can move to {allowed}, not {status}")
        conn.execute(sa.text("UPDATE alerts SET status = :s, updated_at = now() WHERE id = :id"),
                     {"s": status, "id": alert_id})
        conn.execute(sa.text("""INSERT INTO alert_history (alert_id, action, actor, level, status, note)
                                VALUES (:id, :action, :actor, :level, :s, :note)"""),
                     {"id": alert_id, "action": ACTION_OF[status], "actor": actor, "level": level, "s": status,
                      "note": note})
    return {"id": alert_id, "status": status, "previous": current, "actor": actor}
