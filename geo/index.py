"""Vectorised point → county/city/province/grid assignment (the ingest hot path).

How it is fast and still exact (same answer as PostGIS ``ST_Contains`` on the stored geometry):

1. A lattice of small squares (``index.lattice_step_deg`` in ``data/geo.json``, 0.005° ≈ 500 m)
   covers the loaded counties. For each county, every square its border passes through is
   marked (conservatively: every square within a border segment's bounding box, borders cut
   into pieces shorter than half a square first). The squares no border touches form connected
   areas that lie wholly inside or wholly outside the county; one point-in-polygon test per
   area tells which.
2. A point in a square that no border touches gets its county by a table look-up: no polygon
   test at all. Only points in border squares are tested, with ``shapely.contains_xy`` on
   prepared geometry, and only against the counties whose border or interior meets that square.
3. The grid id needs no polygon test either: cells are squares of one fixed national lattice
   (see ``geo.grid``) clipped to the county, so column and row follow from the projected
   coordinates, and the county is already known.

A point on a border belongs to no county (``ST_Contains`` is false on the boundary), so it is
reported as outside, as are points in the sea and beyond the loaded provinces. Should two
county polygons overlap (they do not in the source), the lower adcode wins.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import shapely
import sqlalchemy as sa

from geo.config import config
from geo.errors import GeoError

log = logging.getLogger(__name__)

_MAX_LATTICE_CELLS = 24_000_000  # ~100 MB of int32; coarser lattice beyond that (all of China)
_EPS = 1e-9  # degrees; border squares are marked with this margin so rounding cannot miss one


@dataclass(frozen=True)
class Assignment:
    """Per-point answer of ``RegionIndex.assign``: arrays of the same length as the input.

    ``county``, ``city``, ``province`` and ``grid_id`` hold adcode / id strings, ``""`` where the
    point is outside every loaded county (``outside`` is True there) or, for ``grid_id``, where
    the county has no grid. For a city without counties (Dongguan, Zhongshan) ``county`` is the
    city's own adcode.
    """

    county: np.ndarray
    city: np.ndarray
    province: np.ndarray
    grid_id: np.ndarray
    outside: np.ndarray

    def __len__(self) -> int:
        return len(self.county)

    def row(self, i: int) -> dict:
        return {"county": str(self.county[i]), "city": str(self.city[i]),
                "province": str(self.province[i]), "grid_id": str(self.grid_id[i]),
                "outside": bool(self.outside[i])}


class RegionIndex:
    """County polygons and the grid lattice, loaded once; ``assign`` is pure and thread-safe."""

    def __init__(self, counties: list[str], geoms, cities: list[str], provinces: list[str], *,
                 grid_sizes: dict[str, int] | None = None, lattice_step: float | None = None):
        if not (len(counties) == len(geoms) == len(cities) == len(provinces)):
            raise GeoError("counties, geometries, cities and provinces must have the same length")
        if len(counties) == 0:
            raise GeoError("no county-level regions to index: run `tongguan geo load` first")
        self.n = len(counties)
        self.outside_code = self.n
        self._county = np.array(list(counties) + [""], dtype="<U6")
        self._city = np.array(list(cities) + [""], dtype="<U6")
        self._province = np.array(list(provinces) + [""], dtype="<U6")
        self._geoms = np.array(list(geoms), dtype=object)
        srids = set(np.unique(shapely.get_srid(self._geoms)).tolist())
        if srids != {4326}:
            # CRS is never implicit: lon/lat arrays only make sense against EPSG:4326 polygons.
            raise GeoError(f"county geometries must carry SRID 4326 (lon/lat), got {sorted(srids)}; "
                           f"use shapely.set_srid(geoms, 4326) after checking they are lon/lat")
        shapely.prepare(self._geoms)
        grid_sizes = grid_sizes or {}
        self._grid_size = np.array([grid_sizes.get(c, 0) for c in counties] + [0], dtype=np.int64)
        # "440106-1000-" per county: python strings, so formatting an id is one cheap f-string
        self._grid_prefix = [f"{c}-{s}-" for c, s in zip(self._county.tolist(), self._grid_size.tolist())]
        self._transformer = None
        if self._grid_size.any():
            from geo.grid import lattice_transformer

            self._transformer = lattice_transformer()
        self._build_lattice(lattice_step or config()["index"]["lattice_step_deg"])

    # -- pickling (a worker caches its index: building the lattice costs seconds) ----------
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_transformer"] = None  # rebuilt on load; a pyproj transformer is not portable state
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        shapely.prepare(self._geoms)  # preparation is not pickled
        if self._grid_size.any():
            from geo.grid import lattice_transformer

            self._transformer = lattice_transformer()

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_db(cls, engine: sa.Engine, *, grid_size_m: int | None = None,
                lattice_step: float | None = None) -> RegionIndex:
        """Load the county-level units and grid sizes. Build it once and reuse it (a second or two)."""
        from geo.tree import RegionTree

        tree = RegionTree.from_db(engine, refresh=True)
        units = tree.county_level_units()
        if not units:
            raise GeoError("no regions in the database: run `tongguan geo load` first")
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT adcode, ST_AsEWKB(geom) AS wkb FROM regions WHERE adcode = ANY(:a) ORDER BY adcode"),
                {"a": units}).all()
            sizes = conn.execute(sa.text(
                "SELECT county, size_m FROM grid_cells GROUP BY county, size_m")).all()
        available: dict[str, set[int]] = {}
        for county, size in sizes:
            available.setdefault(county, set()).add(int(size))
        if grid_size_m is None:
            all_sizes = set().union(*available.values()) if available else set()
            default = config()["grid"]["default_size_m"]
            grid_size_m = default if default in all_sizes or not all_sizes else min(all_sizes)
        grid_sizes = {c: grid_size_m for c, s in available.items() if grid_size_m in s}
        counties = [r.adcode for r in rows]
        geoms = shapely.from_wkb([bytes(r.wkb) for r in rows])
        return cls(counties, geoms, [tree.city_of(c) or "" for c in counties],
                   [tree.province_of(c) or "" for c in counties],
                   grid_sizes=grid_sizes, lattice_step=lattice_step)

    def _build_lattice(self, step: float) -> None:
        from scipy import ndimage

        minx, miny, maxx, maxy = shapely.total_bounds(self._geoms)
        span = (maxx - minx + 4 * step) * (maxy - miny + 4 * step)
        if span / step ** 2 > _MAX_LATTICE_CELLS:
            step = math.sqrt(span / _MAX_LATTICE_CELLS)
        self.step = step
        self._x0 = math.floor(minx / step) * step - 2 * step
        self._y0 = math.floor(miny / step) * step - 2 * step
        self._nx = math.ceil((maxx - self._x0) / step) + 2
        self._ny = math.ceil((maxy - self._y0) / step) + 2
        nx, ny = self._nx, self._ny

        inside_cells, inside_cty, border_cells, border_cty = [], [], [], []
        for i, geom in enumerate(self._geoms):
            border, inside, (wx0, wy0, _w) = self._classify_window(geom, step, ndimage)
            by, bx = np.nonzero(border)
            border_cells.append((by + wy0) * nx + (bx + wx0))
            border_cty.append(np.full(len(by), i, dtype=np.int32))
            iy, ix = np.nonzero(inside)
            inside_cells.append((iy + wy0) * nx + (ix + wx0))
            inside_cty.append(np.full(len(iy), i, dtype=np.int32))
        inside_cells = np.concatenate(inside_cells)
        inside_cty = np.concatenate(inside_cty)
        border_cells = np.concatenate(border_cells)
        border_cty = np.concatenate(border_cty)

        n_inside = np.bincount(inside_cells, minlength=nx * ny)
        mixed = np.zeros(nx * ny, dtype=bool)
        mixed[border_cells] = True
        mixed |= n_inside > 1
        label = np.full(nx * ny, self.outside_code, dtype=np.int32)
        pure = ~mixed[inside_cells]
        label[inside_cells[pure]] = inside_cty[pure]

        # Candidates of each mixed square: counties whose border or interior meets it.
        cells = np.concatenate([border_cells, inside_cells[~pure]])
        ctys = np.concatenate([border_cty, inside_cty[~pure]])
        pairs = np.unique(cells.astype(np.int64) * (self.n + 1) + ctys)
        cells, ctys = pairs // (self.n + 1), (pairs % (self.n + 1)).astype(np.int32)
        mixed_ids, start = np.unique(cells, return_index=True)
        label[mixed_ids] = -(np.arange(len(mixed_ids), dtype=np.int32) + 1)
        self._label = label
        self._cand_start = np.append(start, len(cells)).astype(np.int64)
        self._cand = ctys
        land = int((label != self.outside_code).sum())
        log.debug("lattice %dx%d step %.4f°: %d squares in counties, %d of them on borders",
                  nx, ny, step, land, len(mixed_ids))
        self.stats = {"lattice": (nx, ny), "step_deg": step, "squares_in_counties": land,
                      "border_squares": len(mixed_ids)}

    def _classify_window(self, geom, step: float, ndimage):
        """Border squares and wholly-inside squares of one county, in a window around it."""
        bx0, by0, bx1, by1 = geom.bounds
        wx0 = math.floor((bx0 - self._x0) / step) - 1
        wy0 = math.floor((by0 - self._y0) / step) - 1
        w = math.floor((bx1 - self._x0) / step) + 2 - wx0
        h = math.floor((by1 - self._y0) / step) + 2 - wy0
        border = np.zeros((h, w), dtype=bool)

        rings = shapely.segmentize(shapely.get_rings(shapely.get_parts(geom)), step / 2)
        xy, ring_of = shapely.get_coordinates(rings, return_index=True)
        same = ring_of[1:] == ring_of[:-1]
        a, b = xy[:-1][same], xy[1:][same]
        lo = np.minimum(a, b) - _EPS
        hi = np.maximum(a, b) + _EPS
        cx0 = np.floor((lo[:, 0] - self._x0) / step).astype(np.int64) - wx0
        cx1 = np.floor((hi[:, 0] - self._x0) / step).astype(np.int64) - wx0
        cy0 = np.floor((lo[:, 1] - self._y0) / step).astype(np.int64) - wy0
        cy1 = np.floor((hi[:, 1] - self._y0) / step).astype(np.int64) - wy0
        span = max(int((cx1 - cx0).max(initial=0)), int((cy1 - cy0).max(initial=0)))
        for dx in range(span + 1):
            for dy in range(span + 1):
                ok = (cx0 + dx <= cx1) & (cy0 + dy <= cy1)
                border[cy0[ok] + dy, cx0[ok] + dx] = True

        # Squares no border touches: connected areas wholly inside or wholly outside.
        areas, n_areas = ndimage.label(~border)
        if n_areas == 0:
            return border, np.zeros_like(border), (wx0, wy0, w)
        flat = areas.ravel()
        first = np.full(n_areas + 1, -1, dtype=np.int64)
        idx = np.flatnonzero(flat)
        first[flat[idx[::-1]]] = idx[::-1]  # one square per area
        reps = first[1:]
        ry, rx = np.divmod(reps, w)
        cx = self._x0 + (rx + wx0 + 0.5) * step
        cy = self._y0 + (ry + wy0 + 0.5) * step
        is_in = np.concatenate([[False], shapely.contains_xy(geom, cx, cy)])
        return border, is_in[areas], (wx0, wy0, w)

    # -- the hot path -------------------------------------------------------------------
    def codes(self, lon, lat) -> np.ndarray:
        """County index per point (``self.outside_code`` when outside)."""
        lon = np.asarray(lon, dtype=np.float64).ravel()
        lat = np.asarray(lat, dtype=np.float64).ravel()
        if lon.shape != lat.shape:
            raise GeoError(f"lon and lat differ in length ({len(lon)} vs {len(lat)})")
        fx = (lon - self._x0) / self.step
        fy = (lat - self._y0) / self.step
        # NaN compares False, so missing coordinates are outside.
        ok = (fx >= 0) & (fx < self._nx) & (fy >= 0) & (fy < self._ny)
        code = np.full(len(lon), self.outside_code, dtype=np.int32)
        cell = fy[ok].astype(np.int64) * self._nx + fx[ok].astype(np.int64)
        code[ok] = self._label[cell]
        pts = np.flatnonzero(code < 0)
        if len(pts):
            code[pts] = self._test_border_points(lon[pts], lat[pts], -code[pts] - 1)
        return code

    def border_share(self, lon, lat) -> float:
        """Share of points that fall in border squares (need polygon tests); for the benchmark."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        fx, fy = (lon - self._x0) / self.step, (lat - self._y0) / self.step
        ok = (fx >= 0) & (fx < self._nx) & (fy >= 0) & (fy < self._ny)
        cell = fy[ok].astype(np.int64) * self._nx + fx[ok].astype(np.int64)
        return float((self._label[cell] < 0).sum() / max(len(lon), 1))

    def _test_border_points(self, x: np.ndarray, y: np.ndarray, mixed: np.ndarray) -> np.ndarray:
        start = self._cand_start[mixed]
        counts = self._cand_start[mixed + 1] - start
        owner = np.repeat(np.arange(len(mixed)), counts)
        offset = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
        cand = self._cand[np.repeat(start, counts) + offset]
        order = np.argsort(cand, kind="stable")
        cand, owner = cand[order], owner[order]
        result = np.full(len(mixed), self.outside_code, dtype=np.int32)
        bounds = np.flatnonzero(np.diff(cand)) + 1
        for group in np.split(np.arange(len(cand)), bounds):
            if not len(group):
                continue
            c = cand[group[0]]
            who = owner[group]
            hit = who[shapely.contains_xy(self._geoms[c], x[who], y[who])]
            hit = hit[result[hit] == self.outside_code]  # lower county index wins on overlap
            result[hit] = c
        return result

    def assign(self, lon, lat) -> Assignment:
        """County, city, province adcodes and grid id for each point (vectorised)."""
        code = self.codes(lon, lat)
        return Assignment(county=self._county[code], city=self._city[code],
                          province=self._province[code], grid_id=self._grid_ids(lon, lat, code),
                          outside=code == self.outside_code)

    def _grid_ids(self, lon, lat, code: np.ndarray) -> np.ndarray:
        out = np.zeros(len(code), dtype="<U24")  # zeros is "" and lazily allocated
        size = self._grid_size[code]
        pts = np.flatnonzero(size > 0)
        if not len(pts):
            return out
        lon = np.asarray(lon, dtype=np.float64).ravel()[pts]
        lat = np.asarray(lat, dtype=np.float64).ravel()[pts]
        x, y = self._transformer.transform(lon, lat)
        s = size[pts]
        col = np.floor(x / s).astype(np.int64)
        row = np.floor(y / s).astype(np.int64)
        # Many points share a cell: format each distinct cell id once (string building is the
        # expensive part), then spread the ids back with the inverse index.
        if col.min() >= 0 and row.min() >= 0 and col.max() < 1 << 20 and row.max() < 1 << 20:
            key = (code[pts].astype(np.int64) << 40) | (col << 20) | row
            uniq, inverse = np.unique(key, return_inverse=True)
            u_code, u_col, u_row = uniq >> 40, (uniq >> 20) & 0xFFFFF, uniq & 0xFFFFF
            prefix = self._grid_prefix
            ids = np.array([f"{prefix[c]}{cc:04d}-{rr:04d}"
                            for c, cc, rr in zip(u_code.tolist(), u_col.tolist(), u_row.tolist())],
                           dtype="<U24")
            out[pts] = ids[inverse]
        else:  # pragma: no cover - outside the lattice's positive quadrant (not China)
            from geo.grid import format_grid_ids

            out[pts] = format_grid_ids(self._county[code[pts]], s, col, row)
        return out

    @property
    def counties(self) -> list[str]:
        return [str(c) for c in self._county[:-1]]
