"""The JSON API's reads, each inside the caller's scope: regions and their boundaries, alerts with
their history, reading rollups, video counts and single stored records with their provenance.

Row-level security already limits every row; the WHERE clauses repeat the scope (see
``apps.policy``) so the plans use the region indexes and a missing row answers 404.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from apps.errors import AccessError, not_found
from apps.policy import require_region, tree_for
from apps.scope import Scope


def regions(engine, scope: Scope, *, level: str | None = None, parent: str | None = None) -> list[dict]:
    """The regions of the caller's subtree (optionally one level, or the children of one)."""
    tree = tree_for(engine)
    if not scope.home:
        return []
    if parent:
        codes = list(tree.children(require_region(engine, scope, parent)))
    else:
        codes = tree.subtree(scope.home)
    out = []
    for code in codes:
        lv = tree.level(code)
        if level and lv != level:
            continue
        out.append({"adcode": code, "name": tree.name(code), "name_en": tree.name(code, lang="en"),
                    "level": lv, "parent": tree.parent(code)})
    return out


def region_feature(engine, scope: Scope, adcode: str) -> dict:
    """The region as a GeoJSON Feature (display geometry)."""
    code = require_region(engine, scope, adcode)
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT adcode, name, name_en, level, parent, area_km2, "
            "ST_AsGeoJSON(coalesce(geom_display, geom), 5) AS g, "
            "ST_X(centroid) AS lon, ST_Y(centroid) AS lat FROM regions WHERE adcode = :a"), {"a": code}).one()
    return {"type": "Feature", "id": code, "geometry": json.loads(row.g) if row.g else None,
            "properties": {"adcode": code, "name": row.name, "name_en": row.name_en, "level": row.level,
                           "parent": (row.parent or "").strip() or None,
                           "area_km2": float(row.area_km2) if row.area_km2 is not None else None,
                           "centroid": [row.lon, row.lat] if row.lon is not None else None}}


def children_features(engine, scope: Scope, adcode: str) -> dict:
    """The region's children as a GeoJSON FeatureCollection (geo's simplified display boundaries)."""
    from geo import display_geojson

    return display_geojson(engine, require_region(engine, scope, adcode))


# --------------------------------------------------------------------------- alerts
_ALERT_SQL = """
    SELECT a.id, a.source, a.level, a.theme, a.title, a.detail, a.subject, a.confidence,
           trim(a.adcode) AS adcode, trim(a.city) AS city, trim(a.province) AS province, a.grid_id,
           ST_AsGeoJSON(a.geom, 6) AS geometry, a.first_seen, a.last_seen, a.count, a.status, a.updated_at,
           coalesce(h.owner_region, trim(a.adcode)) AS handling_region,
           coalesce(h.visible_at, trim(a.adcode)) AS visible_at,
           h.assigned_unit, h.assigned_region, h.due_at, h.overdue_at, h.escalated_at, h.escalation_reason
    FROM alerts a LEFT JOIN alert_handling h ON h.alert_id = a.id
"""


def _alert_dict(row) -> dict:
    d = dict(row._mapping)
    d["geometry"] = json.loads(d["geometry"]) if d.get("geometry") else None
    for k, v in list(d.items()):
        if isinstance(v, datetime):
            d[k] = v.isoformat()
    return d


def _scope_where(scope: Scope, params: dict) -> str:
    params["scope"] = scope.home or "-"
    return "(a.province = :scope OR a.city = :scope OR a.adcode = :scope)"


def alerts(engine, scope: Scope, *, region: str | None = None, status: list[str] | None = None,
           level: list[str] | None = None, theme: str | None = None, limit: int = 50,
           offset: int = 0) -> tuple[list[dict], int]:
    """Alerts of the caller's subtree (or of one region inside it), newest change first, and the
    total matching (for pagination)."""
    params: dict = {}
    where = [_scope_where(scope, params)]
    if region:
        code = require_region(engine, scope, region)
        where.append("(a.province = :region OR a.city = :region OR a.adcode = :region)")
        params["region"] = code
    if status:
        where.append("a.status = ANY(:status)")
        params["status"] = list(status)
    if level:
        where.append("a.level = ANY(:level)")
        params["level"] = list(level)
    if theme:
        where.append("a.theme = :theme")
        params["theme"] = theme
    sql_where = " AND ".join(where)
    with engine.connect() as conn:
        total = conn.execute(sa.text(f"SELECT count(*) FROM alerts a WHERE {sql_where}"), params).scalar_one()
        rows = conn.execute(sa.text(
            f"{_ALERT_SQL} WHERE {sql_where} ORDER BY a.updated_at DESC, a.id LIMIT :limit OFFSET :offset"),
            {**params, "limit": int(limit), "offset": int(offset)}).all()
    return [_alert_dict(r) for r in rows], int(total)


