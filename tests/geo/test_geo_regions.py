"""Loading real boundaries: counts, parent links, validity, idempotency (template has GD + FJ)."""

import pytest
import shapely
import sqlalchemy as sa

from geo import GeoError, RegionTree, load_regions
from geo.regions import CnmapsSource

pytestmark = pytest.mark.integration


def test_guangdong_and_fujian_counts(engine):
    tree = RegionTree.from_db(engine)
    assert tree.provinces() == ["350000", "440000"]
    assert len(tree.children("440000")) == 21
    assert len(tree.children("350000")) == 9
    gd_units = [c for c in tree.county_level_units() if tree.province_of(c) == "440000"]
    # 124 county-level divisions in the source; Dongguan and Zhongshan are their own unit
    assert len(gd_units) == 124
    assert {"441900", "442000"} <= set(gd_units)
    assert tree.level("441900") == "city" and tree.children("441900") == []
    assert len(tree.children("440100")) == 11  # Guangzhou's districts


def test_parent_links_and_adcode_prefixes(engine):
    tree = RegionTree.from_db(engine)
    for province in tree.provinces():
        assert tree.parent(province) is None
        for city in tree.children(province):
            assert tree.level(city) == "city"
            assert city[:2] == province[:2] and city.endswith("00")
            for county in tree.children(city):
                assert tree.level(county) == "county"
                assert county[:4] == city[:4], (county, city)
                assert tree.path(county) == [province, city, county]


def test_geometry_valid_multipolygon_4326(engine):
    with engine.connect() as conn:
        bad = conn.execute(sa.text(
            "SELECT count(*) FROM regions WHERE NOT ST_IsValid(geom) OR ST_SRID(geom) <> 4326 "
            "OR GeometryType(geom) <> 'MULTIPOLYGON' OR area_km2 <= 0 OR NOT ST_Intersects(geom, centroid) "
            "OR geom_display IS NULL OR NOT ST_IsValid(geom_display)")).scalar()
        gd_area = conn.execute(sa.text("SELECT area_km2 FROM regions WHERE adcode = '440000'")).scalar()
        names = dict(conn.execute(sa.text(
            "SELECT adcode, name_en FROM regions WHERE adcode IN ('440106', '350105', '440306')")).all())
    assert bad == 0
    assert 170_000 < gd_area < 190_000  # Guangdong is about 179,800 km²
    assert names == {"440106": "Tianhe District", "350105": "Mawei District", "440306": "Bao'an District"}


def _snapshot(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT adcode, updated_at, md5(ST_AsEWKB(geom)), md5(ST_AsEWKB(geom_display)) "
            "FROM regions ORDER BY adcode")).all()


def test_second_load_changes_nothing(engine):
    before = _snapshot(engine)
    counts = load_regions(engine, ("440000", "350000"), progress=False)
    assert counts == {"provinces": 2, "cities": 30, "counties": 206, "inserted": 0, "updated": 0,
                      "unchanged": 238}
    assert _snapshot(engine) == before


def test_changed_boundary_is_updated(engine):
    with engine.begin() as conn:
        conn.execute(sa.text(
            "UPDATE regions SET geom = ST_Multi(ST_Buffer(geom, -0.01)) WHERE adcode = '440105'"))
    counts = load_regions(engine, ("440000",), progress=False)
    assert (counts["inserted"], counts["updated"]) == (0, 1)
    source = CnmapsSource()
    haizhu = next(r for r in source.regions("440000") if r.adcode == "440105")
    expected, _ = source.geometry(haizhu)
    with engine.connect() as conn:
        stored = shapely.from_wkb(bytes(conn.execute(sa.text(
            "SELECT ST_AsBinary(geom) FROM regions WHERE adcode = '440105'")).scalar()))
    assert shapely.equals_exact(stored, expected, tolerance=0)


def test_changed_source_is_updated(engine):
    class Shrunk(CnmapsSource):
        def geometry(self, region):
            geom, checksum = super().geometry(region)
            if region.adcode == "440105":
                geom = shapely.set_srid(shapely.MultiPolygon(
                    shapely.get_parts(geom.buffer(-0.005))), 4326)
                checksum = "changed"
            return geom, checksum

    counts = load_regions(engine, ("440000",), progress=False, source=Shrunk())
    assert counts["inserted"] == 0 and counts["updated"] >= 1
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT checksum, area_km2 FROM regions WHERE adcode = '440105'")).one()
        others = conn.execute(sa.text(
            "SELECT count(*) FROM regions WHERE checksum = 'changed'")).scalar()
    assert row.checksum == "changed" and row.area_km2 < 90
    assert others == 1


@pytest.mark.parametrize("bad", ["44", "440100", "abcdef", "990000"])
def test_bad_province_is_a_clear_error(bad):
    # refused before any database work (hence no engine needed)
    with pytest.raises(GeoError, match="province"):
        load_regions(None, (bad,), progress=False)


def test_the_region_path_in_sql_is_the_python_one(engine):
    """geo.region_path_sql (what the store worker's and the alerting rollups' SQL use) yields the
    levels geo.region_path does, for a county of a city, a city without counties (Dongguan:
    county = city), blanks and an unknown chain."""
    from geo import region_path, region_path_sql

    cases = [("440106", "440100", "440000"), ("441900", "441900", "440000"), ("350203", "350200", "350000"),
             ("440106", None, "440000"), ("123456", "123400", "120000")]
    with engine.connect() as conn:
        for county, city, province in cases:
            rows = conn.execute(sa.text(
                "SELECT x.adcode, x.region_level, x.parent FROM (SELECT CAST(:co AS text) AS county, "
                "CAST(:ci AS text) AS city, CAST(:pr AS text) AS province) c "
                f"CROSS JOIN LATERAL {region_path_sql('c.county', 'c.city', 'c.province', alias='x')} "
                "WHERE x.adcode IS NOT NULL"), {"co": county, "ci": city, "pr": province}).all()
            assert [r.adcode for r in rows] == region_path(county, city, province), (county, city, province)
            levels = [r.region_level for r in rows]
            assert levels[0] == "county" and levels == sorted(levels, key=["county", "city", "province"].index)
    assert region_path_sql("a", "b", "c").endswith("AS region_path(adcode, region_level, parent)")
