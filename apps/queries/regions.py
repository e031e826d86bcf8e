"""Regions for the views: the tree, adcode checks, the children's display boundaries."""

from __future__ import annotations

import hashlib

import orjson

from apps.errors import AppsError


def region_tree(engine):
    """The geo package's RegionTree (cached by geo per engine URL)."""
    from geo import RegionTree

    return RegionTree.from_db(engine)


def check_region(engine, adcode: str | None, level: str) -> str:
    """The adcode when it names a region of ``level``; else AppsError with the fix."""
    from apps.i18n import t

    tree = region_tree(engine)
    code = (adcode or "").strip()
    try:
        actual = tree.level(code)
    except Exception:  # unknown adcode: geo raises its own error type
        raise AppsError(t("region.unknown", "en", adcode=code or "(none)"), "region_unknown",
                        adcode=code or "-") from None
    if actual != level:
        raise AppsError(t("region.wrong_level", "en", name=tree.name(code, lang="en"), level=level),
                        "region_wrong_level", name_zh=tree.name(code), name_en=tree.name(code, lang="en"),
                        level=level)
    return code


def child_of(tree, adcode: str, scope: str) -> str | None:
    """The child of ``scope`` on the path down to ``adcode`` (None when outside or at scope)."""
    try:
        path = tree.path(adcode)
    except Exception:
        return None
    if scope not in path:
        return None
    i = path.index(scope)
    return path[i + 1] if i + 1 < len(path) else None


def safe_name(tree, adcode: str, lang: str = "zh") -> str:
    """The region's name, or the adcode itself when the tree does not know it."""
    try:
        return tree.name(adcode, lang=lang)
    except Exception:
        return adcode


_geojson_cache: dict[tuple[str, str], dict] = {}
_geojson_bytes: dict[tuple[str, str], tuple[bytes, str]] = {}


def clear_caches() -> None:
    """Forget the cached boundaries (a database was dropped or its regions reloaded)."""
    _geojson_cache.clear()
    _geojson_bytes.clear()


def children_geojson(engine, parent: str) -> dict:
    """Display boundaries of the parent's children (simplified per level by geo), cached."""
    from geo import display_geojson

    key = (engine.url.render_as_string(hide_password=False), parent)
    if key not in _geojson_cache:
        _geojson_cache[key] = plotly_orientation(display_geojson(engine, parent))
    return _geojson_cache[key]


def children_geojson_bytes(engine, parent: str) -> tuple[bytes, str]:
    """The children's boundaries serialised once (body, etag) for the ``/geo/children`` route."""
    key = (engine.url.render_as_string(hide_password=False), parent)
    if key not in _geojson_bytes:
        body = orjson.dumps(children_geojson(engine, parent))
        _geojson_bytes[key] = (body, hashlib.sha1(body).hexdigest()[:16])
    return _geojson_bytes[key]


def geojson_url(parent: str) -> str:
    return f"/geo/children/{parent}.geojson"


def plotly_orientation(fc: dict) -> dict:
    """The same FeatureCollection with clockwise exterior rings.

    plotly's geo maps (d3-geo, spherical) read a counter-clockwise ring — the GeoJSON standard's
    orientation — as "everything except this polygon" and paint the whole map; clockwise
    exteriors are what d3 expects.
    """
    import shapely
    from shapely.geometry import mapping, shape

    out = []
    for f in fc.get("features", []):
        geom = f.get("geometry")
        if geom:
            geom = mapping(shapely.orient_polygons(shape(geom), exterior_cw=True))
        out.append({**f, "geometry": geom})
    return {**fc, "features": out}


def scope_column(tree, scope: str, *, county_column: str = "county") -> str:
    """The column of a table's region path (``province``, ``city`` and its county column, as the
    migrations name them) that holds a region of ``scope``'s level: ``= :scope`` on it keeps the
    rows inside ``scope``."""
    level = tree.level(scope)
    return county_column if level == "county" else level
