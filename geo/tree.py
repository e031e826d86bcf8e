"""The province → city → county tree, in memory.

Built once per database (``RegionTree.from_db`` caches per engine URL; ``load_regions``
invalidates the cache) and pure afterwards, so the rest of the product can ask it on every
request. Grid ids (``440106-1000-0123-0456``) are understood where it is cheap: their county is
their parent, so ``is_within(grid_id, "440100")`` works for scoping.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import sqlalchemy as sa

from geo.errors import GeoError

_GRID_RE = re.compile(r"^([0-9]{6})-[0-9]+-[0-9]+-[0-9]+$")
REGION_LEVELS = ("province", "city", "county")  # top down; a record's path is stored bottom up
_LEVEL_ORDER = {level: i for i, level in enumerate(REGION_LEVELS)}


def region_path(county: str | None, city: str | None = None, province: str | None = None) -> list[str]:
    """A record's regions from its county up — [county, city, province] — as stored on readings,
    events and alerts, without blanks or repeats (a city without counties, such as Dongguan, is
    its own county-level unit). The one definition of the path the product scopes and escalates by.

    >>> region_path("440106", "440100", "440000")
    ['440106', '440100', '440000']
    >>> region_path("441900 ", "441900", "440000")
    ['441900', '440000']
    """
    out: list[str] = []
    for code in (county, city, province):
        code = str(code or "").strip()
        if code and code not in out:
            out.append(code)
    return out


def region_path_sql(county: str, city: str, province: str, *, alias: str = "region_path") -> str:
    """:func:`region_path` in SQL, for ``CROSS JOIN LATERAL``: one row per level of a record's
    path, ``(adcode, region_level, parent)`` from the county up, over the given column
    expressions. A level that repeats the one below (a city without counties is its own
    county-level unit) has a NULL adcode: keep ``WHERE <alias>.adcode IS NOT NULL``.

    >>> region_path_sql("c.county", "c.city", "c.province", alias="x")  # doctest: +NORMALIZE_WHITESPACE
    "(VALUES (c.county, 'county', c.city), (NULLIF(c.city, c.county), 'city', c.province),
      (NULLIF(c.province, c.city), 'province', NULL)) AS x(adcode, region_level, parent)"
    """
    return (f"(VALUES ({county}, 'county', {city}), (NULLIF({city}, {county}), 'city', {province}), "
            f"(NULLIF({province}, {city}), 'province', NULL)) AS {alias}(adcode, region_level, parent)")


@dataclass(frozen=True)
class RegionInfo:
    adcode: str
    name: str
    name_en: str | None
    level: str
    parent: str | None


class RegionTree:
    """Navigation over the region hierarchy; no database access after construction.

    >>> tree = RegionTree([
    ...     RegionInfo("440000", "广东省", "Guangdong", "province", None),
    ...     RegionInfo("440100", "广州市", "Guangzhou", "city", "440000"),
    ...     RegionInfo("440106", "天河区", "Tianhe District", "county", "440100"),
    ...     RegionInfo("441900", "东莞市", "Dongguan", "city", "440000"),
    ... ])
    >>> tree.path("440106")
    ['440000', '440100', '440106']
    >>> tree.is_within("440106", "440000"), tree.is_within("440106", "441900")
    (True, False)
    >>> tree.is_within("440106-1000-3071-2551", "440100")
    True
    >>> tree.by_name("天河"), tree.name("440106", lang="en")
    (['440106'], 'Tianhe District')
    >>> tree.county_level_units()
    ['440106', '441900']
    """

    _cache: ClassVar[dict[str, RegionTree]] = {}
    _lock = threading.Lock()

    def __init__(self, regions: Iterable[RegionInfo]):
        self._regions: dict[str, RegionInfo] = {r.adcode: r for r in regions}
        children: dict[str, list[str]] = {a: [] for a in self._regions}
        for r in self._regions.values():
            if r.parent is not None and r.parent in children:
                children[r.parent].append(r.adcode)
        self._children = {a: sorted(c) for a, c in children.items()}

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_db(cls, engine: sa.Engine, *, refresh: bool = False) -> RegionTree:
        """The tree of the regions in this database, cached per database URL."""
        key = engine.url.render_as_string(hide_password=False)
        with cls._lock:
            if not refresh and key in cls._cache:
                return cls._cache[key]
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text(
                    "SELECT adcode, name, name_en, level, parent FROM regions ORDER BY adcode")).all()
        except sa.exc.ProgrammingError as exc:
            raise GeoError("the regions table is missing: run `tongguan db upgrade`, then "
                           "`tongguan geo load`") from exc
        tree = cls(RegionInfo(r.adcode, r.name, r.name_en, r.level, r.parent) for r in rows)
        with cls._lock:
            cls._cache[key] = tree
        return tree

    @classmethod
    def invalidate(cls, engine: sa.Engine | None = None) -> None:
        """Forget the cached tree (of one database, or all); the next from_db reads again."""
        with cls._lock:
            if engine is None:
                cls._cache.clear()
            else:
                cls._cache.pop(engine.url.render_as_string(hide_password=False), None)

    # -- lookups ------------------------------------------------------------------------
    def __contains__(self, adcode: object) -> bool:
        return adcode in self._regions

    def __len__(self) -> int:
        return len(self._regions)

    def _get(self, adcode: str) -> RegionInfo:
        try:
            return self._regions[adcode]
        except KeyError:
            raise GeoError(f"unknown region {adcode!r}: load it with `tongguan geo load --province "
                           f"{str(adcode)[:2]}0000` or list regions with `tongguan geo tree`") from None

    def info(self, adcode: str) -> RegionInfo:
        return self._get(adcode)

    def name(self, adcode: str, lang: str = "zh") -> str:
        """Chinese name, or English (``lang="en"``) falling back to Chinese where there is none."""
        grid = _GRID_RE.match(adcode)
        if grid:
            return adcode
        r = self._get(adcode)
        return (r.name_en or r.name) if lang.lower().startswith("en") else r.name

    def level(self, adcode: str) -> str:
        """``province``, ``city``, ``county`` or ``grid``."""
        if _GRID_RE.match(adcode):
            return "grid"
        return self._get(adcode).level

    def parent(self, adcode: str) -> str | None:
        grid = _GRID_RE.match(adcode)
        if grid:
            return grid.group(1)
        return self._get(adcode).parent

    def children(self, adcode: str) -> list[str]:
        self._get(adcode)
        return list(self._children[adcode])

    def ancestors(self, adcode: str) -> list[str]:
        """Parent first, then its parent, up to the province."""
        out = []
        node = self.parent(adcode)
        while node is not None and node in self._regions:
            out.append(node)
            node = self._regions[node].parent
        return out

    def path(self, adcode: str) -> list[str]:
        """Province first, ending with the region itself (breadcrumbs)."""
        return list(reversed(self.ancestors(adcode))) + [adcode]

    def is_within(self, adcode: str, scope_adcode: str) -> bool:
        """True when ``adcode`` is ``scope_adcode`` or lies below it; False for unknown codes.

        Used for permission scoping, so an unknown code is never "within" anything.
        """
        if scope_adcode not in self._regions:
            return False
        if adcode == scope_adcode:
            return True
        grid = _GRID_RE.match(adcode)
        if grid is None and adcode not in self._regions:
            return False
        return scope_adcode in self.ancestors(adcode)

    def by_name(self, name: str) -> list[str]:
        """Adcodes whose Chinese or English name matches: exact first, else by prefix."""
        key = name.strip()
        folded = key.casefold()
        exact = [a for a, r in self._regions.items()
                 if r.name == key or (r.name_en and r.name_en.casefold() == folded)]
        if exact:
            return sorted(exact)
        return sorted(a for a, r in self._regions.items()
                      if r.name.startswith(key) or (r.name_en and r.name_en.casefold().startswith(folded)))

    def subtree(self, adcode: str) -> list[str]:
        """The region and everything below it, depth first (parent before children)."""
        self._get(adcode)
        out, stack = [], [adcode]
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(reversed(self._children[node]))
        return out

    def provinces(self) -> list[str]:
        return sorted(a for a, r in self._regions.items() if r.level == "province")

    def county_level_units(self) -> list[str]:
        """Counties, plus cities that have no counties in the source (Dongguan, Zhongshan):
        such a city acts as its own county-level unit."""
        return sorted(a for a, r in self._regions.items()
                      if r.level == "county" or (r.level == "city" and not self._children[a]))

    def county_unit_of(self, adcode: str) -> str | None:
        """The county-level unit a county or grid id belongs to (None above county level)."""
        grid = _GRID_RE.match(adcode)
        if grid:
            return grid.group(1)
        r = self._get(adcode)
        if r.level == "county" or (r.level == "city" and not self._children[adcode]):
            return adcode
        return None

    def city_of(self, adcode: str) -> str | None:
        """The prefecture city of a region (itself for a city), None for a province."""
        for a in [adcode] + self.ancestors(adcode):
            if a in self._regions and self._regions[a].level == "city":
                return a
        return None

    def province_of(self, adcode: str) -> str | None:
        for a in [adcode] + self.ancestors(adcode):
            if a in self._regions and self._regions[a].level == "province":
                return a
        return None

    def format(self, adcode: str, lang: str = "zh") -> str:
        """The subtree as indented text (``tongguan geo tree``)."""
        base = len(self.path(adcode))
        lines = []
        for a in self.subtree(adcode):
            r = self._regions[a]
            depth = len(self.path(a)) - base
            other = r.name_en if lang == "zh" else r.name
            lines.append(f"{'  ' * depth}{a} {self.name(a, lang)}" + (f" ({other})" if other else "")
                         + f" [{r.level}]")
        return "\n".join(lines)
