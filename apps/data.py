"""The views' queries, as plain functions (tested directly in ``tests/apps``).

They read the rollup tables, the alerts table and the sensor/camera registries — never the raw
``readings`` table, except :func:`sensor_series` (one sensor, bounded time). Each takes an engine
and keyword-only arguments and returns plain Python / pandas values that the pages render.

The other packages' tables land while this module is written, so the column names are resolved
by introspection once per engine (:func:`schema`): a missing table gives empty results (the views
show "no data yet"), never a traceback.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
import sqlalchemy as sa

from analytics import ACTIVE_STATUSES, LEVELS
from apps.catalogue import (
    ALL_THEMES,
    WINDOWS,
    Indicator,
    level_rank,
    theme_event_types,
    theme_metrics,
    worst_level,
)
from apps.errors import AppsError
from apps.view_cache import memo

LOCAL_TZ = "Asia/Shanghai"
ONLINE_WITHIN = timedelta(minutes=15)  # a sensor seen within this is "online"


# --------------------------------------------------------------------------- schema resolution
@dataclass(frozen=True)
class Table:
    """A table the views read, with the names of the columns they need (None: not present)."""

    name: str
    cols: frozenset

    def pick(self, *candidates: str) -> str | None:
        for c in candidates:
            if c in self.cols:
                return c
        return None


_schema_lock = threading.Lock()
_schemas: dict[str, dict[str, Table]] = {}

ROLLUP_CANDIDATES = {
    "minute": ("reading_rollups_minute", "rollup_minute", "rollups_minute", "readings_rollup_minute", "readings_minute",
               "metric_rollup_minute", "region_metric_minute"),
    "hour": ("reading_rollups_hour", "rollup_hour", "rollups_hour", "readings_rollup_hour", "readings_hour",
             "metric_rollup_hour", "region_metric_hour"),
}


def schema(engine: sa.Engine, *, refresh: bool = False) -> dict[str, Table]:
    """Tables present in the database (cached per engine; ``refresh`` re-reads)."""
    key = engine.url.render_as_string(hide_password=False)
    with _schema_lock:
        if not refresh and key in _schemas and _schemas[key]:
            return _schemas[key]
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema()")).all()
    tables: dict[str, set] = {}
    for t_name, c_name in rows:
        tables.setdefault(t_name, set()).add(c_name)
    found = {name: Table(name, frozenset(cols)) for name, cols in tables.items()}
    for res in ("minute", "hour"):
        if f"video_rollups_{res}" in found:
            found[f"@video_{res}"] = found[f"video_rollups_{res}"]
    for res, names in ROLLUP_CANDIDATES.items():
        for name in names:
            if name in found:
                found[f"@rollup_{res}"] = found[name]
                break
    # Only cache once the tables the views depend on exist, so a server started before the
    # migrations ran picks them up later.
    with _schema_lock:
        if "alerts" in found and "@rollup_hour" in found:
            _schemas[key] = found
    return found


def _table(engine, logical: str) -> Table | None:
    return schema(engine).get(logical)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------- regions
def region_tree(engine):
    """The geo package's RegionTree (cached by geo per engine URL)."""
    from geo import RegionTree

    return RegionTree.from_db(engine)


def check_region(engine, adcode: str | None, level: str) -> str:
    """The adcode when it names a region of ``level``; else AppsError with the fix."""
    from apps.i18n import t

    tree = region_tree(engine)
    code = (adcode or "").strip()
    try:
        actual = tree.level(code)
    except Exception:  # unknown adcode: geo raises its own error type
        raise AppsError(t("region.unknown", "en", adcode=code or "(none)")) from None
    if actual != level:
        raise AppsError(t("region.wrong_level", "en", name=tree.name(code, lang="en"), level=level))
    return code


def child_of(tree, adcode: str, scope: str) -> str | None:
    """The child of ``scope`` on the path down to ``adcode`` (None when outside or at scope)."""
    try:
        path = tree.path(adcode)
    except Exception:
        return None
    if scope not in path:
        return None
    i = path.index(scope)
    return path[i + 1] if i + 1 < len(path) else None


_geojson_cache: dict[tuple[str, str], dict] = {}


def children_geojson(engine, parent: str) -> dict:
    """Display boundaries of the parent's children (simplified per level by geo), cached."""
    key = (engine.url.render_as_string(hide_password=False), parent)
    if key not in _geojson_cache:
        try:
            from geo import display_geojson
        except ImportError:  # geo without its display module: read the display geometry directly
            display_geojson = _display_geojson_fallback
        _geojson_cache[key] = plotly_orientation(display_geojson(engine, parent))
    return _geojson_cache[key]


_geojson_bytes: dict[tuple[str, str], tuple[bytes, str]] = {}


def children_geojson_bytes(engine, parent: str) -> tuple[bytes, str]:
    """The children's boundaries serialised once (body, etag) for the ``/geo/children`` route."""
    import hashlib

    import orjson

    key = (engine.url.render_as_string(hide_password=False), parent)
    if key not in _geojson_bytes:
        body = orjson.dumps(children_geojson(engine, parent))
        _geojson_bytes[key] = (body, hashlib.sha1(body).hexdigest()[:16])
    return _geojson_bytes[key]


def geojson_url(parent: str) -> str:
    return f"/geo/children/{parent}.geojson"


