"""Administrative regions, grid cells, spatial assignment and display geometry.

Public surface (the contract with ingest, analytics and apps)::

    load_regions(engine, provinces=("440000", "350000"), progress=True) -> dict
    generate_grid(engine, size_m=1000, provinces=None) -> int
    RegionTree.from_db(engine)      # cached; pure navigation afterwards
    RegionIndex.from_db(engine)     # build once, then index.assign(lon, lat) -> Assignment
    display_geojson(engine, parent_adcode) -> dict
    region_path(county, city, province) -> [county, city, province] without repeats
    region_path_sql(county_col, city_col, province_col) -> the same path as SQL rows (LATERAL)
    REGION_LEVELS                   # ("province", "city", "county")
"""

from geo.errors import GeoError
from geo.grid import generate_grid, parse_size
from geo.index import Assignment, RegionIndex
from geo.regions import load_regions
from geo.tree import REGION_LEVELS, RegionInfo, RegionTree, region_path, region_path_sql

__all__ = ["Assignment", "GeoError", "REGION_LEVELS", "RegionIndex", "RegionInfo", "RegionTree", "display_geojson",
           "generate_grid", "load_regions", "parse_size", "region_path", "region_path_sql"]


def __getattr__(name):
    # geo.display pulls in pandas (about a second on a busy machine); load it on first use, not
    # in every command that only places points (the store worker's restart).
    if name == "display_geojson":
        from geo.display import display_geojson

        return display_geojson
    raise AttributeError(name)