def alert(engine, scope: Scope, alert_id: str, *, history: bool = True) -> dict:
    """One alert of the caller's subtree, with its history; 404 when absent or outside."""
    params = {"id": str(alert_id)}
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"{_ALERT_SQL} WHERE a.id = :id AND {_scope_where(scope, params)}"),
                           params).first()
        if row is None:
            raise not_found(f"alert {alert_id}")
        out = _alert_dict(row)
        if history:
            out["history"] = [
                {**dict(h._mapping), "ts": h.ts.isoformat()} for h in conn.execute(sa.text(
                    "SELECT ts, action, actor, level, status, note FROM alert_history "
                    "WHERE alert_id = :id ORDER BY ts, id"), {"id": str(alert_id)})]
    return out


# --------------------------------------------------------------------------- indicators, records
def indicators(engine, scope: Scope, adcode: str, *, metric: str | None = None, resolution: str = "hour",
               hours: int = 24, limit: int = 1000, offset: int = 0) -> tuple[list[dict], int]:
    """Reading rollups of one region of the caller's subtree (mean, min, max, n per bucket)."""
    code = require_region(engine, scope, adcode)
    table = {"hour": "reading_rollups_hour", "minute": "reading_rollups_minute"}.get(resolution)
    if table is None:
        raise AccessError("resolution must be 'hour' or 'minute'", 422, "invalid")
    params = {"a": code, "since": datetime.now(UTC) - timedelta(hours=int(hours))}
    where = "adcode = :a AND bucket >= :since"
    if metric:
        where += " AND metric = :metric"
        params["metric"] = metric
    with engine.connect() as conn:
        total = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}"), params).scalar_one()
        rows = conn.execute(sa.text(
            f"SELECT metric, bucket, n, vmin, vmax, mean, last_value, last_ts FROM {table} WHERE {where} "
            "ORDER BY metric, bucket LIMIT :limit OFFSET :offset"),
            {**params, "limit": int(limit), "offset": int(offset)}).all()
    return [{"metric": r.metric, "bucket": r.bucket.isoformat(), "n": int(r.n), "min": r.vmin, "max": r.vmax,
             "mean": r.mean, "last": r.last_value, "last_ts": r.last_ts.isoformat()} for r in rows], int(total)


def video_counts(engine, scope: Scope, adcode: str, *, hours: int = 24) -> list[dict]:
    """Video events per type and hour of one region of the caller's subtree."""
    code = require_region(engine, scope, adcode)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT type, bucket, n, count_sum FROM video_rollups_hour WHERE adcode = :a AND bucket >= :since "
            "ORDER BY type, bucket"),
            {"a": code, "since": datetime.now(UTC) - timedelta(hours=int(hours))}).all()
    return [{"type": r.type, "bucket": r.bucket.isoformat(), "n": int(r.n), "count_sum": int(r.count_sum)}
            for r in rows]


def record(engine, scope: Scope, kind: str, event_id: str) -> dict:
    """One stored reading or video event with its provenance (topic, partition, offset)."""
    table = {"reading": "readings", "video_event": "video_events"}.get(kind)
    if table is None:
        raise AccessError("kind must be 'reading' or 'video_event'", 422, "invalid")
    params = {"id": str(event_id)}
    where = "event_id = :id AND " + "(province = :scope OR city = :scope OR county = :scope)"
    params["scope"] = scope.home or "-"
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            f"SELECT *, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM {table} WHERE {where} LIMIT 1"), params).first()
    if row is None:
        raise not_found(f"{kind} {event_id}")
    d = {k: v for k, v in dict(row._mapping).items() if k != "geom"}
    for k, v in list(d.items()):
        if isinstance(v, datetime):
            d[k] = v.isoformat()
        elif isinstance(v, str):
            d[k] = v.strip() if k in ("county", "city", "province") else v
    d["provenance"] = {"topic": d.pop("src_topic", None), "partition": d.pop("src_partition", None),
                       "offset": d.pop("src_offset", None), "ingested_at": d.pop("ingested_at", None)}
    return d
