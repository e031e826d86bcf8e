"""Incidents (事件): repeated alerts of one sensor, place and theme, read as one case.

The grouping itself is the database's (migration 0010: a trigger on ``alerts`` puts every new
alert into the live incident of its subject, county and theme, or opens one), so it is the same
for every writer. This module reads incidents: their alerts, count, worst level, status and
times are derived from the alerts each time, never stored twice.

An incident is *active* while one of its alerts is active (open, acknowledged, dispatched).
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from analytics.levels import LEVELS
from analytics.statuses import ACTIVE_SQL

_LEVEL_RANK = "array_position(ARRAY[" + ", ".join(f"'{lv}'" for lv in LEVELS) + "], {col})"

_SUMMARY = f"""
    SELECT i.id, i.subject, i.adcode, i.city, i.province, i.theme, i.title, i.first_seen,
           count(*) AS alerts, max(a.last_seen) AS last_seen,
           count(*) FILTER (WHERE a.status IN {ACTIVE_SQL}) AS active_alerts,
           (array_agg(a.level ORDER BY {_LEVEL_RANK.format(col='a.level')} DESC))[1] AS worst_level,
           (array_agg(a.level ORDER BY a.first_seen DESC, a.id DESC))[1] AS latest_level,
           (array_agg(a.id ORDER BY a.first_seen DESC, a.id DESC))[1] AS latest_alert,
           array_agg(a.id ORDER BY a.first_seen, a.id) AS alert_ids
    FROM alert_incidents i
    JOIN alert_handling h ON h.incident_id = i.id
    JOIN alerts a ON a.id = h.alert_id
"""


def _shape(row) -> dict:
    d = dict(row._mapping)
    d["status"] = "active" if d["active_alerts"] else "finished"
    d["alerts"], d["active_alerts"] = int(d["alerts"]), int(d["active_alerts"])
    return d


def incidents(conn_or_engine, *, region: str | None = None, active_only: bool = True,
              themes: Iterable[str] = (), limit: int = 200) -> list[dict]:
    """Incidents of ``region``'s subtree (all when None), worst and newest first: id, title,
    theme, subject, place, alerts, active_alerts, worst_level, latest_level, latest_alert,
    alert_ids, first_seen, last_seen, status (active | finished)."""
    where, params = [], {"n": int(limit)}
    if region:
        where.append(":r IN (i.adcode, i.city, i.province)")
        params["r"] = region
    themes = list(themes)
    if themes:
        where.append("i.theme = ANY(:th)")
        params["th"] = themes
    sql = _SUMMARY + (" WHERE " + " AND ".join(where) if where else "") + " GROUP BY i.id"
    if active_only:
        sql += f" HAVING bool_or(a.status IN {ACTIVE_SQL})"
    sql += f" ORDER BY max({_LEVEL_RANK.format(col='a.level')}) DESC, max(a.last_seen) DESC, i.id DESC LIMIT :n"
    return _run(conn_or_engine, lambda c: [_shape(r) for r in c.execute(sa.text(sql), params)])


def incident(conn_or_engine, incident_id: int) -> dict | None:
    """One incident with its alerts (oldest first: id, level, status, title, first/last seen)."""
    def read(conn):
        row = conn.execute(sa.text(_SUMMARY + " WHERE i.id = :id GROUP BY i.id"), {"id": int(incident_id)}).first()
        if row is None:
            return None
        out = _shape(row)
        out["alert_rows"] = [dict(r) for r in conn.execute(sa.text(
            "SELECT a.id, a.level, a.status, a.title, a.first_seen, a.last_seen, a.count, h.owner_region, "
            "h.assigned_unit FROM alerts a JOIN alert_handling h ON h.alert_id = a.id WHERE h.incident_id = :id "
            "ORDER BY a.first_seen, a.id"), {"id": int(incident_id)}).mappings()]
        return out
    return _run(conn_or_engine, read)


def incident_of(conn_or_engine, alert_id: str) -> int | None:
    """The incident an alert belongs to."""
    return _run(conn_or_engine, lambda c: c.execute(sa.text(
        "SELECT incident_id FROM alert_handling WHERE alert_id = :id"), {"id": str(alert_id)}).scalar())


def _run(conn_or_engine, fn):
    if isinstance(conn_or_engine, sa.Engine):
        with conn_or_engine.connect() as conn:
            return fn(conn)
    return fn(conn_or_engine)

