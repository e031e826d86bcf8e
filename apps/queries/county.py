"""A county's detail: its sensors (with their worst open alert), cameras, video events, grid
activity, and one sensor's recent readings."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import sqlalchemy as sa

from analytics import ACTIVE_STATUSES
from apps.catalogue import ALL_THEMES, WINDOWS, worst_level
from apps.queries.alerts import alerts_list
from apps.queries.rollups import ONLINE_WITHIN, event_type_filter, metric_filter
from apps.view_cache import memo


def _rows(engine, sql: str, params: dict, columns: list[str]) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.DataFrame([dict(r._mapping) for r in conn.execute(sa.text(sql), params)], columns=columns)


@memo
def county_sensors(engine, *, county: str, theme: str = ALL_THEMES,
                   alerts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Sensors of a county with position, metric, online flag and worst open alert level
    (``alerts``: the county's alerts when the caller has them already; open ones are used)."""
    cols = ["sensor_id", "metric", "lon", "lat", "online", "last_value", "level"]
    params = {"scope": county, "within": ONLINE_WITHIN}
    sql = ("SELECT sensor_id, metric, ST_X(geom) AS lon, ST_Y(geom) AS lat, "
           "(last_seen >= now() - :within) AS online, last_value FROM sensors WHERE county = :scope"
           + metric_filter(theme, params) + " ORDER BY sensor_id")
    df = _rows(engine, sql, params, cols[:-1])
    df["level"] = "none"
    if df.empty:
        return df
    if alerts is None:
        alerts = alerts_list(engine, scope=county, theme=theme)
    elif not alerts.empty:
        alerts = alerts[alerts["status"].isin(ACTIVE_STATUSES)]
    if not alerts.empty:
        worst: dict[str, str] = {}
        for subj, lv in zip(alerts["subject"], alerts["level"]):
            sid = str(subj or "").removeprefix("sensor:")
            worst[sid] = worst_level([worst.get(sid, "none"), lv])
        df["level"] = df["sensor_id"].map(worst).fillna("none")
    return df


@memo
def county_cameras(engine, *, county: str) -> pd.DataFrame:
    return _rows(engine, "SELECT camera_id, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM cameras WHERE county = :c",
                 {"c": county}, ["camera_id", "lon", "lat"])


@memo
def county_events(engine, *, county: str, window: str = "24h", theme: str = ALL_THEMES,
                  limit: int = 2000) -> pd.DataFrame:
    """Recent video events of a county (newest first, bounded)."""
    params = {"c": county, "win": WINDOWS[window], "limit": limit}
    sql = ("SELECT event_id, camera_id, type, ts, ST_X(geom) AS lon, ST_Y(geom) AS lat, grid_id "
           "FROM video_events WHERE county = :c AND ts >= now() - :win"
           + event_type_filter(theme, params) + " ORDER BY ts DESC LIMIT :limit")
    return _rows(engine, sql, params, ["event_id", "camera_id", "type", "ts", "lon", "lat", "grid_id"])


@memo
def county_event_clusters(engine, *, county: str, window: str = "24h", theme: str = ALL_THEMES) -> pd.DataFrame:
    """Video events of a county in ``window`` aggregated per camera (where they happen): mean
    position, count ``n`` and the most frequent ``type`` — the map draws one marker per camera,
    however many events there are."""
    params = {"c": county, "win": WINDOWS[window]}
    sql = ("SELECT avg(ST_X(geom)) AS lon, avg(ST_Y(geom)) AS lat, count(*) AS n, "
           "mode() WITHIN GROUP (ORDER BY type) AS type FROM video_events "
           "WHERE county = :c AND ts >= now() - :win" + event_type_filter(theme, params)
           + " GROUP BY camera_id ORDER BY n DESC")
    return _rows(engine, sql, params, ["lon", "lat", "n", "type"])


@memo
def grid_activity(engine, *, county: str, window: str = "24h", theme: str = ALL_THEMES) -> dict:
    """GeoJSON of the county's grid cells that had video events in ``window``, with the count
    (cells without activity are left out: the county boundary is drawn underneath)."""
    params = {"c": county, "win": WINDOWS[window]}
    sql = ("WITH a AS (SELECT grid_id, count(*) AS n FROM video_events WHERE county = :c "
           "AND ts >= now() - :win AND grid_id IS NOT NULL AND grid_id <> ''"
           + event_type_filter(theme, params) + " GROUP BY grid_id) "
           "SELECT a.grid_id, a.n, ST_AsGeoJSON(ST_ForcePolygonCW(g.geom), 5) FROM a JOIN grid_cells g USING (grid_id)")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql), params).all()
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": gid, "properties": {"grid_id": gid, "n": int(n)},
         "geometry": json.loads(geom)} for gid, n, geom in rows]}


def sensor_series(engine, *, sensor_id: str, hours: int = 24, max_points: int = 2000) -> pd.DataFrame:
    """Readings of ONE sensor over the last ``hours`` (the only raw-readings query of the views:
    bounded by sensor and time, served by the (sensor_id, ts) index)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT ts, value, metric FROM readings WHERE sensor_id = :s AND ts >= now() - :h "
            "ORDER BY ts DESC LIMIT :lim"),
            {"s": sensor_id, "h": timedelta(hours=hours), "lim": max_points}).all()
    df = pd.DataFrame(rows, columns=["ts", "value", "metric"])
    return df.iloc[::-1].reset_index(drop=True)
