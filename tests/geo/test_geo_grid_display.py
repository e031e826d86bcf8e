"""Grid cells (stable ids, clipped to the county) and display GeoJSON per level."""

import json

import pytest
import shapely
import sqlalchemy as sa

from geo import GeoError, display_geojson, generate_grid

pytestmark = pytest.mark.integration


def _cells(engine, county, size=1000):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT grid_id, md5(ST_AsEWKB(geom)) FROM grid_cells WHERE county = :c AND size_m = :s "
            "ORDER BY grid_id"), {"c": county, "s": size}).all()


def test_grid_is_clipped_to_county_and_ids_are_stable(engine):
    before = _cells(engine, "440105")
    assert len(before) > 90  # Haizhu is ~91 km²
    assert all(gid.startswith("440105-1000-") for gid, _ in before)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM grid_cells WHERE county = '440105'"))
    assert generate_grid(engine, "1km", counties=["440105"]) == len(before)
    assert _cells(engine, "440105") == before  # same ids, same geometry
    with engine.connect() as conn:
        union_area, county_area, overlaps = conn.execute(sa.text(
            "SELECT ST_Area(ST_Union(g.geom)::geography), ST_Area(r.geom::geography), "
            "(SELECT count(*) FROM grid_cells a JOIN grid_cells b ON a.grid_id < b.grid_id "
            " AND a.county = '440105' AND b.county = '440105' AND ST_Overlaps(a.geom, b.geom)) "
            "FROM grid_cells g JOIN regions r ON r.adcode = g.county WHERE g.county = '440105' "
            "GROUP BY r.geom")).one()
    assert union_area == pytest.approx(county_area, rel=1e-6)
    assert overlaps == 0


def test_neighbouring_counties_share_lattice(engine):
    # Cells split by the Haizhu/Tianhe border have the same column and row on both sides.
    with engine.connect() as conn:
        shared = conn.execute(sa.text(
            "SELECT count(*) FROM grid_cells a JOIN grid_cells b ON a.col = b.col AND a.row = b.row "
            "AND a.size_m = b.size_m WHERE a.county = '440105' AND b.county = '440106'")).scalar()
    assert shared > 0


def test_bad_grid_requests(engine):
    with pytest.raises(GeoError, match="not understood"):
        generate_grid(engine, "1 mile")
    with pytest.raises(GeoError, match="not a loaded county"):
        generate_grid(engine, "1km", counties=["440100"])
    with pytest.raises(GeoError, match="not a loaded province"):
        generate_grid(engine, "1km", provinces=["440100"])


def test_province_map_of_cities(engine):
    fc = display_geojson(engine, "440000")
    assert fc["type"] == "FeatureCollection"
    assert len(fc["features"]) == 21
    props = fc["features"][0]["properties"]
    assert set(props) >= {"adcode", "name", "name_en", "level"}
    assert props["level"] == "city"
    size = len(json.dumps(fc, ensure_ascii=False, separators=(",", ":")).encode())
    assert size < 500_000  # well under 1 MB
    geoms = [shapely.from_geojson(json.dumps(f["geometry"])) for f in fc["features"]]
    # topology preserved: neighbouring cities still meet without gaps or overlaps
    assert shapely.coverage_is_valid(geoms)
    gz = next(g for f, g in zip(fc["features"], geoms) if f["id"] == "440100")
    fs = next(g for f, g in zip(fc["features"], geoms) if f["id"] == "440600")
    assert gz.intersection(fs).length > 0.1 and gz.intersection(fs).area == 0


def test_city_and_county_maps(engine):
    gz = display_geojson(engine, "440100")
    assert sorted(f["id"] for f in gz["features"])[:2] == ["440103", "440104"]
    assert {f["properties"]["level"] for f in gz["features"]} == {"county"}
    haizhu = display_geojson(engine, "440105")
    assert len(haizhu["features"]) == len(_cells(engine, "440105"))
    assert {f["properties"]["level"] for f in haizhu["features"]} == {"grid"}
    dongguan = display_geojson(engine, "441900")  # no counties, no grid: the city itself
    assert [f["id"] for f in dongguan["features"]] == ["441900"]
    assert [f["id"] for f in display_geojson(engine, None)["features"]] == ["350000", "440000"]
    with pytest.raises(GeoError, match="unknown region"):
        display_geojson(engine, "449999")


def test_rings_are_counter_clockwise(engine):
    for parent in ("440000", "440105"):
        for f in display_geojson(engine, parent)["features"]:
            geom = shapely.from_geojson(json.dumps(f["geometry"]))
            for poly in shapely.get_parts(geom):
                assert poly.exterior.is_ccw