def plotly_orientation(fc: dict) -> dict:
    """The same FeatureCollection with clockwise exterior rings.

    plotly's geo maps (d3-geo, spherical) read a counter-clockwise ring — the GeoJSON standard's
    orientation — as "everything except this polygon" and paint the whole map; clockwise
    exteriors are what d3 expects.
    """
    import shapely
    from shapely.geometry import mapping, shape

    out = []
    for f in fc.get("features", []):
        geom = f.get("geometry")
        if geom:
            geom = mapping(shapely.orient_polygons(shape(geom), exterior_cw=True))
        out.append({**f, "geometry": geom})
    return {**fc, "features": out}


def _display_geojson_fallback(engine, parent: str) -> dict:
    import json

    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT adcode, name, name_en, level, ST_AsGeoJSON(COALESCE(geom_display, "
            "ST_SimplifyPreserveTopology(geom, 0.005)), 4) FROM regions WHERE parent = :p ORDER BY adcode"),
            {"p": parent}).all()
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": a.strip(), "geometry": json.loads(g),
         "properties": {"adcode": a.strip(), "name": n, "name_en": ne, "level": lv}}
        for a, n, ne, lv, g in rows]}


# --------------------------------------------------------------------------- alerts
def _alert_scope_sql(alerts: Table, tree, scope: str) -> tuple[str, dict]:
    """WHERE clause that keeps the alerts inside ``scope`` (enforced in the query)."""
    level = tree.level(scope)
    region_col = alerts.pick("adcode", "region", "county")
    col = {"province": alerts.pick("province"), "city": alerts.pick("city"),
           "county": alerts.pick("county") or region_col}[level]
    if col is None:
        raise AppsError(f"the alerts table has no column for the {level} scope; "
                        "run `tongguan db upgrade` to bring the schema up to date")
    return f"{_q(col)} = :scope", {"scope": scope}


def _theme_sql(table: Table, theme: str, params: dict) -> str:
    if theme == ALL_THEMES or not table.pick("theme"):
        return ""
    params["theme"] = theme
    return " AND theme = :theme"


@memo
def region_state(engine, *, scope: str, theme: str = ALL_THEMES) -> pd.DataFrame:
    """Open alerts of each child of ``scope`` by level: one row per child (all children, also
    the quiet ones), columns adcode, name, blue, yellow, orange, red, open, worst, rank.

    Sorted most serious first (the ranking); the map colours by ``worst``.
    """
    tree = region_tree(engine)
    children = list(tree.children(scope))
    counts = {c: dict.fromkeys(LEVELS, 0) for c in children}
    alerts = _table(engine, "alerts")
    if alerts is not None:
        where, params = _alert_scope_sql(alerts, tree, scope)
        region_col = alerts.pick("adcode", "region", "county")
        sql = (f"SELECT {_q(region_col)} AS adcode, level, count(*) AS n FROM alerts "
               f"WHERE {where} AND status = ANY(:statuses)" + _theme_sql(alerts, theme, params)
               + f" GROUP BY {_q(region_col)}, level")
        params["statuses"] = list(ACTIVE_STATUSES)
        with engine.connect() as conn:
            for adcode, level, n in conn.execute(sa.text(sql), params):
                child = child_of(tree, str(adcode).strip(), scope)
                if child in counts and level in LEVELS:
                    counts[child][level] += int(n)
    rows = []
    for c in children:
        lv = counts[c]
        worst = worst_level([k for k, v in lv.items() if v])
        rows.append({"adcode": c, "name": tree.name(c), "name_en": tree.name(c, lang="en"), **lv,
                     "open": sum(lv.values()), "worst": worst, "rank": level_rank(worst)})
    df = pd.DataFrame(rows, columns=["adcode", "name", "name_en", *LEVELS, "open", "worst", "rank"])
    if df.empty:
        return df
    return df.sort_values(["rank", "red", "orange", "yellow", "blue", "adcode"],
                          ascending=[False, False, False, False, False, True]).reset_index(drop=True)


def _alert_columns(alerts: Table, handling: Table | None) -> str:
    """SELECT list over ``alerts a`` (and ``alert_handling h`` when present)."""
    region_col = alerts.pick("adcode", "region", "county")
    first = alerts.pick("first_seen", "created_at", "ts")
    last = alerts.pick("last_seen", "updated_at", first)
    cols = [f"a.{_q(alerts.pick('id', 'alert_id'))} AS id", "a.level", "a.status",
            f"a.{_q(region_col)} AS adcode", f"a.{_q(first)} AS first_seen", f"a.{_q(last)} AS last_seen"]
    for opt in ("theme", "title", "source", "count", "city", "province", "subject", "sensor_id"):
        if opt in alerts.cols:
            cols.append(f"a.{_q(opt)}")
    if "geom" in alerts.cols:
        cols += ["ST_X(ST_PointOnSurface(a.geom)) AS lon", "ST_Y(ST_PointOnSurface(a.geom)) AS lat"]
    if handling is not None:
        cols += ["h.visible_at AS escalated_to", "h.escalated_at", "h.owner_region", "h.overdue_at",
                 "h.assigned_region"]
    return ", ".join(cols)


def _alerts_from(engine) -> tuple[Table | None, Table | None, str]:
    alerts = _table(engine, "alerts")
    handling = _table(engine, "alert_handling")
    if handling is not None and not {"alert_id", "visible_at", "escalated_at"} <= handling.cols:
        handling = None
    sql = "alerts a" + (" LEFT JOIN alert_handling h ON h.alert_id = a.id" if handling is not None else "")
    return alerts, handling, sql


