"""Administrative regions, grid cells, spatial assignment and display geometry."""

from geo.errors import GeoError

__all__ = ["GeoError"]
