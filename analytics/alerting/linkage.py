"""Linkage across levels (三级联动): roll-up, escalation up, silences and inhibition.

- **Roll-up** lives in the database: a trigger on ``alerts`` keeps ``alert_rollup`` (open alerts
  per region at every level by theme, level and status) and ``region_alert_status`` (open total,
  unacknowledged, worst level) by deltas. :func:`refresh_sensors` adds "N of M sensors offline".
  The readers here (:func:`region_status`, :func:`children_status`) never touch raw alerts.
- **Escalation up** (:func:`escalate_due`): red at once, orange (or any configured level)
  unacknowledged for N minutes, several counties of a city alerting for one theme. Each step sets
  where the alert is visible (``alert_handling.visible_at``) and is recorded in its history.
- **Silences** stop notifications in a region subtree for a time window (optionally only some
  themes or metrics); the alerts are kept.
- **Inhibition**: an active umbrella alert (a county power outage) inhibits the notifications of
  target alerts ("sensor offline") in the same county; recorded once in the target's history.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from analytics.alerting.config import AlertingConfig, AlertingError, load_alerting
from analytics.alerting.lifecycle import (
    append_history,
    checked_now,
    load_alert,
    rank_in_path,
    region_path,
)
from analytics.levels import LEVEL_NAMES, LEVELS, rank
from analytics.statuses import ACTIVE_SQL, ACTIVE_STATUSES
from geo import region_path_sql

log = logging.getLogger(__name__)
ESCALATION_ACTOR = "system:escalation"


def region_label(engine, code: str) -> str:
    """``天河区 (440106)`` when the regions are loaded, else the code."""
    try:
        from geo import RegionTree

        return f"{RegionTree.from_db(engine).name(code)} ({code})"
    except Exception:  # noqa: BLE001 - names are a nicety; no regions loaded is fine
        return code


# ------------------------------------------------------------------------------------ roll-up
def region_status(engine, adcode: str) -> dict:
    """One region's live state: open alerts by level and by theme, worst level, unacknowledged,
    and sensors offline (from the roll-up tables only)."""
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM region_alert_status WHERE adcode = :a"), {"a": adcode}
                           ).mappings().first()
        parts = conn.execute(sa.text("SELECT theme, level, sum(n) AS n FROM alert_rollup WHERE adcode = :a "
                                     "GROUP BY theme, level HAVING sum(n) > 0"), {"a": adcode}).all()
    out = {"adcode": adcode, "open_total": 0, "unacknowledged": 0, "worst_level": None, "sensors_total": 0,
           "sensors_offline": 0, "by_level": dict.fromkeys(LEVELS, 0), "by_theme": {}}
    if row is not None:
        out.update({k: row[k] for k in ("region_level", "parent", "open_total", "unacknowledged", "worst_level",
                                        "sensors_total", "sensors_offline", "updated_at")})
    for theme, level, n in parts:
        out["by_level"][level] += int(n)
        out["by_theme"][theme] = out["by_theme"].get(theme, 0) + int(n)
    return out


def children_status(engine, parent: str) -> list[dict]:
    """The state of every child region of ``parent`` that has alerts or sensors (what the province
    sees of each city, and a city of each county), worst first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT s.*, coalesce((SELECT jsonb_object_agg(level, n) FROM (SELECT level, sum(n) AS n FROM "
            "alert_rollup r WHERE r.adcode = s.adcode GROUP BY level HAVING sum(n) > 0) q), '{}') AS by_level "
            "FROM region_alert_status s WHERE s.parent = :p"), {"p": parent}).mappings().all()
    out = [dict(r) for r in rows]
    out.sort(key=lambda r: (-rank(r["worst_level"]), -r["open_total"], r["adcode"]))
    return out


def refresh_sensors(engine, *, now: datetime | None = None, config: AlertingConfig | None = None) -> int:
    """Recount "N of M sensors offline" per region from the sensor registry (``sensors.last_seen``);
    returns how many regions were written. Offline is a matter of time passing, so this runs on the
    notifier's tick rather than on writes.

    Time is the stream's clock — the newest ``last_seen`` of any sensor, never later than ``now``
    — like the live detector's offline rule: a replay or a simulation that runs behind the wall
    clock does not make every sensor "offline"."""
    now, cfg = checked_now(now), config or load_alerting()
    with engine.begin() as conn:
        if conn.execute(sa.text("SELECT to_regclass('sensors') IS NULL")).scalar():
            return 0
        newest = conn.execute(sa.text("SELECT max(last_seen) FROM sensors")).scalar()
        cut = min(now, newest or now) - timedelta(seconds=cfg.offline_after)
        res = conn.execute(sa.text(f"""
            WITH s AS (SELECT trim(county) AS county, trim(city) AS city, trim(province) AS province,
                              last_seen < :cut AS off FROM sensors),
            e AS (SELECT x.adcode AS a, x.region_level AS lvl, x.parent AS p, s.off
                  FROM s CROSS JOIN LATERAL {region_path_sql('s.county', 's.city', 's.province', alias='x')}
                  WHERE x.adcode IS NOT NULL)
            INSERT INTO region_alert_status AS r (adcode, region_level, parent, sensors_total, sensors_offline,
                                                  sensors_at, updated_at)
            SELECT a, min(lvl), min(p), count(*), count(*) FILTER (WHERE off), :now, :now FROM e
            WHERE a <> '' GROUP BY a ORDER BY a
            ON CONFLICT (adcode) DO UPDATE SET sensors_total = EXCLUDED.sensors_total,
                sensors_offline = EXCLUDED.sensors_offline, sensors_at = EXCLUDED.sensors_at
        """), {"cut": cut, "now": now})
        return res.rowcount or 0


# --------------------------------------------------------------------------------- escalation
def next_region_up(alert: dict) -> str | None:
    """The region one level above where the alert is visible now (None at the top).

    >>> next_region_up({"adcode": "440106", "city": "440100", "province": "440000", "visible_at": "440106"})
    '440100'
    >>> next_region_up({"adcode": "440106", "city": "440100", "province": "440000", "visible_at": "440000"})
    """
    path = region_path(alert)
    r = max(rank_in_path(alert, alert.get("visible_at") or path[0]), 0)
    return path[r + 1] if r + 1 < len(path) else None


def escalate(conn, alert: dict, *, to_region: str, reason: str, now: datetime,
             actor: str = ESCALATION_ACTOR) -> bool:
    """Make the alert visible (and notified) at ``to_region``; recorded in its history. False when
    it is already visible there or higher, or no longer active."""
    if alert["status"] not in ACTIVE_STATUSES:
        return False
    if rank_in_path(alert, to_region) <= rank_in_path(alert, alert["visible_at"]):
        return False
    conn.execute(sa.text("UPDATE alert_handling SET visible_at = :r, escalated_at = :now, "
                         "escalation_reason = :why, updated_at = :now WHERE alert_id = :id"),
                 {"r": to_region, "now": now, "why": reason, "id": alert["id"]})
    reason_zh, _, reason_en = reason.partition(" / ")  # the reasons are written "中文 / English"
    append_history(conn, alert, action="escalated_up", actor=actor, ts=now,
                   note=f"上报至 {to_region}：{reason_zh} / escalated to {to_region}: {reason_en or reason_zh}")
    alert.update(visible_at=to_region, escalated_at=now, escalation_reason=reason)
    return True


def _zh(level: str) -> str:
    """A level's Chinese name for the reasons written in the history (红色, 橙色, …)."""
    return LEVEL_NAMES.get(level, (level, level))[0]


def _theme_label(theme: str) -> tuple[str, str]:
    """A theme's names (``ingest/catalogue.yaml``), for the notes a person reads; the id if unknown."""
    from ingest import load_catalogue

    t = load_catalogue().themes.get(theme) or {}
    return t.get("label_zh") or theme, t.get("label_en") or theme


def escalate_immediate(conn, alert: dict, *, now: datetime, config: AlertingConfig) -> str | None:
    """Red (the configured immediate levels) goes one level up at once; returns the region."""
    if alert["status"] not in ACTIVE_STATUSES or alert["level"] not in config.immediate_levels:
        return None
    if rank_in_path(alert, alert["visible_at"]) > 0:
        return None  # already above its county
    up = next_region_up(alert)
    if up and escalate(conn, alert, to_region=up, now=now,
                       reason=f"{_zh(alert['level'])}预警立即上报 / {alert['level']} alerts go up at once"):
        return up
    return None


def stream_clock(conn, now: datetime) -> datetime:
    """The time the stream has reached: the newest reading of any sensor (``sensors.last_seen``),
    never later than ``now``; ``now`` when there are no sensors.

    "Not acknowledged for 15 minutes" is measured on this clock, as the sensors-offline count and
    the detector's offline rule are: while a restarted platform replays hours of history, the wall
    clock would find every replayed alert long unacknowledged and escalate it at once — before the
    replay reaches the readings that clear it. (The price, shared with those rules: when every
    sensor falls silent, the clock stops.)"""
    if conn.execute(sa.text("SELECT to_regclass('sensors') IS NULL")).scalar():
        return now
    newest = conn.execute(sa.text("SELECT max(last_seen) FROM sensors")).scalar()
    return min(now, newest) if newest is not None else now


def escalate_due(engine, *, now: datetime | None = None, config: AlertingConfig | None = None
                 ) -> list[tuple[str, str]]:
    """Apply every escalation rule once; returns ``(alert_id, region)`` for each step taken.

    Only active alerts (open, acknowledged, dispatched) escalate, each re-read under its lock, so
    one resolved or closed meanwhile is left alone; time-based steps use :func:`stream_clock`."""
    now, cfg = checked_now(now), config or load_alerting()
    done: list[tuple[str, str]] = []
    with engine.begin() as conn:
        clock = stream_clock(conn, now)
        # 1. Immediate levels (an alert that became red after it opened is caught here too).
        if cfg.immediate_levels:
            ids = conn.execute(sa.text(
                "SELECT a.id FROM alerts a JOIN alert_handling h ON h.alert_id = a.id "
                f"WHERE a.status IN {ACTIVE_SQL} AND a.level = ANY(:lv) "
                "AND h.visible_at = trim(a.adcode) ORDER BY a.id"), {"lv": list(cfg.immediate_levels)}).scalars().all()
            for aid in ids:
                a = load_alert(conn, aid, lock=True)
                up = escalate_immediate(conn, a, now=now, config=cfg)
                if up:
                    done.append((aid, up))
        # 2. Unacknowledged too long at its current level of visibility: one more level up.
        for level, after in cfg.unacknowledged.items():
            ids = conn.execute(sa.text(
                "SELECT a.id FROM alerts a JOIN alert_handling h ON h.alert_id = a.id "
                "WHERE a.status = 'open' AND a.level = :lv AND h.visible_at <> trim(a.province) "
                "AND coalesce(h.escalated_at, a.first_seen) <= :cut ORDER BY a.id"),
                {"lv": level, "cut": clock - timedelta(seconds=after)}).scalars().all()
            for aid in ids:
                a = load_alert(conn, aid, lock=True)
                if a["status"] != "open":  # acknowledged (or finished) since it was selected
                    continue
                up = next_region_up(a)
                if up and escalate(conn, a, to_region=up, now=clock, reason=(
                        f"{_zh(level)}预警 {after / 60:g} 分钟未确认 / {level} alert not acknowledged "
                        f"within {after / 60:g} min")):
                    done.append((aid, up))
        # 3. Several counties of one city alerting for the same theme: read from the roll-up.
        levels = [lv for lv in LEVELS if rank(lv) >= rank(cfg.cluster_min_level)]
        clusters = conn.execute(sa.text(
            "SELECT parent, theme, count(DISTINCT adcode) AS counties FROM alert_rollup "
            "WHERE region_level = 'county' AND n > 0 AND level = ANY(:lv) AND parent IS NOT NULL "
            "GROUP BY parent, theme HAVING count(DISTINCT adcode) >= :k ORDER BY parent, theme"),
            {"lv": levels, "k": cfg.cluster_min_counties}).all()
        for city, theme, counties in clusters:
            ids = conn.execute(sa.text(
                "SELECT a.id FROM alerts a JOIN alert_handling h ON h.alert_id = a.id "
                "WHERE a.city = :city AND a.theme = :theme AND a.level = ANY(:lv) "
                f"AND a.status IN {ACTIVE_SQL} AND h.visible_at = trim(a.adcode) "
                "ORDER BY a.id"), {"city": city, "theme": theme, "lv": levels}).scalars().all()
            for aid in ids:
                a = load_alert(conn, aid, lock=True)
                theme_zh, theme_en = _theme_label(theme)
                if escalate(conn, a, to_region=city, now=now, reason=(
                        f"{city} 有 {counties} 个区县同时发生{theme_zh}预警 / {counties} counties of {city} "
                        f"alerting for {theme_en.lower()} at once")):
                    done.append((aid, city))
    if done:
        log.info("escalated %d alert step(s)", len(done))
    return done


def alerts_for_region(engine, region: str, *, statuses: Iterable[str] = ACTIVE_STATUSES, limit: int = 200) -> list[dict]:
    """Alerts a region must see as its own: owned by it, dispatched to it (or to one of its grid
    units), or escalated to it."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT a.id, a.level, a.theme, a.title, a.status, trim(a.adcode) AS adcode, a.first_seen, "
            "h.owner_region, h.visible_at, h.assigned_unit, h.assigned_region, h.due_at, h.overdue_at "
            "FROM alerts a JOIN alert_handling h ON h.alert_id = a.id "
            "WHERE a.status = ANY(:st) AND (h.owner_region = :r OR h.visible_at = :r OR h.assigned_region = :r "
            "OR h.assigned_region LIKE :grid) ORDER BY a.first_seen DESC LIMIT :n"),
            {"st": list(statuses), "r": region, "grid": f"{region}-%", "n": limit}).mappings().all()
    return [dict(r) for r in rows]


def escalated_to(engine, region: str, *, limit: int = 200) -> list[dict]:
    """Active alerts escalated to ``region`` that it does not handle yet: what its duty desk must
    take over (or leave with the region below), oldest escalation first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT a.id, a.level, a.theme, a.title, a.status, trim(a.adcode) AS adcode, a.first_seen, a.last_seen, "
            "h.owner_region, h.visible_at, h.escalated_at, h.escalation_reason, h.assigned_unit, h.due_at "
            "FROM alerts a JOIN alert_handling h ON h.alert_id = a.id "
            f"WHERE a.status IN {ACTIVE_SQL} AND h.visible_at = :r AND h.owner_region <> :r "
            "ORDER BY h.escalated_at NULLS LAST, a.id LIMIT :n"), {"r": region, "n": limit}).mappings().all()
    return [dict(r) for r in rows]


