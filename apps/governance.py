"""Data governance: the data catalogue (数据目录) with owners, classification (分类分级) and update
frequency; field-level desensitisation by role (脱敏); provenance of stored records (溯源); and a
data-quality panel per region (completeness, timeliness, out-of-range and dead-letter rates).

The catalogue is derived from ``ingest/catalogue.yaml`` (every metric and video-event type) and
``apps/governance.yaml`` (owners per theme, classification defaults and overrides, which roles
see which level), so a new metric is catalogued without touching this module.

Dead letters live on the ``city.deadletter`` topic, not in PostGIS, and a bad record often has
no usable position: their rates are the store workers' counters (``worker_heartbeats.stats``),
platform-wide, not per region.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa

from apps.errors import AccessError
from apps.policy import require_region, tree_for
from apps.scope import Scope
from tongguan.yamlfile import read_yaml

LEVELS = ("public", "internal", "sensitive")
ONLINE_WITHIN = timedelta(minutes=15)


@lru_cache(maxsize=1)
def config() -> dict:
    path = Path(__file__).with_name("governance.yaml")
    data = read_yaml(path, "the governance settings", lambda message: AccessError(message, 500, "config"))
    for level, roles in data["clearance"].items():
        if level not in LEVELS:
            raise AccessError(f"{path}: unknown classification {level!r} (use {', '.join(LEVELS)})", 500, "config")
    return data


def allowed_levels(scope: Scope) -> set[str]:
    """The classification levels the caller may see."""
    return {lv for lv, roles in config()["clearance"].items() if scope.roles & set(roles)}


def catalogue() -> list[dict]:
    """Every dataset: id, names, table, theme, owner, classification, update frequency, fields."""
    from ingest import load_catalogue

    cfg, cat = config(), load_catalogue()
    out = []
    for kind, items in (("readings", cat.metrics.values()), ("video_events", cat.video_event_types.values())):
        for item in items:
            ds_id = f"{kind}:{item.name}"
            over = cfg.get("datasets", {}).get(ds_id, {})
            d = {"id": ds_id, "table": kind, "name_zh": item.label_zh, "name_en": item.label_en,
                 "theme": item.theme, "owner": cfg["owners"].get(item.theme, {}),
                 "classification": over.get("classification", cfg["defaults"][kind]["classification"]),
                 "update": over.get("update", cfg["defaults"][kind]["update"]),
                 "fields": cfg["fields"].get(kind, {})}
            if kind == "readings":
                d.update(unit=item.unit, valid_range=[item.min, item.max])
            out.append(d)
    for extra in cfg.get("extra", []):
        out.append({"table": extra["id"], "theme": None, "fields": {}, **extra})
    return out


def visible_catalogue(scope: Scope) -> list[dict]:
    """The catalogue as the caller may see it: datasets above their clearance are listed
    (their existence is public) but marked restricted, with no field list."""
    allowed = allowed_levels(scope)
    out = []
    for d in catalogue():
        d = dict(d)
        d["accessible"] = d["classification"] in allowed
        d["fields"] = {f: lv for f, lv in d["fields"].items() if lv in allowed}
        out.append(d)
    return out


def dataset_classification(table: str, key: str) -> str:
    for d in catalogue():
        if d["id"] == f"{table}:{key}":
            return d["classification"]
    return "internal"


def desensitise(scope: Scope, table: str, rec: dict) -> dict:
    """Remove the fields of ``rec`` the caller's roles may not see (unlisted fields count as
    internal). Raises 403 when the whole dataset is above their clearance."""
    allowed = allowed_levels(scope)
    key = rec.get("metric") or rec.get("type") or ""
    if dataset_classification(table, key) not in allowed:
        raise AccessError(f"dataset {table}:{key} is classified above your roles", 403, "forbidden")
    fields = config()["fields"].get(table, {})
    out = {k: v for k, v in rec.items() if fields.get(k, "internal") in allowed}
    hidden = sorted(set(rec) - set(out))
    if hidden:
        out["hidden_fields"] = hidden
    return out


# --------------------------------------------------------------------------- quality
def quality(engine, scope: Scope, adcode: str, *, hours: int = 1) -> dict:
    """Data quality of one region of the caller's subtree.

    - completeness: share of the region's registered sensors that reported within 15 minutes;
    - timeliness: lag from a reading's timestamp to its storage (p50, p95, max) over ``hours``;
    - out_of_range_rate: share of stored readings outside their metric's valid range (should be
      0: such readings are dead-lettered), and the dead letters of reason out_of_range;
    - dead letters by reason, platform-wide (see module docstring).
    """
    from ingest import load_catalogue

    code = require_region(engine, scope, adcode)
    level = tree_for(engine).level(code)
    col = {"province": "province", "city": "city", "county": "county"}[level]
    since = datetime.now(UTC) - timedelta(hours=int(hours))
    cat = load_catalogue()
    metrics = list(cat.metrics)
    lo = [cat.metrics[m].min for m in metrics]
    hi = [cat.metrics[m].max for m in metrics]
    with engine.connect() as conn:
        s = conn.execute(sa.text(
            f"SELECT count(*) AS total, count(*) FILTER (WHERE last_seen >= :online) AS online "
            f"FROM sensors WHERE {col} = :a"),
            {"a": code, "online": datetime.now(UTC) - ONLINE_WITHIN}).one()
        r = conn.execute(sa.text(
            "WITH lim AS (SELECT * FROM unnest(CAST(:metrics AS text[]), CAST(:lo AS float8[]), "
            "CAST(:hi AS float8[])) AS t(metric, lo, hi)) "
            "SELECT count(*) AS n, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - ts)) AS p50, "
            "percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - ts)) AS p95, "
            "max(extract(epoch FROM ingested_at - ts)) AS lag_max, "
            "count(*) FILTER (WHERE r.value < lim.lo OR r.value > lim.hi) AS out_of_range, "
            "count(*) FILTER (WHERE r.quality IS NOT NULL AND r.quality NOT IN ('good', 'ok')) AS flagged "
            f"FROM readings r LEFT JOIN lim USING (metric) WHERE r.{col} = :a AND r.ts >= :since"),
            {"a": code, "since": since, "metrics": metrics, "lo": lo, "hi": hi}).one()
        beats = conn.execute(sa.text(
            "SELECT stats FROM worker_heartbeats WHERE role = 'store' OR worker LIKE 'store:%'")).all()
    consumed = sum(int((b.stats or {}).get("consumed", 0)) for b in beats)
    dead = sum(int((b.stats or {}).get("dead_lettered", 0)) for b in beats)
    reasons: dict[str, int] = {}
    for b in beats:
        for k, v in ((b.stats or {}).get("reasons") or {}).items():
            reasons[k] = reasons.get(k, 0) + int(v)
    valid = sum(int((b.stats or {}).get("readings_valid", 0)) for b in beats)
    denom = max(1, valid + dead)
    return {
        "adcode": code, "level": level, "window_hours": int(hours),
        "completeness": {"sensors": int(s.total), "reporting": int(s.online),
                         "rate": (s.online / s.total) if s.total else None},
        "timeliness": {"readings": int(r.n), "lag_p50_s": _f(r.p50), "lag_p95_s": _f(r.p95),
                       "lag_max_s": _f(r.lag_max)},
        "out_of_range": {"stored": int(r.out_of_range or 0), "rate": (r.out_of_range / r.n) if r.n else None,
                         "dead_lettered": reasons.get("out_of_range", 0),
                         "dead_letter_rate": reasons.get("out_of_range", 0) / denom if (valid + dead) else None},
        "quality_flagged": int(r.flagged or 0),
        "dead_letters": {"scope": "platform", "messages_consumed": consumed, "dead_lettered": dead,
                         "rate": dead / denom if (valid + dead) else None,
                         "by_reason": {k: {"count": v, "rate": v / denom} for k, v in sorted(reasons.items())}},
    }


def _f(v):
    return None if v is None else round(float(v), 3)
