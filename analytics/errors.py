"""The analytics package's exception root."""

from tongguan import TongguanError


class AnalyticsError(TongguanError):
    """Analytics could not do what was asked; the message says how to fix it."""
