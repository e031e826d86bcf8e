"""Vectorised assignment gives the same answer as PostGIS ST_Contains on the stored geometry."""

import numpy as np
import pytest
import shapely
import sqlalchemy as sa

from geo import GeoError, RegionIndex

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def index(template_db):
    """Built once from the template; pure in memory afterwards (no connection kept open,
    the template must stay free for CREATE DATABASE … TEMPLATE)."""
    from tongguan.db import engine_for

    eng = engine_for(template_db)
    try:
        return RegionIndex.from_db(eng)
    finally:
        eng.dispose()


def _postgis(engine, lon, lat):
    """County-level unit (min adcode) and grid id per point, by ST_Contains."""
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TEMP TABLE p (i int, geom geometry(Point, 4326)) ON COMMIT DROP"))
        with conn.connection.driver_connection.cursor() as cur, cur.copy("COPY p FROM STDIN") as copy:
            for i, (x, y) in enumerate(zip(lon.tolist(), lat.tolist())):
                copy.write_row((i, f"SRID=4326;POINT({x!r} {y!r})"))
        county = dict(conn.execute(sa.text(
            "SELECT p.i, min(r.adcode) FROM p JOIN regions r ON ST_Contains(r.geom, p.geom) "
            "WHERE r.level = 'county' OR (r.level = 'city' AND NOT EXISTS "
            "(SELECT 1 FROM regions c WHERE c.parent = r.adcode)) GROUP BY p.i")).all())
        grid = dict(conn.execute(sa.text(
            "SELECT p.i, min(g.grid_id) FROM p JOIN grid_cells g ON ST_Contains(g.geom, p.geom) "
            "WHERE g.size_m = 1000 GROUP BY p.i")).all())
    n = len(lon)
    return (np.array([county.get(i, "") for i in range(n)]), np.array([grid.get(i, "") for i in range(n)]))


def test_canton_tower_and_sea(index):
    a = index.assign(np.array([113.3245, 114.5]), np.array([23.1064, 21.5]))
    assert a.row(0)["county"] == "440105" and a.row(0)["city"] == "440100"
    assert a.row(0)["province"] == "440000" and not a.row(0)["outside"]
    assert a.row(0)["grid_id"].startswith("440105-1000-")
    assert a.row(1) == {"county": "", "city": "", "province": "", "grid_id": "", "outside": True}


def test_city_without_counties_is_its_own_county_unit(index):
    a = index.assign([113.75], [23.02])  # Dongguan
    assert (a.county[0], a.city[0], a.province[0]) == ("441900", "441900", "440000")
    assert a.grid_id[0] == ""  # no grid generated there in the test template


def test_fujian_and_missing_coordinates(index):
    a = index.assign([119.2965, np.nan, 200.0], [26.0745, 26.0, 26.0])  # Fuzhou Gulou
    assert a.province.tolist() == ["350000", "", ""]
    assert a.city[0] == "350100"
    assert a.outside.tolist() == [False, True, True]


def test_length_mismatch_is_an_error(index):
    with pytest.raises(GeoError, match="differ in length"):
        index.assign([113.0, 114.0], [23.0])


def test_matches_st_contains_on_random_and_border_points(index, engine):
    rng = np.random.default_rng(7)
    lon = rng.uniform(109.5, 120.8, 4000)
    lat = rng.uniform(20.1, 28.4, 4000)
    # and points close to county borders, where a shortcut would go wrong first
    with engine.connect() as conn:
        wkb = conn.execute(sa.text(
            "SELECT ST_AsBinary(ST_Collect(ST_Boundary(geom))) FROM regions WHERE level = 'county'")).scalar()
    xy = shapely.get_coordinates(shapely.from_wkb(bytes(wkb)))
    pick = rng.choice(len(xy), 4000)
    lon = np.concatenate([lon, xy[pick, 0] + rng.normal(0, 0.001, 4000)])
    lat = np.concatenate([lat, xy[pick, 1] + rng.normal(0, 0.001, 4000)])
    a = index.assign(lon, lat)
    county, _ = _postgis(engine, lon, lat)
    assert (county != "").sum() > 3000  # the sample really covers land
    mismatch = np.flatnonzero(county != a.county)
    assert mismatch.size == 0, list(zip(lon[mismatch][:5], lat[mismatch][:5], county[mismatch][:5],
                                        a.county[mismatch][:5]))
    assert (a.outside == (county == "")).all()


def test_grid_ids_match_st_contains(index, engine):
    rng = np.random.default_rng(11)
    lon = rng.uniform(113.20, 113.45, 3000)
    lat = rng.uniform(23.03, 23.22, 3000)
    a = index.assign(lon, lat)
    _, grid = _postgis(engine, lon, lat)
    assert (grid != "").sum() > 500
    assert (grid == a.grid_id).all()


def test_lattice_step_does_not_change_answers(engine, index):
    coarse = RegionIndex.from_db(engine, lattice_step=0.05)
    rng = np.random.default_rng(3)
    lon, lat = rng.uniform(112.5, 114.5, 20000), rng.uniform(22.0, 24.0, 20000)
    assert (coarse.assign(lon, lat).county == index.assign(lon, lat).county).all()
