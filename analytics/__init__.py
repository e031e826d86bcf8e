"""Analytics: warning rules, scikit-learn anomaly detectors and forecasts, the alert engine.

Public surface (import from here, not from the modules):

- rules: ``load_rules``, ``parse_rules``, ``RuleEngine`` (``update(state, reading) -> (state, events)``)
- anomaly detection: ``SeriesDetector`` and its components ``SpikeDetector``, ``LevelShiftDetector``,
  ``StuckDetector``, ``DriftDetector``, ``TimeOfDayDetector``; ``ScoreThresholder``; features
  ``series_features`` / ``frame_features``
- forecasts and video: ``Forecaster``, ``SurgeDetector``
- the detection core and alerts: ``DetectorCore``, ``AlertBook``, ``Alert`` (people's handling of
  alerts — acknowledge, dispatch, resolve, close — is ``analytics.alerting``,
  re-exported below)
- workers and tools: ``DetectWorker`` / ``DetectConfig`` (``tongguan detect``), ``train_from_db``,
  ``evaluate``, ``LEVELS``, ``LEVEL_LABELS``
"""

from importlib import import_module

# Names are imported on first use (PEP 562): `tongguan --help` and every other command import
# this package to register their parsers, and should not pay for scikit-learn, pandas and scipy.
_EXPORTS = {
    "Alert": "alerts", "AlertBook": "alerts",
    "DriftDetector": "detectors", "LevelShiftDetector": "detectors", "ScoreThresholder": "detectors",
    "SeriesDetector": "detectors", "SpikeDetector": "detectors", "StuckDetector": "detectors",
    "TimeOfDayDetector": "detectors",
    "DetectorCore": "engine",
    "AnalyticsError": "errors",
    "evaluate": "evaluate",
    "frame_features": "features", "series_features": "features",
    "Forecaster": "forecast",
    "LEVEL_LABELS": "levels", "LEVEL_NAMES": "levels", "LEVELS": "levels", "max_level": "levels",
    "rank": "levels",
    "ACTIVE_STATUSES": "statuses", "STATUS_LABELS": "statuses", "STATUSES": "statuses",
    "status_label": "statuses",
    "DetectConfig": "live", "DetectWorker": "live",
    "Rule": "rules", "RuleEngine": "rules", "RuleEvent": "rules", "SensorState": "rules", "load_rules": "rules",
    "parse_duration": "rules", "parse_rules": "rules", "to_epoch": "rules",
    "train_from_db": "train",
    "SurgeDetector": "video",
    # Alert handling, linkage and notification (issue 6): the lifecycle the views and the CLI use.
    "AlertingConfig": "alerting.config", "AlertingError": "alerting.config",
    "load_alerting": "alerting.config",
    "AlertTransitionError": "alerting.lifecycle", "transition": "alerting.lifecycle",
    "acknowledge": "alerting.lifecycle", "dispatch": "alerting.lifecycle", "resolve": "alerting.lifecycle",
    "close": "alerting.lifecycle", "reopen": "alerting.lifecycle", "take_over": "alerting.lifecycle",
    "flag_overdue": "alerting.lifecycle", "history": "alerting.lifecycle",
    "reopen_if_returning": "alerting.lifecycle",
    "region_status": "alerting.linkage", "children_status": "alerting.linkage",
    "alerts_for_region": "alerting.linkage", "escalate_due": "alerting.linkage",
    "refresh_sensors": "alerting.linkage", "add_silence": "alerting.linkage",
    "list_silences": "alerting.linkage", "expire_silence": "alerting.linkage",
    "add_subscription": "alerting.subscriptions", "list_subscriptions": "alerting.subscriptions",
    "remove_subscription": "alerting.subscriptions", "inbox": "alerting.subscriptions",
    "mark_read": "alerting.subscriptions", "unread_count": "alerting.subscriptions",
    "WebhookReceiver": "alerting.channels.webhook", "verify": "alerting.channels.webhook",
    "Notifier": "alerting.notifier",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'analytics' has no attribute {name!r}")
    value = getattr(import_module(f"analytics.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
