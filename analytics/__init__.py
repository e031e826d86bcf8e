"""Analytics: warning rules, scikit-learn anomaly detectors and forecasts, the alert engine."""

from analytics.errors import AnalyticsError
from analytics.levels import LEVELS, max_level, rank
from analytics.rules import (Rule, RuleEngine, RuleEvent, SensorState, load_rules, parse_duration,
                             parse_rules, to_epoch)

__all__ = ["AnalyticsError", "LEVELS", "Rule", "RuleEngine", "RuleEvent", "SensorState", "load_rules",
           "max_level", "parse_duration", "parse_rules", "rank", "to_epoch"]
