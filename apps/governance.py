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
import yaml

from apps.scope import AccessError, Scope, require_region

LEVELS = ("public", "internal", "sensitive")
ONLINE_WITHIN = timedelta(minutes=15)


@lru_cache(maxsize=1)
def config() -> dict:
    path = Path(__file__).with_name("governance.yaml")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
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
    from apps.scope import tree_for
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


# --------------------------------------------------------------------------- pages
def install(server, engine) -> None:
    """The ``/catalogue`` and ``/quality/<adcode>`` pages (server-rendered, autoescaped)."""
    import flask

    from apps.identity import _STYLE, FORBIDDEN_HTML, current_scope

    bp = flask.Blueprint("tongguan_governance", __name__)

    @bp.route("/catalogue")
    def catalogue_page():
        scope = current_scope()
        return flask.render_template_string(_STYLE_HEAD + CATALOGUE_HTML, style=_STYLE,
                                            datasets=visible_catalogue(scope), scope=scope)

    @bp.route("/quality/<adcode>")
    def quality_page(adcode: str):
        scope = current_scope()
        try:
            q = quality(engine, scope, adcode, hours=max(1, min(168, int(flask.request.args.get("hours", 1)))))
        except (AccessError, ValueError) as exc:
            status = getattr(exc, "status", 400)
            return flask.render_template_string(FORBIDDEN_HTML, message=str(exc)), status
        return flask.render_template_string(_STYLE_HEAD + QUALITY_HTML, style=_STYLE, q=q)

    server.register_blueprint(bp)


_STYLE_HEAD = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>统管 · 数据治理 Data governance</title>
{{ style|safe }}</head>"""

CATALOGUE_HTML = """<body><main><h2>数据目录 <span class="muted">Data catalogue</span></h2>
<table id="catalogue-table"><thead><tr><th>数据集 Dataset</th><th>名称 Name</th><th>责任部门 Owner</th>
<th>分级 Classification</th><th>更新频率 Update</th><th>字段 Fields</th></tr></thead><tbody>
{% for d in datasets %}<tr><td>{{ d.id }}</td><td>{{ d.name_zh }} <span class="muted">{{ d.name_en }}</span></td>
<td>{{ d.owner.zh }} <span class="muted">{{ d.owner.en }}</span></td>
<td>{{ d.classification }}{% if not d.accessible %} 🔒{% endif %}</td><td>{{ d.update }}</td>
<td class="muted">{{ d.fields|join(', ') }}</td></tr>{% endfor %}</tbody></table></main></body></html>"""

QUALITY_HTML = """<body><main><h2>数据质量 <span class="muted">Data quality</span> · {{ q.adcode }}</h2>
<table id="quality-table"><tbody>
<tr><th>完整性 Completeness</th><td>{{ q.completeness.reporting }} / {{ q.completeness.sensors }} 传感器在报 sensors reporting</td></tr>
<tr><th>及时性 Timeliness</th><td>p50 {{ q.timeliness.lag_p50_s }} s · p95 {{ q.timeliness.lag_p95_s }} s · {{ q.timeliness.readings }} 条 readings</td></tr>
<tr><th>超范围 Out of range</th><td>{{ q.out_of_range.stored }} 存储 stored · {{ q.out_of_range.dead_lettered }} 死信 dead-lettered</td></tr>
<tr><th>死信 Dead letters (全平台 platform)</th><td>{{ q.dead_letters.dead_lettered }} / {{ q.dead_letters.messages_consumed }}
{% for k, v in q.dead_letters.by_reason.items() %}<br>{{ k }}: {{ v.count }}{% endfor %}</td></tr>
</tbody></table></main></body></html>"""
