"""Analytics: warning rules, scikit-learn anomaly detectors and forecasts, the alert engine.

Public surface (import from here, not from the modules):

- rules: ``load_rules``, ``parse_rules``, ``RuleEngine`` (``update(state, reading) -> (state, events)``)
- anomaly detection: ``SeriesDetector`` and its components ``SpikeDetector``, ``LevelShiftDetector``,
  ``StuckDetector``, ``DriftDetector``, ``TimeOfDayDetector``; ``ScoreThresholder``; features
  ``series_features`` / ``frame_features``
- forecasts and video: ``Forecaster``, ``SurgeDetector``
- the detection core and alerts: ``DetectorCore``, ``AlertBook``, ``Alert`` (people's handling of
  alerts — acknowledge, dispatch, resolve, close — is ``analytics.lifecycle``, re-exported below)
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
    "LEVEL_LABELS": "levels", "LEVELS": "levels", "max_level": "levels", "rank": "levels",
    "DetectConfig": "live", "DetectWorker": "live",
    "Rule": "rules", "RuleEngine": "rules", "RuleEvent": "rules", "SensorState": "rules", "load_rules": "rules",
    "parse_duration": "rules", "parse_rules": "rules", "to_epoch": "rules",
    "train_from_db": "train",
    "SurgeDetector": "video",
    # Alert handling, linkage and notification (issue 6): the lifecycle the views and the CLI use.
    "AlertingConfig": "alerting_config", "AlertingError": "alerting_config", "load_alerting": "alerting_config",
    "AlertTransitionError": "lifecycle", "transition": "lifecycle", "acknowledge": "lifecycle",
    "dispatch": "lifecycle", "resolve": "lifecycle", "close": "lifecycle", "reopen": "lifecycle",
    "take_over": "lifecycle", "flag_overdue": "lifecycle", "history": "lifecycle",
    "reopen_if_returning": "lifecycle",
    "region_status": "linkage", "children_status": "linkage", "alerts_for_region": "linkage",
    "escalate_due": "linkage", "refresh_sensors": "linkage", "add_silence": "linkage",
    "list_silences": "linkage", "expire_silence": "linkage",
    "add_subscription": "subscriptions", "list_subscriptions": "subscriptions",
    "remove_subscription": "subscriptions", "inbox": "subscriptions", "mark_read": "subscriptions",
    "unread_count": "subscriptions",
    "WebhookReceiver": "channels", "verify": "channels",
    "Notifier": "notifier",
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
