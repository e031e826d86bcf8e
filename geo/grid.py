"""Grid cells (网格) below the county: one fixed national metric lattice, clipped to each county.

Why a square lattice and not H3: management grids are drawn and counted in square metres
(a 1 km cell has 1 km², the same everywhere), sizes are free (500 m, 1 km, 2 km — H3 only has
fixed resolutions whose cells vary in area and do not nest exactly), cells must be clipped to
the county so each belongs to exactly one county, and the id must be readable by a person
(county-size-column-row). H3 would add a dependency and give none of that.

The lattice lives in an Albers equal-area projection for China (``grid.crs`` in
``data/geo.json``): cell (col, row) of size s is the square [col·s, (col+1)·s) × [row·s,
(row+1)·s) in projected metres. The same square always gets the same id, whichever counties or
provinces are generated, and squares of neighbouring counties align. A square crossing a county
border is split into one cell per county (same col/row, different county prefix). The stored
polygon joins the projected corners with straight lines in lon/lat; at grid sizes the difference
from the projected square is far below a millimetre.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

import numpy as np
import shapely
import sqlalchemy as sa

from geo.config import config
from geo.errors import GeoError

log = logging.getLogger(__name__)

_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(m|km)?\s*$", re.IGNORECASE)


def parse_size(text) -> int:
    """Grid size in metres from ``500m``, ``1km``, ``1.5km`` or a plain number of metres.

    >>> parse_size("1km"), parse_size("500m"), parse_size("2000"), parse_size(" 1.5 KM ")
    (1000, 500, 2000, 1500)
    >>> parse_size("1 mile")
    Traceback (most recent call last):
    geo.errors.GeoError: grid size '1 mile' not understood: write e.g. 500m, 1km or 2000 (metres)
    """
    if isinstance(text, (int, np.integer)):
        value = float(text)
    else:
        m = _SIZE_RE.match(str(text))
        if not m:
            raise GeoError(f"grid size {text!r} not understood: write e.g. 500m, 1km or 2000 (metres)")
        value = float(m.group(1)) * (1000 if (m.group(2) or "m").lower() == "km" else 1)
    cfg = config()["grid"]
    if value != int(value):
        raise GeoError(f"grid size {text!r} is not a whole number of metres")
    if not cfg["min_size_m"] <= value <= cfg["max_size_m"]:
        raise GeoError(f"grid size {text!r} out of range: use {cfg['min_size_m']} m to "
                       f"{cfg['max_size_m'] // 1000} km")
    return int(value)


@lru_cache(maxsize=1)
def lattice_transformer():
    """lon/lat (EPSG:4326, x = longitude) → lattice metres; always_xy so the order is explicit."""
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4326", config()["grid"]["crs"], always_xy=True)


@lru_cache(maxsize=1)
def _inverse_transformer():
    from pyproj import Transformer

    return Transformer.from_crs(config()["grid"]["crs"], "EPSG:4326", always_xy=True)


def format_grid_ids(county, size, col, row) -> np.ndarray:
    """Vectorised ``{county}-{size}-{col:04d}-{row:04d}``.

    >>> format_grid_ids(np.array(["440106"]), np.array([1000]), np.array([4812]), np.array([77])).tolist()
    ['440106-1000-4812-0077']
    """
    county = np.asarray(county).astype("U6")
    size = np.broadcast_to(np.asarray(size), county.shape).astype("U")
    col = np.strings.zfill(np.asarray(col).astype("U"), 4)
    row = np.strings.zfill(np.asarray(row).astype("U"), 4)
    out = np.strings.add(np.strings.add(county, "-"), size)
    out = np.strings.add(np.strings.add(out, "-"), col)
    return np.strings.add(np.strings.add(out, "-"), row)


def grid_id(county: str, size_m: int, col: int, row: int) -> str:
    """The id of one cell.

    >>> grid_id("440106", 1000, 4812, 77)
    '440106-1000-4812-0077'
    """
    return f"{county}-{size_m}-{col:04d}-{row:04d}"


def cell_of(lon, lat, size_m: int) -> tuple[np.ndarray, np.ndarray]:
    """Lattice column and row of points (vectorised)."""
    x, y = lattice_transformer().transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    return np.floor(np.asarray(x) / size_m).astype(np.int64), np.floor(np.asarray(y) / size_m).astype(np.int64)


def county_cells(county: str, geom, size_m: int) -> list[tuple[str, int, int, shapely.MultiPolygon]]:
    """The lattice squares meeting a county, clipped to it: (grid_id, col, row, MultiPolygon 4326)."""
    from geo.regions import SRID, as_multipolygon

    fwd, inv = lattice_transformer(), _inverse_transformer()
    minx, miny, maxx, maxy = geom.bounds
    cx, cy = fwd.transform(np.array([minx, maxx, minx, maxx]), np.array([miny, miny, maxy, maxy]))
    # the projected bounding box of a lon/lat box can bulge; pad by a cell
    c0, c1 = int(np.floor(min(cx) / size_m)) - 1, int(np.floor(max(cx) / size_m)) + 1
    r0, r1 = int(np.floor(min(cy) / size_m)) - 1, int(np.floor(max(cy) / size_m)) + 1
    cols, rows = np.meshgrid(np.arange(c0, c1 + 1), np.arange(r0, r1 + 1))
    cols, rows = cols.ravel(), rows.ravel()
    x0, y0 = cols * float(size_m), rows * float(size_m)
    # corners counter-clockwise, transformed to lon/lat
    xs = np.stack([x0, x0 + size_m, x0 + size_m, x0, x0], axis=1)
    ys = np.stack([y0, y0, y0 + size_m, y0 + size_m, y0], axis=1)
    lon, lat = inv.transform(xs.ravel(), ys.ravel())
    rings = np.stack([np.asarray(lon), np.asarray(lat)], axis=1).reshape(len(cols), 5, 2)
    squares = shapely.polygons(rings)
    shapely.prepare(geom)
    meets = shapely.intersects(geom, squares)
    squares, cols, rows = squares[meets], cols[meets], rows[meets]
    inside = shapely.contains_properly(geom, squares)
    clipped = squares.copy()
    if (~inside).any():
        clipped[~inside] = shapely.intersection(squares[~inside], geom)
    out = []
    for g, c, r in zip(clipped, cols, rows):
        g = as_multipolygon(_polygonal(g))
        if g is None or g.area <= 0:
            continue  # touches the county only along an edge or at a corner
        out.append((grid_id(county, size_m, int(c), int(r)), int(c), int(r), shapely.set_srid(g, SRID)))
    return out


def _polygonal(geom):
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon" and p.area > 0]
    return shapely.MultiPolygon(parts) if parts else None


_UPSERT = """
WITH up AS (
    INSERT INTO grid_cells AS g (grid_id, county, geom, size_m, col, "row", centroid)
    SELECT grid_id, county, geom, size_m, col, "row",
           CASE WHEN ST_Contains(geom, ST_Centroid(geom)) THEN ST_Centroid(geom)
                ELSE ST_PointOnSurface(geom) END
    FROM grid_stage
    ON CONFLICT (grid_id) DO UPDATE SET
        county = EXCLUDED.county, geom = EXCLUDED.geom, size_m = EXCLUDED.size_m,
        col = EXCLUDED.col, "row" = EXCLUDED."row", centroid = EXCLUDED.centroid
    WHERE ST_AsEWKB(g.geom) IS DISTINCT FROM ST_AsEWKB(EXCLUDED.geom)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up
"""


def _write_cells(conn, county: str, size_m: int, cells) -> tuple[int, int, int]:
    from geo.regions import ewkb

    conn.execute(sa.text(
        "CREATE TEMP TABLE IF NOT EXISTS grid_stage (grid_id text, county char(6), "
        "geom geometry(MultiPolygon, 4326), size_m int, col int, \"row\" int) ON COMMIT DELETE ROWS"))
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, \
            cur.copy('COPY grid_stage (grid_id, county, geom, size_m, col, "row") FROM STDIN') as copy:
        for gid, c, r, g in cells:
            copy.write_row((gid, county, ewkb(g), size_m, c, r))
    inserted, updated = conn.execute(sa.text(_UPSERT)).one()
    # cells that no longer meet the county (its boundary changed) go
    deleted = conn.execute(sa.text(
        "DELETE FROM grid_cells g WHERE g.county = :c AND g.size_m = :s "
        "AND NOT EXISTS (SELECT 1 FROM grid_stage s WHERE s.grid_id = g.grid_id)"),
        {"c": county, "s": size_m}).rowcount
    conn.execute(sa.text("TRUNCATE grid_stage"))
    return int(inserted), int(updated), int(deleted)


def generate_grid(engine: sa.Engine, size_m=1000, provinces=None, *, counties=None,
                  progress: bool = False) -> int:
    """Generate (idempotently) the grid of the given size for county-level units.

    ``provinces`` / ``counties`` restrict which units (default: all loaded). Returns the number
    of grid cells those units now have at this size.
    """
    from tqdm import tqdm

    from geo.regions import check_table
    from geo.tree import RegionTree

    size_m = parse_size(size_m)
    tree = RegionTree.from_db(engine, refresh=True)
    units = tree.county_level_units()
    if not units:
        raise GeoError("no regions in the database: run `tongguan geo load` first")
    if counties:
        wanted = [str(c) for c in counties]
        unknown = [c for c in wanted if c not in tree or tree.county_unit_of(c) != c]
        if unknown:
            raise GeoError(f"not a loaded county-level region: {', '.join(unknown)} "
                           f"(see `tongguan geo tree`)")
        units = [c for c in units if c in set(wanted)]
    if provinces:
        provinces = [str(p) for p in provinces]
        missing = [p for p in provinces if p not in tree or tree.level(p) != "province"]
        if missing:
            raise GeoError(f"{', '.join(missing)}: not a loaded province (a province adcode ends in 0000; "
                           f"load one with `tongguan geo load --province 440000`)")
        units = [c for c in units if tree.province_of(c) in provinces]
    total = inserted = updated = deleted = 0
    with engine.connect() as conn:
        check_table(conn, "grid_cells", "geom")
    for county in tqdm(units, desc=f"网格 grid {size_m} m", unit="county", disable=not progress):
        with engine.begin() as conn:
            wkb = conn.execute(sa.text("SELECT ST_AsBinary(geom) FROM regions WHERE adcode = :a"),
                               {"a": county}).scalar_one()
            cells = county_cells(county, shapely.from_wkb(bytes(wkb)), size_m)
            i, u, d = _write_cells(conn, county, size_m, cells)
        total += len(cells)
        inserted, updated, deleted = inserted + i, updated + u, deleted + d
    log.info("grid %d m for %d counties: %d cells (%d new, %d changed, %d removed)",
             size_m, len(units), total, inserted, updated, deleted)
    return total
