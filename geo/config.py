"""The geo package's settings file (``data/geo.json``), read once."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def config() -> dict:
    return json.loads(resources.files("geo").joinpath("data/geo.json").read_text(encoding="utf-8"))