def alerts_list(engine, *, scope: str, theme: str = ALL_THEMES, statuses=ACTIVE_STATUSES,
                window: str | None = None, limit: int = 200, newest_first_seen: bool = False,
                escalated_to: str | None = None) -> pd.DataFrame:
    """Alerts inside ``scope`` (newest change first, or newest first sighting), optionally by
    theme, status and window; ``escalated_to`` keeps those escalated to that region."""
    alerts, handling, from_sql = _alerts_from(engine)
    empty = pd.DataFrame(columns=["id", "level", "status", "adcode", "first_seen", "last_seen"])
    if alerts is None:
        return empty
    tree = region_tree(engine)
    where, params = _alert_scope_sql(alerts, tree, scope)
    sql = f"SELECT {_alert_columns(alerts, handling)} FROM {from_sql} WHERE a.{where}"
    if theme != ALL_THEMES:
        sql += " AND a.theme = :theme"
        params["theme"] = theme
    if statuses:
        sql += " AND a.status = ANY(:statuses)"
        params["statuses"] = list(statuses)
    if escalated_to is not None:
        if handling is None:
            return empty
        sql += " AND h.visible_at = :esc AND h.escalated_at IS NOT NULL"
        params["esc"] = escalated_to
    last = alerts.pick("last_seen", "updated_at", "first_seen", "created_at")
    if window:
        sql += f" AND a.{_q(last)} >= now() - :win"
        params["win"] = WINDOWS[window]
    order = alerts.pick("first_seen", "created_at", "ts") if newest_first_seen else last
    sql += f" ORDER BY a.{_q(order)} DESC, 1 DESC LIMIT :limit"
    params["limit"] = int(limit)
    with engine.connect() as conn:
        df = pd.DataFrame([dict(r._mapping) for r in conn.execute(sa.text(sql), params)])
    if df.empty:
        return empty
    df["adcode"] = df["adcode"].astype(str).str.strip()
    df["region_name"] = [_safe_name(tree, a) for a in df["adcode"]]
    df["region_name_en"] = [_safe_name(tree, a, "en") for a in df["adcode"]]
    df["level_rank"] = df["level"].map(level_rank).fillna(0).astype(int)
    return df


def _safe_name(tree, adcode: str, lang: str = "zh") -> str:
    try:
        return tree.name(adcode, lang=lang)
    except Exception:
        return adcode


def escalations_waiting(engine, *, scope: str, theme: str = ALL_THEMES) -> pd.DataFrame:
    """Alerts escalated to ``scope`` (visible at its level) and not yet acknowledged there."""
    return alerts_list(engine, scope=scope, theme=theme, statuses=("open",), escalated_to=scope)


@memo
def ticker(engine, *, scope: str, theme: str = ALL_THEMES, since: datetime | None = None,
           limit: int = 20) -> pd.DataFrame:
    """Alerts in ``scope`` first seen or escalated after ``since`` (the live ticker), newest first.

    The ``kind`` column says "new" (first seen after ``since``) or "escalated".
    """
    df = alerts_list(engine, scope=scope, theme=theme, statuses=ACTIVE_STATUSES, limit=limit,
                     newest_first_seen=True)
    if df.empty:
        df["kind"] = []
        return df
    if since is not None:
        since = pd.Timestamp(since)
        changed = df["first_seen"] > since
        if "escalated_at" in df:
            changed |= df["escalated_at"].notna() & (df["escalated_at"] > since)
        df = df[changed]
    kind = ["new"] * len(df)
    if "escalated_at" in df:
        kind = ["escalated" if pd.notna(e) and (since is None or e > since) and f < e else "new"
                for f, e in zip(df["first_seen"], df["escalated_at"])]
    df = df.assign(kind=kind)
    return df.reset_index(drop=True)


def open_alert_counts(engine, *, scope: str, theme: str = ALL_THEMES) -> dict[str, int]:
    """Open alerts inside ``scope`` by level (every level present, zero when none)."""
    out = dict.fromkeys(LEVELS, 0)
    alerts = _table(engine, "alerts")
    if alerts is None:
        return out
    where, params = _alert_scope_sql(alerts, region_tree(engine), scope)
    sql = (f"SELECT level, count(*) FROM alerts WHERE {where} AND status = ANY(:statuses)"
           + _theme_sql(alerts, theme, params) + " GROUP BY level")
    params["statuses"] = list(ACTIVE_STATUSES)
    with engine.connect() as conn:
        for level, n in conn.execute(sa.text(sql), params):
            if level in out:
                out[level] = int(n)
    return out


# --------------------------------------------------------------------------- rollups
def _rollup_parts(engine, res: str) -> dict | None:
    t = _table(engine, f"@rollup_{res}")
    if t is None:
        return None
    count = t.pick("count", "n", "cnt", "readings")
    mean = t.pick("mean", "avg", "vmean", "value_mean")
    vsum = t.pick("sum", "vsum", "value_sum", "total")
    return {
        "table": t.name,
        "region": t.pick("adcode", "region", "region_adcode"),
        "metric": t.pick("metric"),
        "bucket": t.pick("bucket", "ts", "minute", "hour", "period", "time"),
        "count": count,
        "max": t.pick("max", "vmax", "value_max"),
        "min": t.pick("min", "vmin", "value_min"),
        # A weighted mean needs sum; with only mean stored, weight mean by count.
        "sum": f"{_q(vsum)}" if vsum else f"({_q(mean)} * {_q(count)})",
    }


