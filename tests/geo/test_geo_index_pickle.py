"""A pickled RegionIndex (the store worker's cache) assigns exactly as the one it was built from."""

import pickle

import numpy as np
import pytest

from geo import RegionIndex

pytestmark = pytest.mark.integration


def test_pickled_region_index_assigns_the_same(engine):
    index = RegionIndex.from_db(engine)
    again = pickle.loads(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
    rng = np.random.default_rng(3)
    lon = np.concatenate([rng.uniform(109.5, 120.5, 5000), [113.3612, 113.27, 114.9]])
    lat = np.concatenate([rng.uniform(20.0, 28.5, 5000), [23.1247, 23.13, 21.5]])
    a, b = index.assign(lon, lat), again.assign(lon, lat)
    for field in ("county", "city", "province", "grid_id", "outside"):
        assert np.array_equal(np.asarray(getattr(a, field)), np.asarray(getattr(b, field))), field
    assert a.row(len(lon) - 3)["grid_id"] != "" and a.row(len(lon) - 1)["outside"]
