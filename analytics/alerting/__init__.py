"""Alert handling, the room for what people and systems do with the warnings detection raises:
the handling lifecycle (acknowledge, dispatch, resolve, close), regional linkage (escalation,
silences, inhibition, incidents), subscriptions, the notifier and its delivery channels
(``channels``: one module per channel), their configuration (``alerting.yaml``), tables and
command line (``tongguan alerts``, ``subscriptions``, ``notify``).

Public surface (import from here, not from the modules)::

    transition(engine, alert_id=..., action=..., actor=...)   # and acknowledge, dispatch, resolve, …
    region_status / children_status / alerts_for_region / escalate_due   # regional linkage
    add_subscription / update_subscription / list_subscriptions / remove_subscription / inbox
    Notifier(settings).run()                                  # ``tongguan notify``
    load_alerting() -> AlertingConfig; AlertingError
"""

from tongguan.lazy import lazy_exports

# Imported on first use (PEP 562), like ``analytics``: the command line imports this package to
# register its parsers and should not pay for the notifier's dependencies.
_EXPORTS = {
    "AlertingConfig": "config", "AlertingError": "config",
    "load_alerting": "config",
    "AlertTransitionError": "lifecycle", "transition": "lifecycle",
    "acknowledge": "lifecycle", "dispatch": "lifecycle", "resolve": "lifecycle",
    "close": "lifecycle", "reopen": "lifecycle", "take_over": "lifecycle",
    "flag_overdue": "lifecycle", "history": "lifecycle",
    "reopen_if_returning": "lifecycle",
    "region_status": "linkage", "children_status": "linkage",
    "alerts_for_region": "linkage", "escalate_due": "linkage",
    "refresh_sensors": "linkage", "add_silence": "linkage",
    "list_silences": "linkage", "expire_silence": "linkage", "overdue": "linkage",
    "add_subscription": "subscriptions", "list_subscriptions": "subscriptions",
    "remove_subscription": "subscriptions", "update_subscription": "subscriptions", "inbox": "subscriptions",
    "mark_read": "subscriptions", "unread_count": "subscriptions",
    "WebhookReceiver": "channels.webhook", "verify": "channels.webhook",
    "Notifier": "notifier",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
