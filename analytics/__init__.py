"""Analytics: warning rules, scikit-learn anomaly detectors and forecasts, the alert engine."""

from analytics.actions import TRANSITIONS, transition_alert
from analytics.alerts import Alert, AlertBook
from analytics.engine import DetectorCore
from analytics.errors import AnalyticsError
from analytics.levels import LEVELS, max_level, rank
from analytics.detectors import (DriftDetector, LevelShiftDetector, ScoreThresholder, SeriesDetector,
                                 SpikeDetector, StuckDetector, TimeOfDayDetector)
from analytics.features import frame_features, series_features
from analytics.rules import (Rule, RuleEngine, RuleEvent, SensorState, load_rules, parse_duration,
                             parse_rules, to_epoch)

__all__ = ["TRANSITIONS", "transition_alert", "Alert", "AlertBook", "DetectorCore",
           "DriftDetector", "LevelShiftDetector", "ScoreThresholder", "SeriesDetector", "SpikeDetector",
           "StuckDetector", "TimeOfDayDetector", "frame_features", "series_features",
           "AnalyticsError", "LEVELS", "Rule", "RuleEngine", "RuleEvent", "SensorState", "load_rules",
           "max_level", "parse_duration", "parse_rules", "rank", "to_epoch"]

# Alert handling, linkage and notification (issue 6).
from analytics.alerting_config import AlertingConfig, AlertingError, load_alerting
from analytics.lifecycle import (AlertTransitionError, acknowledge, close, dispatch, flag_overdue, history,
                                 reopen, reopen_if_returning, resolve, take_over, transition)
from analytics.linkage import (add_silence, alerts_for_region, children_status, escalate_due, expire_silence,
                               list_silences, refresh_sensors, region_status)
from analytics.subscriptions import (add_subscription, inbox, list_subscriptions, mark_read, remove_subscription,
                                     unread_count)
from analytics.channels import WebhookReceiver, verify as verify_webhook
from analytics.notifier import Notifier

__all__ += ["AlertingConfig", "AlertingError", "load_alerting", "AlertTransitionError", "acknowledge", "close",
            "dispatch", "flag_overdue", "history", "reopen", "reopen_if_returning", "resolve", "take_over",
            "transition", "add_silence", "alerts_for_region", "children_status", "escalate_due", "expire_silence",
            "list_silences", "refresh_sensors", "region_status", "add_subscription", "inbox", "list_subscriptions",
            "mark_read", "remove_subscription", "unread_count", "WebhookReceiver", "verify_webhook", "Notifier"]
