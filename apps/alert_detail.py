"""What the alert page (``/alert/<id>``) shows of one alert, read in one place.

- the alert with its handling state (owner, escalation, dispatch with unit and due time);
- its **timeline**: every transition of ``alert_history`` and every notification delivery (the
  subscription, channel, status and attempts), oldest first;
- the **readings** that raised it (the sensor's series around the alert) with the rule's
  thresholds;
- **cameras** within ``NEARBY_M`` of it and their recent events (snapshot URI when present);
- the **corroborating** alerts: other sensors of its theme within ``NEARBY_M`` alerting in the
  same hours, and the video corroboration recorded in its history;
- its **incident** (the repeated alerts of its sensor, place and theme).

Inside a request the queries run under the caller's row-level security (``apps.scope``), and
the alert itself is read through :func:`apps.api_queries.alert`, which answers 404 for an alert
that does not exist or lies outside the caller's region.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from apps.api_queries import alert as scoped_alert
from apps.scope import Scope

NEARBY_M = 3000.0  # as the detector's corroboration radius (analytics.engine.NEIGHBOUR_M)
READINGS_BEFORE = timedelta(hours=2)
READINGS_AFTER = timedelta(minutes=30)


def sensor_of(alert: dict) -> str | None:
    """The sensor an alert is about (``sensor:<id>`` subject, or ``detail.sensor_id``)."""
    subject = str(alert.get("subject") or "")
    if subject.startswith("sensor:"):
        return subject.split(":", 1)[1]
    detail = alert.get("detail") or {}
    return detail.get("sensor_id") if isinstance(detail, dict) else None


def timeline(conn, alert_id: str) -> list[dict]:
    """History and deliveries of the alert as one list, oldest first: ``ts``, ``kind``
    (``history`` | ``delivery``), and the fields of each."""
    out = [{"kind": "history", **dict(r)} for r in conn.execute(sa.text(
        "SELECT ts, action, actor, level, status, note FROM alert_history WHERE alert_id = :id ORDER BY ts, id"),
        {"id": alert_id}).mappings()]
    out += [{"kind": "delivery", **dict(r)} for r in conn.execute(sa.text(
        "SELECT d.created_at AS ts, d.channel, d.status AS delivery_status, d.attempts, d.sent_at, d.last_error, "
        "s.name AS subscription, s.owner AS recipient FROM notification_deliveries d "
        "JOIN subscriptions s ON s.id = d.subscription_id WHERE :id = ANY(d.alert_ids) ORDER BY d.created_at, d.key"),
        {"id": alert_id}).mappings()]
    out.sort(key=lambda e: (e["ts"], 0 if e["kind"] == "history" else 1))
    return out


def readings(conn, alert: dict, *, max_points: int = 2000) -> list[dict]:
    """The sensor's readings from two hours before the alert to half an hour after its last
    observation: ``ts``, ``metric``, ``value``."""
    sensor = sensor_of(alert)
    if not sensor:
        return []
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT ts, metric, value FROM readings WHERE sensor_id = :s AND ts BETWEEN :a AND :b ORDER BY ts LIMIT :n"),
        {"s": sensor, "a": alert["first_seen"] - READINGS_BEFORE, "b": alert["last_seen"] + READINGS_AFTER,
         "n": max_points}).mappings()]


def nearby_cameras(conn, alert_id: str, *, radius_m: float = NEARBY_M, events_per_camera: int = 5,
                   hours: float = 24) -> list[dict]:
    """Cameras within ``radius_m`` of the alert, nearest first, each with its recent events (the
    ``hours`` up to the alert's last observation, newest first, snapshot URI when present)."""
    cams = [dict(r) for r in conn.execute(sa.text(
        "SELECT c.camera_id, round(ST_Distance(c.geom::geography, a.geom::geography))::int AS distance_m, "
        "a.last_seen FROM alerts a JOIN cameras c ON ST_DWithin(c.geom::geography, a.geom::geography, :r) "
        "WHERE a.id = :id AND a.geom IS NOT NULL ORDER BY 2, 1 LIMIT 20"), {"id": alert_id, "r": radius_m}).mappings()]
    for cam in cams:
        cam["events"] = [dict(r) for r in conn.execute(sa.text(
            "SELECT event_id, ts, type, confidence, count, snapshot_uri FROM video_events WHERE camera_id = :c "
            "AND ts BETWEEN :a AND :b ORDER BY ts DESC LIMIT :n"),
            {"c": cam["camera_id"], "a": cam["last_seen"] - timedelta(hours=hours),
             "b": cam["last_seen"] + READINGS_AFTER, "n": events_per_camera}).mappings()]
        del cam["last_seen"]
    return cams


def corroborating(conn, alert: dict, *, radius_m: float = NEARBY_M) -> list[dict]:
    """Other sensors' alerts of the same theme within ``radius_m`` whose time overlaps this
    alert's (an hour either side), nearest first."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT o.id, o.level, o.status, o.title, o.subject, o.first_seen, o.last_seen, "
        "round(ST_Distance(o.geom::geography, a.geom::geography))::int AS distance_m "
        "FROM alerts a JOIN alerts o ON o.theme = a.theme AND o.id <> a.id AND o.subject <> a.subject "
        "AND o.subject LIKE 'sensor:%' AND ST_DWithin(o.geom::geography, a.geom::geography, :r) "
        "AND o.first_seen <= a.last_seen + interval '1 hour' AND o.last_seen >= a.first_seen - interval '1 hour' "
        "WHERE a.id = :id AND a.geom IS NOT NULL ORDER BY distance_m, o.id LIMIT 20"),
        {"id": alert["id"], "r": radius_m}).mappings()]


def alert_detail(engine, scope: Scope, alert_id: str) -> dict:
    """Everything the alert page shows (see the module docstring); AccessError 404 when the alert
    does not exist or is outside the caller's region."""
    from analytics.alerting.incidents import incident, incident_of
    from apps.queries import thresholds

    out = scoped_alert(engine, scope, alert_id, history=False)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT first_seen, last_seen, subject FROM alerts WHERE id = :id"),
                           {"id": str(alert_id)}).mappings().one()
        base = {**out, **dict(row)}
        out["timeline"] = timeline(conn, str(alert_id))
        out["readings"] = readings(conn, base)
        out["sensor_id"] = sensor_of(base)
        metric = (out.get("detail") or {}).get("metric") if isinstance(out.get("detail"), dict) else None
        if not metric and out["readings"]:
            metric = out["readings"][-1]["metric"]
        out["metric"] = metric
        out["thresholds"] = thresholds(metric, (out["province"], out["city"], out["adcode"])) if metric else {}
        out["cameras"] = nearby_cameras(conn, str(alert_id))
        out["corroborating"] = corroborating(conn, base)
        inc = incident_of(conn, str(alert_id))
        out["incident"] = incident(conn, inc) if inc is not None else None
    return out
