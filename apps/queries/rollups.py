"""Figures from the rollup tables (readings and video events per region, metric or type, minute
and hour) and the sensor registry — never the raw readings."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa

from apps.catalogue import ALL_THEMES, WINDOWS, theme_event_types, theme_metrics
from apps.queries.regions import region_tree, scope_column

ONLINE_WITHIN = timedelta(minutes=15)  # a sensor seen within this is "online"
SHORT_WINDOW = timedelta(hours=6)  # up to this, a window is read from the minute rollup


def rollup_resolution(window: str) -> str:
    """The reading rollup a window is read from: ``minute`` when short (up to date to the
    minute), ``hour`` otherwise."""
    return "minute" if WINDOWS[window] <= SHORT_WINDOW else "hour"


def hour_index(hours: int) -> pd.DatetimeIndex:
    """The last ``hours`` hour buckets, ending with the current one (UTC, as the rollups).

    From the application's clock — the same host clock as the database's in practice — to save
    a round trip per chart; a clock skew of seconds only shifts which bucket is "current"."""
    end = pd.Timestamp.now(tz="UTC").floor("h")
    return pd.date_range(end=end, periods=hours, freq="h")


def fill_hours(index: pd.DatetimeIndex, rows) -> pd.Series:
    """Counts per hour on ``index`` (zero where no row) from (hour, n) rows."""
    got = {pd.Timestamp(h): int(n or 0) for h, n in rows}
    return pd.Series([got.get(ts, 0) for ts in index], index=index, dtype="int64")


def metric_filter(theme: str, params: dict, column: str = "metric") -> str:
    """`` AND <column> = ANY(:metrics)`` for the theme's metrics (nothing for all themes)."""
    if theme == ALL_THEMES:
        return ""
    params["metrics"] = theme_metrics(theme) or ["-"]
    return f" AND {column} = ANY(:metrics)"


def event_type_filter(theme: str, params: dict, column: str = "type") -> str:
    """`` AND <column> = ANY(:types)`` for the theme's video event types (nothing for all themes)."""
    if theme == ALL_THEMES:
        return ""
    params["types"] = theme_event_types(theme) or ["-"]
    return f" AND {column} = ANY(:types)"


def readings_count(engine, *, scope: str, since: datetime, theme: str = ALL_THEMES) -> int:
    """Readings stored in ``scope`` since ``since``, from the hour rollup (maintained as data
    arrives, so the current hour is in it)."""
    params = {"scope": scope, "since": since}
    sql = ("SELECT COALESCE(sum(n), 0) FROM reading_rollups_hour WHERE adcode = :scope AND bucket >= :since"
           + metric_filter(theme, params))
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar() or 0)


def hourly_readings(engine, *, scope: str, hours: int = 24, theme: str = ALL_THEMES) -> pd.Series:
    """Readings per hour in ``scope`` for the last ``hours`` hours (zero-filled)."""
    index = hour_index(hours)
    params = {"scope": scope, "since": index[0].to_pydatetime()}
    sql = ("SELECT date_trunc('hour', bucket) AS h, sum(n) AS n FROM reading_rollups_hour "
           "WHERE adcode = :scope AND bucket >= :since" + metric_filter(theme, params) + " GROUP BY 1")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql), params).all()
    return fill_hours(index, rows)


def metric_windows(conn, *, scope: str, metrics: list[str], window: str) -> dict[str, tuple]:
    """Mean and max of each metric in ``scope`` over ``window``: metric -> (mean, max)."""
    rows = conn.execute(sa.text(
        f"SELECT metric, sum(vsum) / NULLIF(sum(n), 0), max(vmax) FROM reading_rollups_{rollup_resolution(window)} "
        "WHERE adcode = :scope AND metric = ANY(:metrics) AND bucket >= now() - :win GROUP BY 1"),
        {"scope": scope, "metrics": metrics, "win": WINDOWS[window]}).all()
    return {m: (mean, mx) for m, mean, mx in rows}