def _metric_filter(theme: str, params: dict, metric_col: str) -> str:
    if theme == ALL_THEMES:
        return ""
    params["metrics"] = theme_metrics(theme) or ["-"]
    return f" AND {_q(metric_col)} = ANY(:metrics)"


def readings_count(engine, *, scope: str, since: datetime, theme: str = ALL_THEMES) -> int:
    """Readings stored in ``scope`` since ``since`` (from the hour rollup plus the minute rollup
    for the current hour's part before the hour rolled up is complete is not needed: the hour
    rollup is maintained as data arrives)."""
    r = _rollup_parts(engine, "hour")
    if r is None:
        return 0
    params = {"scope": scope, "since": since}
    sql = (f"SELECT COALESCE(sum({_q(r['count'])}), 0) FROM {_q(r['table'])} "
           f"WHERE {_q(r['region'])} = :scope AND {_q(r['bucket'])} >= :since"
           + _metric_filter(theme, params, r["metric"]))
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar() or 0)


def hourly_readings(engine, *, scope: str, hours: int = 24, theme: str = ALL_THEMES) -> pd.Series:
    """Readings per hour in ``scope`` for the last ``hours`` hours (zero-filled)."""
    r = _rollup_parts(engine, "hour")
    index = _hour_index(engine, hours)
    if r is None:
        return pd.Series(0, index=index, dtype="int64")
    params = {"scope": scope, "since": index[0].to_pydatetime()}
    sql = (f"SELECT date_trunc('hour', {_q(r['bucket'])}) AS h, sum({_q(r['count'])}) AS n "
           f"FROM {_q(r['table'])} WHERE {_q(r['region'])} = :scope AND {_q(r['bucket'])} >= :since"
           + _metric_filter(theme, params, r["metric"]) + " GROUP BY 1")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql), params).all()
    return _fill(index, rows)


def metric_hourly(engine, *, scope: str, metric: str, hours: int = 24) -> pd.DataFrame:
    """Hourly mean and max of one metric in ``scope`` (the sparklines), NaN where no data."""
    r = _rollup_parts(engine, "hour")
    index = _hour_index(engine, hours)
    empty = pd.DataFrame({"mean": float("nan"), "max": float("nan")}, index=index)
    if r is None:
        return empty
    sql = (f"SELECT date_trunc('hour', {_q(r['bucket'])}) AS h, "
           f"sum({r['sum']}) / NULLIF(sum({_q(r['count'])}), 0) AS mean, max({_q(r['max'])}) AS max "
           f"FROM {_q(r['table'])} WHERE {_q(r['region'])} = :scope AND {_q(r['metric'])} = :metric "
           f"AND {_q(r['bucket'])} >= :since GROUP BY 1")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql), {"scope": scope, "metric": metric,
                                           "since": index[0].to_pydatetime()}).all()
    got = {pd.Timestamp(h): (mean, mx) for h, mean, mx in rows}
    nan = float("nan")
    return pd.DataFrame({"mean": [nan if (v := got.get(ts, (None, None))[0]) is None else float(v) for ts in index],
                         "max": [nan if (v := got.get(ts, (None, None))[1]) is None else float(v) for ts in index]},
                        index=index)


def metric_window(engine, *, scope: str, metric: str, window: str) -> dict:
    """Mean and max of one metric in ``scope`` over ``window``, from the minute rollup when the
    window is short (up to date to the minute), the hour rollup otherwise."""
    res = "minute" if WINDOWS[window] <= timedelta(hours=6) else "hour"
    r = _rollup_parts(engine, res) or _rollup_parts(engine, "hour")
    if r is None:
        return {"mean": None, "max": None, "count": 0}
    sql = (f"SELECT sum({r['sum']}) / NULLIF(sum({_q(r['count'])}), 0), max({_q(r['max'])}), "
           f"COALESCE(sum({_q(r['count'])}), 0) FROM {_q(r['table'])} "
           f"WHERE {_q(r['region'])} = :scope AND {_q(r['metric'])} = :metric "
           f"AND {_q(r['bucket'])} >= now() - :win")
    with engine.connect() as conn:
        mean, mx, n = conn.execute(sa.text(sql), {"scope": scope, "metric": metric,
                                                  "win": WINDOWS[window]}).one()
    return {"mean": None if mean is None else float(mean), "max": None if mx is None else float(mx),
            "count": int(n)}


def _hour_index(engine, hours: int) -> pd.DatetimeIndex:
    """The last ``hours`` hour buckets, ending with the current one (UTC, as the rollups).

    From the application's clock — the same host clock as the database's in practice — to save
    a round trip per chart; a clock skew of seconds only shifts which bucket is "current"."""
    end = pd.Timestamp.now(tz="UTC").floor("h")
    return pd.date_range(end=end, periods=hours, freq="h")


def _fill(index: pd.DatetimeIndex, rows) -> pd.Series:
    """Counts per hour on ``index`` (zero where no row)."""
    got = {pd.Timestamp(h): int(n or 0) for h, n in rows}
    return pd.Series([got.get(ts, 0) for ts in index], index=index, dtype="int64")


# --------------------------------------------------------------------------- registries, events
def _scope_col(table: Table, tree, scope: str) -> str | None:
    level = tree.level(scope)
    return table.pick(level, f"{level}_adcode", "adcode" if level == "county" else "-")


