"""Search from the header: sensors, cameras, places (regions by name, grid cells by id) and
alerts (by id or title), inside the caller's region."""

from __future__ import annotations

import sqlalchemy as sa

from apps.queries.regions import region_tree, safe_name, scope_column

SEARCH_LIMIT = 20  # rows per kind


def like_pattern(text: str) -> str:
    """An ILIKE pattern matching ``text`` anywhere, its own % and _ taken literally.

    >>> like_pattern(" 50%_off ")
    '%50\\\\%\\\\_off%'
    """
    esc = text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{esc}%"


def search(engine, *, q: str, scope: str, limit: int = SEARCH_LIMIT) -> dict[str, list[dict]]:
    """What matches ``q`` inside ``scope`` (the caller's home: enforced in the queries, and by
    row-level security under a request): {"sensors", "cameras", "places", "alerts"}, each a list
    of rows, at most ``limit`` each. An empty query finds nothing."""
    q = (q or "").strip()
    out: dict[str, list[dict]] = {"sensors": [], "cameras": [], "places": [], "alerts": []}
    if not q:
        return out
    tree = region_tree(engine)
    params = {"p": like_pattern(q), "q": q, "scope": scope, "n": int(limit)}
    county = scope_column(tree, scope)
    alert_col = scope_column(tree, scope, county_column="adcode")
    with engine.connect() as conn:
        out["sensors"] = [dict(r) for r in conn.execute(sa.text(
            f"SELECT sensor_id, metric, county, last_seen FROM sensors WHERE {county} = :scope "
            "AND sensor_id ILIKE :p ORDER BY (sensor_id = :q) DESC, sensor_id LIMIT :n"), params).mappings()]
        out["cameras"] = [dict(r) for r in conn.execute(sa.text(
            f"SELECT camera_id, county, last_seen FROM cameras WHERE {county} = :scope "
            "AND camera_id ILIKE :p ORDER BY (camera_id = :q) DESC, camera_id LIMIT :n"), params).mappings()]
        out["alerts"] = [dict(r) for r in conn.execute(sa.text(
            f"SELECT id, level, status, title, adcode, last_seen FROM alerts WHERE {alert_col} = :scope "
            "AND (id ILIKE :p OR title ILIKE :p) ORDER BY (id = :q) DESC, last_seen DESC LIMIT :n"),
            params).mappings()]
        params["counties"] = [c for c in tree.subtree(scope) if tree.level(c) == "county"]
        grid = [dict(r) for r in conn.execute(sa.text(
            "SELECT grid_id, county FROM grid_cells WHERE county = ANY(:counties) AND grid_id ILIKE :p "
            "ORDER BY grid_id LIMIT :n"), params).mappings()]
    for r in out["sensors"] + out["cameras"] + out["alerts"]:
        for key in ("county", "adcode"):
            if r.get(key):
                r[key] = str(r[key]).strip()
    places = [{"adcode": code, "level": tree.level(code)} for code in _regions_named(tree, q, scope)][:limit]
    out["places"] = places + [{"grid_id": g["grid_id"], "adcode": str(g["county"]).strip(), "level": "grid"}
                              for g in grid][: max(0, limit - len(places))]
    for p in out["places"]:
        p["name"] = safe_name(tree, p["adcode"])
        p["name_en"] = safe_name(tree, p["adcode"], "en")
    return out


def _regions_named(tree, q: str, scope: str) -> list[str]:
    """Regions of ``scope``'s subtree whose Chinese or English name contains ``q`` (or whose
    adcode is ``q``), higher levels first."""
    needle = q.casefold()
    found = []
    for code in tree.subtree(scope):
        if code == needle or needle in tree.name(code).casefold() or needle in tree.name(code, lang="en").casefold():
            found.append(code)
    order = {"province": 0, "city": 1, "county": 2}
    return sorted(found, key=lambda c: (order.get(tree.level(c), 3), c))
