"""Pure parts of geo: names, sizes, tree, index on synthetic polygons, grid clipping."""

import numpy as np
import pytest
import shapely

from geo import GeoError, RegionIndex, RegionTree, parse_size
from geo.grid import county_cells
from geo.names import english_name
from geo.regions import simplify_coverage, to_multipolygon, validate_provinces
from geo.tree import RegionInfo


def test_english_names():
    assert english_name("440113", "番禺区", "county") == "Panyu District"
    assert english_name("350200", "厦门市", "city") == "Xiamen"
    assert english_name("350105", "马尾区", "county") == "Mawei District"  # override table
    assert english_name("350581", "石狮市", "county") == "Shishi City"
    assert english_name("350000", "福建省", "province") == "Fujian"


def test_parse_size():
    assert parse_size("1km") == 1000 and parse_size("250m") == 250 and parse_size(2000) == 2000
    for bad in ("0m", "1.2345km", "100km", "", "km"):
        with pytest.raises(GeoError):
            parse_size(bad)


def test_validate_provinces():
    assert validate_provinces("440000") == ("440000",)
    assert validate_provinces(["440000", "440000", "350000"]) == ("440000", "350000")
    with pytest.raises(GeoError):
        validate_provinces([])


def test_to_multipolygon_drops_lines_and_sets_srid():
    g = shapely.GeometryCollection([shapely.box(0, 0, 1, 1), shapely.LineString([(2, 2), (3, 3)])])
    mp = to_multipolygon(g)
    assert mp.geom_type == "MultiPolygon" and len(mp.geoms) == 1 and shapely.get_srid(mp) == 4326
    with pytest.raises(GeoError):
        to_multipolygon(shapely.LineString([(0, 0), (1, 1)]))


def test_simplify_coverage_keeps_shared_border():
    t = np.linspace(0, 1, 200)
    wiggle = np.column_stack([0.5 + 0.01 * np.sin(40 * t), t])
    left = shapely.Polygon([(0, 0), *wiggle, (0, 1)])
    right = shapely.Polygon([(1, 0), (1, 1), *wiggle[::-1]])
    a, b = simplify_coverage([left, right], 0.02)
    assert shapely.get_num_coordinates(a) < 50
    assert a.intersection(b).area == pytest.approx(0, abs=1e-12)
    assert a.union(b).area == pytest.approx(1.0, rel=1e-9)


def _tree():
    return RegionTree([
        RegionInfo("440000", "广东省", "Guangdong", "province", None),
        RegionInfo("440100", "广州市", "Guangzhou", "city", "440000"),
        RegionInfo("440105", "海珠区", "Haizhu District", "county", "440100"),
        RegionInfo("440106", "天河区", "Tianhe District", "county", "440100"),
        RegionInfo("441900", "东莞市", "Dongguan", "city", "440000"),
        RegionInfo("350000", "福建省", "Fujian", "province", None),
    ])


def test_tree_navigation():
    t = _tree()
    assert t.children("440100") == ["440105", "440106"]
    assert t.ancestors("440106") == ["440100", "440000"]
    assert t.path("440000") == ["440000"]
    assert t.subtree("440000") == ["440000", "440100", "440105", "440106", "441900"]
    assert t.provinces() == ["350000", "440000"]
    assert t.level("440105") == "county" and t.parent("440105") == "440100"
    assert t.name("440106", lang="en") == "Tianhe District" and t.name("440106") == "天河区"
    assert t.by_name("天河区") == ["440106"] and t.by_name("guangzhou") == ["440100"]
    assert t.by_name("nowhere") == []
    assert t.county_unit_of("441900") == "441900" and t.county_unit_of("440100") is None
    assert t.city_of("440105") == "440100" and t.province_of("440105") == "440000"


def test_tree_scoping():
    t = _tree()
    assert t.is_within("440105", "440100") and t.is_within("440105", "440105")
    assert not t.is_within("440105", "441900") and not t.is_within("440100", "440105")
    assert not t.is_within("440105", "350000")
    assert t.is_within("440105-1000-4856-2440", "440000")
    assert not t.is_within("999999", "440000") and not t.is_within("440105", "999999")
    with pytest.raises(GeoError, match="unknown region"):
        t.children("999999")


def _synthetic_index(step):
    # A 3x3 checkerboard of "counties" plus one with a hole holding an enclave, and a gap.
    geoms, codes = [], []
    for i in range(3):
        for j in range(3):
            if (i, j) == (1, 1):
                continue
            geoms.append(shapely.box(i, j, i + 1, j + 1))
            codes.append(f"44{i}{j}01")
    ring = shapely.box(1, 1, 2, 2).difference(shapely.Point(1.5, 1.5).buffer(0.2))
    geoms.append(ring)
    codes.append("449901")
    geoms.append(shapely.Point(1.5, 1.5).buffer(0.1))  # leaves an annulus gap 0.1–0.2
    codes.append("449902")
    geoms = list(shapely.set_srid(geoms, 4326))
    return RegionIndex(codes, geoms, ["440100"] * len(codes), ["440000"] * len(codes), lattice_step=step), geoms, codes


@pytest.mark.parametrize("step", [0.013, 0.1, 0.5])
def test_index_matches_brute_force(step):
    index, geoms, codes = _synthetic_index(step)
    rng = np.random.default_rng(5)
    x, y = rng.uniform(-0.5, 3.5, 20000), rng.uniform(-0.5, 3.5, 20000)
    expected = np.full(len(x), "", dtype="<U6")
    for g, c in zip(geoms, codes):
        inside = shapely.contains_xy(g, x, y) & (expected == "")
        expected[inside] = c
    a = index.assign(x, y)
    assert (a.county == expected).all()
    assert (a.outside == (expected == "")).all()
    assert (a.city[~a.outside] == "440100").all()
    # boundary points are in no county (ST_Contains is false on the boundary)
    assert index.assign([1.0, 1.5], [0.5, 1.75]).county.tolist() == ["", "449901"]


def test_county_cells_clip_and_cover():
    county = shapely.set_srid(shapely.MultiPolygon([shapely.Point(113.3, 23.1).buffer(0.05)]), 4326)
    cells = county_cells("440105", county, 1000)
    ids = [c[0] for c in cells]
    assert len(ids) == len(set(ids)) > 50
    total = shapely.union_all([c[3] for c in cells])
    assert total.symmetric_difference(county).area < 1e-9
    assert county_cells("440105", county, 1000)[0][:3] == cells[0][:3]  # stable


def test_index_refuses_naive_geometry():
    with pytest.raises(GeoError, match="SRID 4326"):
        RegionIndex(["440105"], [shapely.box(0, 0, 1, 1)], ["440100"], ["440000"])