def sensor_counts(engine, *, scope: str, theme: str = ALL_THEMES) -> dict[str, int]:
    """Sensors registered in ``scope`` and how many were seen within ONLINE_WITHIN."""
    sensors = _table(engine, "sensors")
    if sensors is None:
        return {"total": 0, "online": 0}
    col = _scope_col(sensors, region_tree(engine), scope)
    seen = sensors.pick("last_seen", "last_reading_at", "updated_at")
    if col is None or seen is None:
        return {"total": 0, "online": 0}
    params = {"scope": scope, "within": ONLINE_WITHIN}
    sql = (f"SELECT count(*), count(*) FILTER (WHERE {_q(seen)} >= now() - :within) FROM sensors "
           f"WHERE {_q(col)} = :scope")
    metric_col = sensors.pick("metric")
    if metric_col:
        sql += _metric_filter(theme, params, metric_col)
    with engine.connect() as conn:
        total, online = conn.execute(sa.text(sql), params).one()
    return {"total": int(total), "online": int(online)}


def _video_sql(engine, res: str, *, scope: str, theme: str, event_type: str | None,
               params: dict) -> str | None:
    """FROM/WHERE over the video rollup of resolution ``res`` for ``scope`` (None: no table)."""
    if _table(engine, f"@video_{res}") is None:
        return None
    params["scope"] = scope
    sql = f" FROM video_rollups_{res} WHERE adcode = :scope"
    if event_type:
        sql += " AND type = :etype"
        params["etype"] = event_type
    elif theme != ALL_THEMES:
        sql += " AND type = ANY(:types)"
        params["types"] = theme_event_types(theme) or ["-"]
    return sql


def video_event_count(engine, *, scope: str, since: datetime, theme: str = ALL_THEMES,
                      event_type: str | None = None) -> int:
    """Video events in ``scope`` since ``since``, from the video rollups (minute rollup when
    ``since`` is not on the hour)."""
    params: dict = {"since": since}
    res = "hour" if pd.Timestamp(since).minute == 0 and pd.Timestamp(since).second == 0 else "minute"
    where = _video_sql(engine, res, scope=scope, theme=theme, event_type=event_type, params=params)
    if where is None:
        return 0
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT COALESCE(sum(n), 0){where} AND bucket >= :since"),
                                params).scalar() or 0)


def hourly_video_events(engine, *, scope: str, hours: int = 24, theme: str = ALL_THEMES,
                        event_type: str | None = None) -> pd.Series:
    """Video events per hour in ``scope`` (zero-filled)."""
    index = _hour_index(engine, hours)
    params: dict = {"since": index[0].to_pydatetime()}
    where = _video_sql(engine, "hour", scope=scope, theme=theme, event_type=event_type, params=params)
    if where is None:
        return pd.Series(0, index=index, dtype="int64")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT date_trunc('hour', bucket), sum(n){where} "
                                    "AND bucket >= :since GROUP BY 1"), params).all()
    return _fill(index, rows)


def hourly_alerts(engine, *, scope: str, hours: int = 24, theme: str = ALL_THEMES) -> pd.Series:
    """Alerts first seen per hour in ``scope``."""
    alerts = _table(engine, "alerts")
    index = _hour_index(engine, hours)
    if alerts is None:
        return pd.Series(0, index=index, dtype="int64")
    where, params = _alert_scope_sql(alerts, region_tree(engine), scope)
    first = alerts.pick("first_seen", "created_at", "ts")
    params["since"] = index[0].to_pydatetime()
    sql = (f"SELECT date_trunc('hour', {_q(first)}), count(*) FROM alerts WHERE {where} "
           f"AND {_q(first)} >= :since" + _theme_sql(alerts, theme, params) + " GROUP BY 1")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql), params).all()
    return _fill(index, rows)


def local_midnight(engine=None, now: datetime | None = None) -> datetime:
    """Start of today in China Standard Time ("today" on the screens), as an aware datetime.

    >>> local_midnight(now=datetime(2026, 11, 23, 16, 30, tzinfo=UTC)).isoformat()
    '2026-11-24T00:00:00+08:00'
    """
    from zoneinfo import ZoneInfo

    local = (now or datetime.now(UTC)).astimezone(ZoneInfo(LOCAL_TZ))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


@memo
def kpis(engine, *, scope: str, theme: str = ALL_THEMES) -> dict:
    """The KPI strip: sensors online/total, readings today, video events today, open alerts by level."""
    midnight = local_midnight(engine)
    sensors = sensor_counts(engine, scope=scope, theme=theme)
    alerts = open_alert_counts(engine, scope=scope, theme=theme)
    return {
        "sensors_online": sensors["online"], "sensors_total": sensors["total"],
        "readings_today": readings_count(engine, scope=scope, since=midnight, theme=theme),
        "video_today": video_event_count(engine, scope=scope, since=midnight, theme=theme),
        "alerts": alerts, "open_alerts": sum(alerts.values()),
    }


@memo
def trend(engine, *, scope: str, theme: str = ALL_THEMES, hours: int = 24) -> pd.DataFrame:
    """Hourly readings, video events and new alerts for the last ``hours`` hours."""
    return pd.DataFrame({
        "readings": hourly_readings(engine, scope=scope, hours=hours, theme=theme),
        "events": hourly_video_events(engine, scope=scope, hours=hours, theme=theme),
        "alerts": hourly_alerts(engine, scope=scope, hours=hours, theme=theme),
    })


