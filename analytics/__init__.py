"""Analytics: warning rules, scikit-learn anomaly detectors and forecasts, the alert engine."""

from analytics.errors import AnalyticsError
from analytics.levels import LEVELS, max_level, rank
from analytics.detectors import (DriftDetector, LevelShiftDetector, ScoreThresholder, SeriesDetector,
                                 SpikeDetector, StuckDetector, TimeOfDayDetector)
from analytics.features import frame_features, series_features
from analytics.rules import (Rule, RuleEngine, RuleEvent, SensorState, load_rules, parse_duration,
                             parse_rules, to_epoch)

__all__ = ["DriftDetector", "LevelShiftDetector", "ScoreThresholder", "SeriesDetector", "SpikeDetector",
           "StuckDetector", "TimeOfDayDetector", "frame_features", "series_features",
           "AnalyticsError", "LEVELS", "Rule", "RuleEngine", "RuleEvent", "SensorState", "load_rules",
           "max_level", "parse_duration", "parse_rules", "rank", "to_epoch"]