def overdue(engine, region: str, *, now: datetime | None = None, limit: int = 200) -> list[dict]:
    """Dispatched alerts of ``region``'s subtree past their due time (督办), most overdue first,
    with ``overdue_min`` (whole minutes past the due time at ``now``)."""
    now = checked_now(now)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT a.id, a.level, a.theme, a.title, a.status, trim(a.adcode) AS adcode, h.owner_region, "
            "h.assigned_unit, h.assigned_region, h.dispatched_at, h.dispatched_by, h.due_at, h.overdue_at, "
            "floor(extract(epoch FROM :now - h.due_at) / 60)::int AS overdue_min "
            "FROM alerts a JOIN alert_handling h ON h.alert_id = a.id "
            "WHERE a.status = 'dispatched' AND h.due_at < :now AND :r IN (a.adcode, a.city, a.province) "
            "ORDER BY h.due_at, a.id LIMIT :n"), {"r": region, "now": now, "n": limit}).mappings().all()
    return [dict(r) for r in rows]


# ----------------------------------------------------------------------------------- silences
def add_silence(engine, *, adcode: str, starts_at: datetime, ends_at: datetime, reason: str, created_by: str,
                themes: Iterable[str] = (), metrics: Iterable[str] = ()) -> int:
    """A maintenance silence: notifications stop in ``adcode``'s subtree for the window (alerts kept)."""
    if not adcode or not (adcode.isdigit() and len(adcode) == 6):
        raise AlertingError(f"silence region {adcode!r} is not a six-digit adcode")
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise AlertingError("silence times need a time-zone offset, e.g. 2026-06-01T22:00:00+08:00")
    if ends_at <= starts_at:
        raise AlertingError("a silence must end after it starts")
    if not (reason or "").strip():
        raise AlertingError("say why the region is silenced (--reason), e.g. 泵站检修")
    with engine.begin() as conn:
        return int(conn.execute(sa.text(
            "INSERT INTO alert_silences (adcode, themes, metrics, starts_at, ends_at, reason, created_by) "
            "VALUES (:a, :t, :m, :s, :e, :r, :by) RETURNING id"),
            {"a": adcode, "t": list(themes), "m": list(metrics), "s": starts_at, "e": ends_at,
             "r": reason.strip(), "by": created_by}).scalar())