# --------------------------------------------------------------------------- city vital signs
def indicator_value(engine, ind: Indicator, *, scope: str) -> float | None:
    """Current value of one vital sign in ``scope`` (None: no data in its window)."""
    if ind.kind in ("metric_mean", "metric_max"):
        w = metric_window(engine, scope=scope, metric=ind.metric, window=ind.window)
        return w["mean"] if ind.kind == "metric_mean" else w["max"]
    if ind.kind == "open_alerts":
        return float(sum(open_alert_counts(engine, scope=scope, theme=ind.theme or ALL_THEMES).values()))
    if ind.kind == "video_events":
        with engine.connect() as conn:
            since = conn.execute(sa.text("SELECT date_trunc('minute', now() - :w)"),
                                 {"w": WINDOWS[ind.window]}).scalar()
        return float(video_event_count(engine, scope=scope, since=since, event_type=ind.event_type))
    if ind.kind == "sensor_online_rate":
        c = sensor_counts(engine, scope=scope)
        return c["online"] / c["total"] if c["total"] else None
    raise AppsError(f"indicator {ind.id}: unknown kind {ind.kind}")


def indicator_spark(engine, ind: Indicator, *, scope: str, hours: int = 24) -> list[float | None]:
    """Hourly history of a vital sign for its sparkline (None where no data)."""
    if ind.kind in ("metric_mean", "metric_max"):
        df = metric_hourly(engine, scope=scope, metric=ind.metric, hours=hours)
        s = df["mean" if ind.kind == "metric_mean" else "max"]
    elif ind.kind == "open_alerts":
        s = hourly_alerts(engine, scope=scope, hours=hours, theme=ind.theme or ALL_THEMES)
    elif ind.kind == "video_events":
        s = hourly_video_events(engine, scope=scope, hours=hours, event_type=ind.event_type)
    else:  # the online rate has no history in the rollups: show readings per hour instead
        s = hourly_readings(engine, scope=scope, hours=hours)
    return [None if pd.isna(v) else float(v) for v in s.tolist()]


@memo
def vitals(engine, *, scope: str, indicators: list[Indicator], spark: bool = True) -> list[dict]:
    """Every configured vital sign of ``scope``: value, status, sparkline.

    Batched: one query per kind of source (metric windows, metric hours, alerts, video events,
    sensors) whatever the number of indicators, instead of two or three per indicator. The
    per-indicator functions above compute the same values one at a time (and are tested equal).
    """
    hours = 24
    index = _hour_index(engine, hours)
    metric_inds = [i for i in indicators if i.kind in ("metric_mean", "metric_max")]
    values: dict[str, float | None] = {}
    sparks: dict[str, list] = {}
    r_min = _rollup_parts(engine, "minute")
    r_hour = _rollup_parts(engine, "hour")
    with engine.connect() as conn:
        # current values of the metric indicators, one query per distinct window
        for window in sorted({i.window for i in metric_inds}):
            r = (r_min if WINDOWS[window] <= timedelta(hours=6) else r_hour) or r_hour
            inds = [i for i in metric_inds if i.window == window]
            if r is None or not inds:
                continue
            rows = conn.execute(sa.text(
                f"SELECT {_q(r['metric'])}, sum({r['sum']}) / NULLIF(sum({_q(r['count'])}), 0), "
                f"max({_q(r['max'])}) FROM {_q(r['table'])} WHERE {_q(r['region'])} = :scope "
                f"AND {_q(r['metric'])} = ANY(:metrics) AND {_q(r['bucket'])} >= now() - :win GROUP BY 1"),
                {"scope": scope, "metrics": [i.metric for i in inds], "win": WINDOWS[window]}).all()
            got = {m: (mean, mx) for m, mean, mx in rows}
            for i in inds:
                mean, mx = got.get(i.metric, (None, None))
                v = mean if i.kind == "metric_mean" else mx
                values[i.id] = None if v is None else float(v)
        # their hourly history
        if spark and metric_inds and r_hour is not None:
            rows = conn.execute(sa.text(
                f"SELECT {_q(r_hour['metric'])}, date_trunc('hour', {_q(r_hour['bucket'])}), "
                f"sum({r_hour['sum']}) / NULLIF(sum({_q(r_hour['count'])}), 0), max({_q(r_hour['max'])}) "
                f"FROM {_q(r_hour['table'])} WHERE {_q(r_hour['region'])} = :scope "
                f"AND {_q(r_hour['metric'])} = ANY(:metrics) AND {_q(r_hour['bucket'])} >= :since GROUP BY 1, 2"),
                {"scope": scope, "metrics": sorted({i.metric for i in metric_inds}),
                 "since": index[0].to_pydatetime()}).all()
            hist: dict[tuple[str, pd.Timestamp], tuple] = {(m, pd.Timestamp(h)): (mean, mx) for m, h, mean, mx in rows}
            for i in metric_inds:
                k = 0 if i.kind == "metric_mean" else 1
                sparks[i.id] = [None if (v := hist.get((i.metric, ts), (None, None))[k]) is None else float(v)
                                for ts in index]
    alert_inds = [i for i in indicators if i.kind == "open_alerts"]
    if alert_inds:
        by_theme = _open_alerts_by_theme(engine, scope=scope)
        hourly = _hourly_alerts_by_theme(engine, scope=scope, index=index) if spark else {}
        for i in alert_inds:
            values[i.id] = float(sum(n for th, n in by_theme.items() if not i.theme or th == i.theme))
            if spark:
                sparks[i.id] = [float(sum(c.get(ts, 0) for th, c in hourly.items() if not i.theme or th == i.theme))
                                for ts in index]
    for i in indicators:
        if i.kind == "video_events":
            values[i.id] = indicator_value(engine, i, scope=scope)
            if spark:
                sparks[i.id] = [float(v) for v in hourly_video_events(
                    engine, scope=scope, hours=hours, event_type=i.event_type).tolist()]
        elif i.kind == "sensor_online_rate":
            values[i.id] = indicator_value(engine, i, scope=scope)
            if spark:
                sparks[i.id] = [float(v) for v in hourly_readings(engine, scope=scope, hours=hours).tolist()]
    return [{"id": i.id, "value": values.get(i.id), "status": i.status(values.get(i.id)),
             "spark": sparks.get(i.id) if spark else None} for i in indicators]


