"""Simplified GeoJSON for the maps: the children of a region, at the detail of that view.

The province view gets its cities, the city view its counties, a county-level view its grid
cells. Region geometry was simplified at load time (``regions.geom_display``, siblings together
with ``shapely.coverage_simplify`` so shared borders stay shared); grid cells are simplified
here, per county, the same way. Coordinates are rounded to ``display.geojson_decimals``
(5 decimals ≈ 1 m) and rings follow RFC 7946 (exterior counter-clockwise). The maps have no tile layer (intranet): these boundaries are the base map.
"""

from __future__ import annotations

import json

import numpy as np
import shapely
import sqlalchemy as sa

from geo.config import config
from geo.errors import GeoError


def _feature(fid: str, geometry: dict, **props) -> dict:
    return {"type": "Feature", "id": fid, "geometry": geometry, "properties": {"adcode": fid, **props}}


def _rounded_geojson(geom, decimals: int) -> dict:
    geom = shapely.transform(geom, lambda xy: np.round(xy, decimals))
    geom = shapely.orient_polygons(geom, exterior_cw=False)  # RFC 7946: exteriors counter-clockwise
    return json.loads(shapely.to_geojson(geom))


def display_geojson(engine: sa.Engine, parent_adcode: str | None) -> dict:
    """FeatureCollection of the parent's children, simplified for that display level.

    ``parent_adcode=None`` gives the loaded provinces. For a county-level unit (a county, or a
    city without counties such as Dongguan) the children are its grid cells (the smallest grid
    size generated); without a grid it is the unit itself. Feature properties: ``adcode``
    (grid id for cells), ``name``, ``name_en``, ``level``, ``parent``.
    """
    from geo.regions import simplify_coverage
    from geo.tree import RegionTree

    decimals = int(config()["display"]["geojson_decimals"])
    tree = RegionTree.from_db(engine)
    if parent_adcode in (None, "", "000000"):
        codes = tree.provinces()
        parent_adcode = None
    else:
        parent_adcode = str(parent_adcode)
        codes = tree.children(parent_adcode)  # raises GeoError for an unknown code
    if codes:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT adcode, name, name_en, level, parent, "
                "ST_AsGeoJSON(ST_ForcePolygonCCW(COALESCE(geom_display, geom)), :d)::json AS g "
                "FROM regions WHERE adcode = ANY(:a) ORDER BY adcode"), {"a": codes, "d": decimals}).all()
        features = [_feature(r.adcode, r.g, name=r.name, name_en=r.name_en, level=r.level, parent=r.parent)
                    for r in rows]
        return {"type": "FeatureCollection", "parent": parent_adcode, "features": features}

    with engine.connect() as conn:
        cells = conn.execute(sa.text(
            "SELECT grid_id, size_m, ST_AsBinary(geom) AS wkb FROM grid_cells WHERE county = :c "
            "AND size_m = (SELECT min(size_m) FROM grid_cells WHERE county = :c) ORDER BY grid_id"),
            {"c": parent_adcode}).all()
        if not cells:
            r = conn.execute(sa.text(
                "SELECT adcode, name, name_en, level, parent, "
                "ST_AsGeoJSON(ST_ForcePolygonCCW(COALESCE(geom_display, geom)), :d)::json AS g FROM regions WHERE adcode = :a"),
                {"a": parent_adcode, "d": decimals}).one()
            return {"type": "FeatureCollection", "parent": parent_adcode,
                    "features": [_feature(r.adcode, r.g, name=r.name, name_en=r.name_en, level=r.level,
                                          parent=r.parent)]}
    geoms = simplify_coverage(shapely.from_wkb([bytes(c.wkb) for c in cells]), config()["display"]["grid"])
    features = [_feature(c.grid_id, _rounded_geojson(g, decimals), name=c.grid_id, name_en=c.grid_id,
                         level="grid", parent=parent_adcode, size_m=c.size_m)
                for c, g in zip(cells, geoms)]
    return {"type": "FeatureCollection", "parent": parent_adcode, "features": features}


__all__ = ["GeoError", "display_geojson"]
