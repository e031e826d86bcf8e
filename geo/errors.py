"""The geo package's exception root."""

from tongguan import TongguanError


class GeoError(TongguanError):
    """A geo operation failed; the message says how to fix it."""
