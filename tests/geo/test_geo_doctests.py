"""The examples in geo's docstrings are tests, so the documentation cannot go stale."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["geo.names", "geo.grid", "geo.regions", "geo.tree"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
