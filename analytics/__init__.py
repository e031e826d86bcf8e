"""Analytics, the early-warning room: warning rules, scikit-learn anomaly detectors and
forecasts, and the detection core that turns the stream into alerts on the national four-level
scale — with the shared vocabulary of levels and alert statuses. What people and systems do with
the alerts (handling, linkage, subscriptions, notification) is the subpackage
``analytics.alerting``, with its own public surface.

Public surface (import from here, not from the modules):

- rules: ``load_rules``, ``parse_rules``, ``RuleEngine`` (``update(state, reading) -> (state, events)``)
- anomaly detection: ``SeriesDetector`` and its components ``SpikeDetector``, ``LevelShiftDetector``,
  ``StuckDetector``, ``DriftDetector``, ``TimeOfDayDetector``; ``ScoreThresholder``; features
  ``series_features`` / ``frame_features``
- forecasts and video: ``Forecaster``, ``SurgeDetector``
- the detection core and alerts: ``DetectorCore``, ``AlertBook``, ``Alert``
- workers and tools: ``DetectWorker`` / ``DetectConfig`` (``tongguan detect``), ``train_from_db``,
  ``evaluate``
- vocabulary: ``LEVELS``, ``LEVEL_NAMES``, ``LEVEL_LABELS``, ``rank``, ``max_level``;
  ``STATUSES``, ``ACTIVE_STATUSES``, ``STATUS_LABELS``, ``status_label``
"""

from tongguan.lazy import lazy_exports

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
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