def _open_alerts_by_theme(engine, *, scope: str) -> dict[str, int]:
    alerts = _table(engine, "alerts")
    if alerts is None:
        return {}
    where, params = _alert_scope_sql(alerts, region_tree(engine), scope)
    params["statuses"] = list(ACTIVE_STATUSES)
    with engine.connect() as conn:
        return {th: int(n) for th, n in conn.execute(sa.text(
            f"SELECT theme, count(*) FROM alerts WHERE {where} AND status = ANY(:statuses) GROUP BY 1"), params)}


def _hourly_alerts_by_theme(engine, *, scope: str, index) -> dict[str, dict]:
    alerts = _table(engine, "alerts")
    if alerts is None:
        return {}
    where, params = _alert_scope_sql(alerts, region_tree(engine), scope)
    params["since"] = index[0].to_pydatetime()
    out: dict[str, dict] = {}
    with engine.connect() as conn:
        for th, h, n in conn.execute(sa.text(
                f"SELECT theme, date_trunc('hour', first_seen), count(*) FROM alerts WHERE {where} "
                "AND first_seen >= :since GROUP BY 1, 2"), params):
            out.setdefault(th, {})[pd.Timestamp(h)] = int(n)
    return out


# --------------------------------------------------------------------------- county detail
@memo
def county_sensors(engine, *, county: str, theme: str = ALL_THEMES,
                   alerts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Sensors of a county with position, metric, online flag and worst open alert level
    (``alerts``: the county's alerts when the caller has them already; open ones are used)."""
    sensors = _table(engine, "sensors")
    cols = ["sensor_id", "metric", "lon", "lat", "online", "last_value", "level"]
    if sensors is None:
        return pd.DataFrame(columns=cols)
    col = _scope_col(sensors, region_tree(engine), county)
    seen = sensors.pick("last_seen", "last_reading_at", "updated_at")
    pos = ("lon, lat" if {"lon", "lat"} <= sensors.cols
           else "ST_X(geom) AS lon, ST_Y(geom) AS lat")
    metric = sensors.pick("metric")
    last_value = sensors.pick("last_value", "value")
    params = {"scope": county, "within": ONLINE_WITHIN}
    sql = (f"SELECT sensor_id, {(_q(metric) + ' AS metric') if metric else 'NULL AS metric'}, {pos}, "
           f"({_q(seen)} >= now() - :within) AS online, "
           f"{(_q(last_value)) if last_value else 'NULL'} AS last_value "
           f"FROM sensors WHERE {_q(col)} = :scope")
    if metric:
        sql += _metric_filter(theme, params, metric)
    with engine.connect() as conn:
        df = pd.DataFrame([dict(r._mapping) for r in conn.execute(sa.text(sql + " ORDER BY sensor_id"), params)])
    if df.empty:
        return pd.DataFrame(columns=cols)
    df["level"] = "none"
    if alerts is None:
        alerts = alerts_list(engine, scope=county, theme=theme)
    elif not alerts.empty:
        alerts = alerts[alerts["status"].isin(ACTIVE_STATUSES)]
    subject = "subject" if "subject" in alerts else ("sensor_id" if "sensor_id" in alerts else None)
    if not alerts.empty and subject:
        worst: dict[str, str] = {}
        for subj, lv in zip(alerts[subject], alerts["level"]):
            sid = str(subj or "")
            sid = sid.removeprefix("sensor:")
            worst[sid] = worst_level([worst.get(sid, "none"), lv])
        df["level"] = df["sensor_id"].map(worst).fillna("none")
    return df


@memo
def county_cameras(engine, *, county: str) -> pd.DataFrame:
    cams = _table(engine, "cameras")
    if cams is None:
        return pd.DataFrame(columns=["camera_id", "lon", "lat"])
    col = _scope_col(cams, region_tree(engine), county)
    pos = "lon, lat" if {"lon", "lat"} <= cams.cols else "ST_X(geom) AS lon, ST_Y(geom) AS lat"
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT camera_id, {pos} FROM cameras WHERE {_q(col)} = :c"),
                            {"c": county})
        return pd.DataFrame([dict(r._mapping) for r in rows], columns=["camera_id", "lon", "lat"])


@memo
def county_events(engine, *, county: str, window: str = "24h", theme: str = ALL_THEMES,
                  limit: int = 2000) -> pd.DataFrame:
    """Recent video events of a county (newest first, bounded)."""
    ve = _table(engine, "video_events")
    cols = ["event_id", "camera_id", "type", "ts", "lon", "lat", "grid_id"]
    if ve is None:
        return pd.DataFrame(columns=cols)
    col = _scope_col(ve, region_tree(engine), county)
    ts = ve.pick("ts", "event_time", "time")
    type_col = ve.pick("type", "event_type")
    pos = "lon, lat" if {"lon", "lat"} <= ve.cols else "ST_X(geom) AS lon, ST_Y(geom) AS lat"
    grid = ve.pick("grid_id")
    params = {"c": county, "win": WINDOWS[window], "limit": limit}
    sql = (f"SELECT event_id, camera_id, {_q(type_col)} AS type, {_q(ts)} AS ts, {pos}, "
           f"{_q(grid) if grid else 'NULL'} AS grid_id FROM video_events "
           f"WHERE {_q(col)} = :c AND {_q(ts)} >= now() - :win")
    if theme != ALL_THEMES:
        sql += f" AND {_q(type_col)} = ANY(:types)"
        params["types"] = theme_event_types(theme) or ["-"]
    sql += f" ORDER BY {_q(ts)} DESC LIMIT :limit"
    with engine.connect() as conn:
        return pd.DataFrame([dict(r._mapping) for r in conn.execute(sa.text(sql), params)], columns=cols)


@memo
def county_event_clusters(engine, *, county: str, window: str = "24h", theme: str = ALL_THEMES) -> pd.DataFrame:
    """Video events of a county in ``window`` aggregated per camera (where they happen): mean
    position, count ``n`` and the most frequent ``type`` — the map draws one marker per camera,
    however many events there are."""
    ve = _table(engine, "video_events")
    cols = ["lon", "lat", "n", "type"]
    if ve is None:
        return pd.DataFrame(columns=cols)
    col = _scope_col(ve, region_tree(engine), county)
    ts = ve.pick("ts", "event_time", "time")
    type_col = ve.pick("type", "event_type")
    params = {"c": county, "win": WINDOWS[window]}
    sql = (f"SELECT avg(ST_X(geom)) AS lon, avg(ST_Y(geom)) AS lat, count(*) AS n, "
           f"mode() WITHIN GROUP (ORDER BY {_q(type_col)}) AS type FROM video_events "
           f"WHERE {_q(col)} = :c AND {_q(ts)} >= now() - :win")
    if theme != ALL_THEMES:
        sql += f" AND {_q(type_col)} = ANY(:types)"
        params["types"] = theme_event_types(theme) or ["-"]
    sql += " GROUP BY camera_id ORDER BY n DESC"
    with engine.connect() as conn:
        return pd.DataFrame([dict(r._mapping) for r in conn.execute(sa.text(sql), params)], columns=cols)


@memo
def grid_activity(engine, *, county: str, window: str = "24h", theme: str = ALL_THEMES) -> dict:
    """GeoJSON of the county's grid cells that had video events in ``window``, with the count
    (cells without activity are left out: the county boundary is drawn underneath)."""
    ve = _table(engine, "video_events")
    if ve is None or not ve.pick("grid_id") or _table(engine, "grid_cells") is None:
        return {"type": "FeatureCollection", "features": []}
    col = _scope_col(ve, region_tree(engine), county)
    ts = ve.pick("ts", "event_time", "time")
    type_col = ve.pick("type", "event_type")
    params = {"c": county, "win": WINDOWS[window]}
    theme_sql = ""
    if theme != ALL_THEMES:
        theme_sql = f" AND {_q(type_col)} = ANY(:types)"
        params["types"] = theme_event_types(theme) or ["-"]
    sql = (f"WITH a AS (SELECT grid_id, count(*) AS n FROM video_events WHERE {_q(col)} = :c "
           f"AND {_q(ts)} >= now() - :win AND grid_id IS NOT NULL AND grid_id <> ''{theme_sql} GROUP BY grid_id) "
           "SELECT a.grid_id, a.n, ST_AsGeoJSON(ST_ForcePolygonCW(g.geom), 5) FROM a JOIN grid_cells g USING (grid_id)")
    import json

    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql), params).all()
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": gid, "properties": {"grid_id": gid, "n": int(n)},
         "geometry": json.loads(geom)} for gid, n, geom in rows]}


