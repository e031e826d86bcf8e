"""Alert handling from the county view (acknowledge, dispatch, resolve with note, close).

The lifecycle and its rules belong to the analytics package (issue 6); the views only call it.
Until analytics exposes a transition function the buttons answer that handling is not
available, rather than writing to its tables behind its back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

DEFAULT_UNIT = "区县值班处置组"
DISPATCH_DUE = timedelta(hours=4)
ACTIONS = {"ack": "acknowledge", "dispatch": "dispatch", "resolve": "resolve", "close": "close"}


def _transition_function():
    """analytics' public transition function, when it exists."""
    try:
        import analytics
    except ImportError:
        return None
    for name in ("transition", "transition_alert", "handle_alert"):
        fn = getattr(analytics, name, None)
        if callable(fn):
            return fn
    try:  # before analytics re-exports it
        from analytics.lifecycle import transition
    except ImportError:
        return None
    return transition


def available() -> bool:
    return _transition_function() is not None


def handle(engine, *, alert_id: str, action: str, actor: str, note: str | None = None) -> str:
    """Apply one handling action; returns the new status. Raises the analytics error (a
    TongguanError whose message says why) when the transition makes no sense."""
    from apps.catalogue import AppsError

    if action not in ACTIONS:
        raise AppsError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    fn = _transition_function()
    if fn is None:
        raise AppsError("alert handling is not available yet (the analytics alert lifecycle is missing)")
    from apps.scope import (
        check_action,  # signed-in user's region scope and operator role (access)
    )

    actor = check_action(engine, alert_id=alert_id, action=ACTIONS[action], actor=actor)
    extra = {}
    if action == "dispatch":
        # The county view dispatches to the unit named in the note field (default: the county's
        # duty team) with the default due time; the alerts page offers the full form.
        extra = {"to_unit": (note or "").strip() or DEFAULT_UNIT,
                 "due_at": datetime.now(UTC) + DISPATCH_DUE}
    result = fn(engine, alert_id=alert_id, action=ACTIONS[action], actor=actor, note=note, **extra)
    return getattr(result, "status", None) or (result.get("status") if isinstance(result, dict) else str(result))