def metric_hours(conn, *, scope: str, metrics: list[str], index: pd.DatetimeIndex) -> dict[tuple, tuple]:
    """Hourly mean and max of each metric in ``scope`` on ``index``: (metric, hour) -> (mean, max)."""
    rows = conn.execute(sa.text(
        "SELECT metric, date_trunc('hour', bucket), sum(vsum) / NULLIF(sum(n), 0), max(vmax) "
        "FROM reading_rollups_hour WHERE adcode = :scope AND metric = ANY(:metrics) AND bucket >= :since "
        "GROUP BY 1, 2"), {"scope": scope, "metrics": metrics, "since": index[0].to_pydatetime()}).all()
    return {(m, pd.Timestamp(h)): (mean, mx) for m, h, mean, mx in rows}


def sensor_counts(engine, *, scope: str, theme: str = ALL_THEMES) -> dict:
    """Sensors registered in ``scope``, how many were seen within ONLINE_WITHIN, and
    ``catch_up``: how far (percent, 0-99) the store is through replaying history when the
    newest reading is older than that while the store worker commits (the demo's first minutes:
    its simulator streams the last hours first), else None."""
    col = scope_column(region_tree(engine), scope)
    params = {"scope": scope, "within": ONLINE_WITHIN}
    sql = (f"SELECT count(*), count(*) FILTER (WHERE last_seen >= now() - :within), min(first_seen), "
           f"max(last_seen), now() FROM sensors WHERE {col} = :scope" + metric_filter(theme, params))
    with engine.connect() as conn:
        total, online, first, newest, now = conn.execute(sa.text(sql), params).one()
        behind = bool(total) and not online and newest is not None and newest < now - ONLINE_WITHIN
        replaying = behind and conn.execute(sa.text(STORE_COMMITTING)).scalar()
    return {"total": int(total), "online": int(online),
            "catch_up": catch_up_percent(first, newest, now) if replaying else None}


# The store worker is alive and writing: a heartbeat and a commit within the last minute.
STORE_COMMITTING = ("SELECT EXISTS (SELECT 1 FROM worker_heartbeats WHERE role = 'store' "
                    "AND last_seen > now() - interval '1 minute' AND last_commit_at > now() - interval '1 minute')")


def catch_up_percent(first: datetime, newest: datetime, now: datetime) -> int:
    """How far the readings stored reach from the first one towards now, in percent (0-99:
    100 is "caught up", which is no longer catching up).

    >>> t0 = datetime(2026, 12, 2, 10, 0)
    >>> catch_up_percent(t0, t0 + timedelta(minutes=30), t0 + timedelta(hours=2))
    25
    """
    span = (now - first).total_seconds()
    return max(0, min(99, round(100 * (newest - first).total_seconds() / span))) if span > 0 else 0


def _video_sql(res: str, *, scope: str, theme: str, event_type: str | None, params: dict) -> str:
    """FROM/WHERE over the video rollup of resolution ``res`` for ``scope``."""
    params["scope"] = scope
    sql = f" FROM video_rollups_{res} WHERE adcode = :scope"
    if event_type:
        params["etype"] = event_type
        return sql + " AND type = :etype"
    return sql + event_type_filter(theme, params)


def video_event_count(engine, *, scope: str, since: datetime, theme: str = ALL_THEMES,
                      event_type: str | None = None) -> int:
    """Video events in ``scope`` since ``since``, from the video rollups (minute rollup when
    ``since`` is not on the hour)."""
    params: dict = {"since": since}
    res = "hour" if pd.Timestamp(since).minute == 0 and pd.Timestamp(since).second == 0 else "minute"
    where = _video_sql(res, scope=scope, theme=theme, event_type=event_type, params=params)
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT COALESCE(sum(n), 0){where} AND bucket >= :since"),
                                params).scalar() or 0)


def hourly_video_events(engine, *, scope: str, hours: int = 24, theme: str = ALL_THEMES,
                        event_type: str | None = None) -> pd.Series:
    """Video events per hour in ``scope`` (zero-filled)."""
    index = hour_index(hours)
    params: dict = {"since": index[0].to_pydatetime()}
    where = _video_sql("hour", scope=scope, theme=theme, event_type=event_type, params=params)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT date_trunc('hour', bucket), sum(n){where} "
                                    "AND bucket >= :since GROUP BY 1"), params).all()
    return fill_hours(index, rows)
