"""The Dash server: province / city / county views, alerts, subscriptions, status."""

from apps.context import AppConfig

__all__ = ["AppConfig", "create_app"]


def __getattr__(name):
    # Dash and pandas load only when the server is built: every `tongguan` command imports the
    # apps package to register its subcommands, and a store worker's restart should not pay ~1 s.
    if name == "create_app":
        from apps.app import create_app

        return create_app
    raise AttributeError(name)