def list_silences(engine, *, now: datetime | None = None, include_expired: bool = False) -> list[dict]:
    now = checked_now(now)
    sql = "SELECT * FROM alert_silences" + ("" if include_expired else " WHERE ends_at > :now") + " ORDER BY id"
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql), {"now": now}).mappings()]


def expire_silence(engine, silence_id: int, *, now: datetime | None = None) -> None:
    """End a silence now (kept for the record, not deleted)."""
    now = checked_now(now)
    with engine.begin() as conn:
        n = conn.execute(sa.text("UPDATE alert_silences SET ends_at = greatest(starts_at + interval '1 second', "
                                 ":now) WHERE id = :id AND ends_at > :now"), {"id": silence_id, "now": now}).rowcount
    if not n:
        raise AlertingError(f"no active silence {silence_id}; list them with `tongguan alerts silences`")


def alert_metric(alert: dict) -> str | None:
    detail = alert.get("detail") or {}
    return detail.get("metric") if isinstance(detail, dict) else None


def silence_for(alert: dict, silences: Iterable[dict], now: datetime) -> dict | None:
    """The first silence covering ``alert`` at ``now`` (pure; the caller loads the silences)."""
    path = set(region_path(alert))
    metric = alert_metric(alert)
    for s in silences:
        if not (s["starts_at"] <= now < s["ends_at"]):
            continue
        if s["adcode"] not in path:
            continue
        if s["themes"] and alert["theme"] not in s["themes"]:
            continue
        if s["metrics"] and metric not in s["metrics"]:
            continue
        return s
    return None