def sensor_series(engine, *, sensor_id: str, hours: int = 24, max_points: int = 2000) -> pd.DataFrame:
    """Readings of ONE sensor over the last ``hours`` (the only raw-readings query of the views:
    bounded by sensor and time, served by the (sensor_id, ts) index)."""
    readings = _table(engine, "readings")
    if readings is None:
        return pd.DataFrame(columns=["ts", "value", "metric"])
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT ts, value, metric FROM readings WHERE sensor_id = :s AND ts >= now() - :h "
            "ORDER BY ts DESC LIMIT :lim"),
            {"s": sensor_id, "h": timedelta(hours=hours), "lim": max_points}).all()
    df = pd.DataFrame(rows, columns=["ts", "value", "metric"])
    return df.iloc[::-1].reset_index(drop=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


def thresholds(metric: str, adcodes: tuple[str, ...] = ()) -> dict[str, float]:
    """Warning thresholds of a metric for the series chart: level -> value of the first
    instantaneous (``last``) condition of the analytics rule for that metric, most specific
    region override first. Empty when no rule watches the metric's value directly."""
    try:
        from analytics import load_rules

        rules = load_rules()
    except Exception:  # the series is still worth showing without its thresholds
        return {}
    out: dict[str, float] = {}
    for rule in rules:
        if rule.metric != metric:
            continue
        for spec in rule.levels_for(adcodes):
            for cond in spec.conditions:
                if cond.agg == "last" and spec.level not in out:
                    out[spec.level] = float(cond.threshold)
    return out
