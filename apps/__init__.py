"""The Dash server: province / city / county views, alerts, subscriptions, status."""

from apps.app import create_app
from apps.context import AppConfig

__all__ = ["AppConfig", "create_app"]
