"""Administrative regions, grid cells, spatial assignment and display geometry.

Public surface (the contract with ingest, analytics and apps)::

    load_regions(engine, provinces=("440000", "350000"), progress=True) -> dict
    generate_grid(engine, size_m=1000, provinces=None) -> int
    RegionTree.from_db(engine)      # cached; pure navigation afterwards
    RegionIndex.from_db(engine)     # build once, then index.assign(lon, lat) -> Assignment
    display_geojson(engine, parent_adcode) -> dict
    region_path(county, city, province) -> [county, city, province] without repeats
"""

from geo.errors import GeoError
from geo.grid import generate_grid, parse_size
from geo.index import Assignment, RegionIndex
from geo.regions import load_regions
from geo.tree import RegionInfo, RegionTree, region_path

__all__ = ["Assignment", "GeoError", "RegionIndex", "RegionInfo", "RegionTree", "display_geojson",
           "generate_grid", "load_regions", "parse_size", "region_path"]


def __getattr__(name):
    # geo.display pulls in pandas (about a second on a busy machine); load it on first use, not
    # in every command that only places points (the store worker's restart).
    if name == "display_geojson":
        from geo.display import display_geojson

        return display_geojson
    raise AttributeError(name)
