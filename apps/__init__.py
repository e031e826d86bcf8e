"""The Dash server: province / city / county views, alerts, subscriptions, status."""

from apps.app import AppConfig, create_app

__all__ = ["AppConfig", "create_app"]
