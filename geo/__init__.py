"""Administrative regions, grid cells, spatial assignment and display geometry."""

from tongguan import TongguanError


class GeoError(TongguanError):
    """A geo operation failed; the message says how to fix it."""


__all__ = ["GeoError"]