# --------------------------------------------------------------------------------- inhibition
def _matches(source: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(source or "", p) for p in patterns)


def inhibitor_of(conn, alert: dict, *, config: AlertingConfig) -> dict | None:
    """The active umbrella alert inhibiting ``alert`` (same county), if any."""
    rules = [r for r in config.inhibit if _matches(alert["source"], r.target_sources)]
    if not rules or alert["status"] not in ACTIVE_STATUSES:
        return None
    rows = conn.execute(sa.text(
        "SELECT id, source, level, title FROM alerts WHERE adcode = :ad AND id <> :id "
        f"AND status IN {ACTIVE_SQL} ORDER BY first_seen"),
        {"ad": alert["adcode"], "id": alert["id"]}).mappings().all()
    for rule in rules:
        for u in rows:
            if _matches(u["source"], rule.umbrella_sources) and rank(u["level"]) >= rank(rule.umbrella_min_level):
                return {**dict(u), "rule": rule.name}
    return None


def record_inhibition(conn, alert: dict, umbrella: dict, *, now: datetime) -> bool:
    """Record (once) that ``umbrella`` inhibits ``alert``'s notifications."""
    if alert.get("inhibited_by") == umbrella["id"]:
        return False
    conn.execute(sa.text("UPDATE alert_handling SET inhibited_by = :u, updated_at = :now WHERE alert_id = :id"),
                 {"u": umbrella["id"], "now": now, "id": alert["id"]})
    append_history(conn, alert, action="inhibited", actor="system:notify", ts=now, note=(
        f"被 {umbrella['title']} ({umbrella['id']}) 抑制通知 / notifications inhibited by umbrella alert "
        f"{umbrella['id']} ({umbrella['rule']})"))
    alert["inhibited_by"] = umbrella["id"]
    return True


def describe(alert: dict) -> dict[str, Any]:
    """Where an alert stands in the linkage, for the CLI and the views."""
    return {k: alert.get(k) for k in ("owner_region", "visible_at", "escalated_at", "escalation_reason",
                                      "assigned_unit", "assigned_region", "due_at", "overdue_at",
                                      "inhibited_by", "reopened", "false_alarm")}
