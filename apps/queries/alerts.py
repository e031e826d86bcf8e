"""The alerts the views show: per-region state, lists, the ticker, counts per hour and theme."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from analytics import ACTIVE_STATUSES, LEVELS
from apps.catalogue import ALL_THEMES, WINDOWS, level_rank, worst_level
from apps.live import ticker_order
from apps.queries.regions import child_of, region_tree, safe_name, scope_column
from apps.queries.rollups import fill_hours, hour_index
from apps.view_cache import memo

# The SELECT list of alerts_list over ``alerts a LEFT JOIN alert_handling h``.
_ALERT_COLUMNS = (
    "a.id, a.level, a.status, a.adcode, a.first_seen, a.last_seen, a.theme, a.title, a.source, a.count, "
    "a.city, a.province, a.subject, ST_X(ST_PointOnSurface(a.geom)) AS lon, "
    "ST_Y(ST_PointOnSurface(a.geom)) AS lat, h.visible_at AS escalated_to, h.escalated_at, h.owner_region, "
    "h.overdue_at, h.assigned_region, h.incident_id, a.detail->>'title_en' AS title_en")


def _scope_sql(tree, scope: str, alias: str = "") -> tuple[str, dict]:
    """WHERE clause that keeps the alerts inside ``scope`` (enforced in the query)."""
    return f"{alias}{scope_column(tree, scope, county_column='adcode')} = :scope", {"scope": scope}


def _theme_sql(theme: str, params: dict, alias: str = "") -> str:
    if theme == ALL_THEMES:
        return ""
    params["theme"] = theme
    return f" AND {alias}theme = :theme"


@memo
def region_state(engine, *, scope: str, theme: str = ALL_THEMES) -> pd.DataFrame:
    """Open alerts of each child of ``scope`` by level: one row per child (all children, also
    the quiet ones), columns adcode, name, blue, yellow, orange, red, open, worst, rank.

    Sorted most serious first (the ranking); the map colours by ``worst``.
    """
    tree = region_tree(engine)
    where, params = _scope_sql(tree, scope)
    params["statuses"] = list(ACTIVE_STATUSES)
    sql = (f"SELECT adcode, level, count(*) AS n FROM alerts WHERE {where} AND status = ANY(:statuses)"
           + _theme_sql(theme, params) + " GROUP BY adcode, level")
    return _state_of(engine, tree, scope, sql, params)


def region_state_at(engine, *, scope: str, at: datetime, theme: str = ALL_THEMES) -> pd.DataFrame:
    """:func:`region_state` as it was at ``at`` (the map's 24 h replay): the alerts first seen by
    then and not yet resolved or closed then — a finished alert without those times ended when
    last seen (levels as they are now: a level raised later is shown from the start)."""
    tree = region_tree(engine)
    where, params = _scope_sql(tree, scope, "a.")
    params.update(at=at, active=list(ACTIVE_STATUSES))
    sql = (f"SELECT a.adcode, a.level, count(*) AS n FROM alerts a LEFT JOIN alert_handling h ON h.alert_id = a.id "
           f"WHERE {where} AND a.first_seen <= :at AND (a.status = ANY(:active) "
           "OR coalesce(h.resolved_at, h.closed_at, a.last_seen) > :at)"
           + _theme_sql(theme, params, "a.") + " GROUP BY a.adcode, a.level")
    return _state_of(engine, tree, scope, sql, params)


def _state_of(engine, tree, scope: str, sql: str, params: dict) -> pd.DataFrame:
    """The per-child state from ``sql``'s (adcode, level, n) rows (see :func:`region_state`)."""
    children = list(tree.children(scope))
    counts = {c: dict.fromkeys(LEVELS, 0) for c in children}
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


def alerts_list(engine, *, scope: str, theme: str = ALL_THEMES, statuses=ACTIVE_STATUSES,
                window: str | None = None, limit: int = 200, newest_first_seen: bool = False,
                escalated_to: str | None = None) -> pd.DataFrame:
    """Alerts inside ``scope`` (newest change first, or newest first sighting), optionally by
    theme, status and window; ``escalated_to`` keeps those escalated to that region."""
    tree = region_tree(engine)
    where, params = _scope_sql(tree, scope, "a.")
    sql = (f"SELECT {_ALERT_COLUMNS} FROM alerts a LEFT JOIN alert_handling h ON h.alert_id = a.id "
           f"WHERE {where}" + _theme_sql(theme, params, "a."))
    if statuses:
        sql += " AND a.status = ANY(:statuses)"
        params["statuses"] = list(statuses)
    if escalated_to is not None:
        sql += " AND h.visible_at = :esc AND h.escalated_at IS NOT NULL"
        params["esc"] = escalated_to
    if window:
        sql += " AND a.last_seen >= now() - :win"
        params["win"] = WINDOWS[window]
    order = "a.first_seen" if newest_first_seen else "a.last_seen"
    sql += f" ORDER BY {order} DESC, 1 DESC LIMIT :limit"
    params["limit"] = int(limit)
    with engine.connect() as conn:
        df = pd.DataFrame([dict(r._mapping) for r in conn.execute(sa.text(sql), params)])
    if df.empty:
        return pd.DataFrame(columns=["id", "level", "status", "adcode", "first_seen", "last_seen"])
    df["adcode"] = df["adcode"].astype(str).str.strip()
    df["region_name"] = [safe_name(tree, a) for a in df["adcode"]]
    df["region_name_en"] = [safe_name(tree, a, "en") for a in df["adcode"]]
    df["level_rank"] = df["level"].map(level_rank).fillna(0).astype(int)
    return df


def by_incident(df: pd.DataFrame) -> pd.DataFrame:
    """One row per incident instead of one per alert (a storm's five identical "河道水位快速上涨"
    rows become one): each incident's first row in the list's order (its newest change), with
    the worst level of its alerts in the list and ``incident_n``, how many they are. Alerts
    without an incident stay rows of their own (``incident_n`` 1).

    >>> d = pd.DataFrame({"id": ["a3", "b1", "a2", "a1"], "level": ["yellow", "blue", "red", "yellow"],
    ...                   "incident_id": [7, None, 7, 7]})
    >>> by_incident(d)[["id", "level", "incident_n"]].values.tolist()
    [['a3', 'red', 3], ['b1', 'blue', 1]]
    """
    if df.empty or "incident_id" not in df:
        return df.assign(incident_n=1) if not df.empty else df
    incident = pd.to_numeric(df["incident_id"]).astype("Int64")
    key = incident.astype("string").fillna("alert:" + df["id"].astype(str))
    groups = df.groupby(key, sort=False)
    worst = groups["level"].transform(lambda lv: worst_level(list(lv)))
    out = df.assign(incident_id=incident, level=worst, incident_n=groups["id"].transform("size"))
    if "level_rank" in out:
        out["level_rank"] = out["level"].map(level_rank)
    return out[~key.duplicated()].reset_index(drop=True)


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
        changed |= df["escalated_at"].notna() & (df["escalated_at"] > since)
        df = df[changed]
    kind = ["escalated" if pd.notna(e) and (since is None or e > since) and f < e else "new"
            for f, e in zip(df["first_seen"], df["escalated_at"])]
    return ticker_order(df.assign(kind=kind))


def open_alerts_by_theme_level(engine, *, scope: str) -> dict[tuple[str, str], int]:
    """Open (active) alerts inside ``scope`` by (theme, level): THE count of open alerts.

    The KPI strip and the open-alert vital signs derive their figures from this one result (one
    query), so the numbers on one screen cannot disagree."""
    where, params = _scope_sql(region_tree(engine), scope)
    params["statuses"] = list(ACTIVE_STATUSES)
    with engine.connect() as conn:
        return {(th, lv): int(n) for th, lv, n in conn.execute(sa.text(
            f"SELECT theme, level, count(*) FROM alerts WHERE {where} AND status = ANY(:statuses) GROUP BY 1, 2"),
            params)}


def open_by_level(counts: dict[tuple[str, str], int], theme: str = ALL_THEMES) -> dict[str, int]:
    """Open alerts of ``theme`` (every theme: ``ALL_THEMES``) by level, every level present.

    >>> open_by_level({("flood", "red"): 2, ("air", "red"): 1, ("air", "blue"): 4}, "air")
    {'blue': 4, 'yellow': 0, 'orange': 0, 'red': 1}
    """
    out = dict.fromkeys(LEVELS, 0)
    for (th, lv), n in counts.items():
        if lv in out and (theme == ALL_THEMES or th == theme):
            out[lv] += n
    return out


def open_by_theme(counts: dict[tuple[str, str], int]) -> dict[str, int]:
    """Open alerts per theme (what the open-alert vital signs sum).

    >>> open_by_theme({("flood", "red"): 2, ("flood", "blue"): 1, ("air", "red"): 1})
    {'flood': 3, 'air': 1}
    """
    out: dict[str, int] = {}
    for (th, _lv), n in counts.items():
        out[th] = out.get(th, 0) + n
    return out


def open_alert_counts(engine, *, scope: str, theme: str = ALL_THEMES) -> dict[str, int]:
    """Open alerts inside ``scope`` by level (every level present, zero when none)."""
    return open_by_level(open_alerts_by_theme_level(engine, scope=scope), theme)


@memo
def alerts_version(engine, *, scope: str) -> str:
    """A short token of the alerts inside ``scope`` that changes when one is raised or changes
    (status, level, last sighting: ``alerts.updated_at``) or when its handling changes
    (escalation, owner, dispatch: ``alert_handling.updated_at``).

    The live tables read and render again only when it changed, so an unchanged screen costs one
    aggregate per tick (and per scope, with the view cache), not a list query and a render."""
    where, params = _scope_sql(region_tree(engine), scope, "a.")
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT count(*), max(a.updated_at), max(h.updated_at) FROM alerts a "
            f"LEFT JOIN alert_handling h ON h.alert_id = a.id WHERE {where}"), params).one()
    return "|".join("" if v is None else (v.isoformat() if hasattr(v, "isoformat") else str(v)) for v in row)


def hourly_alerts(engine, *, scope: str, hours: int = 24, theme: str = ALL_THEMES) -> pd.Series:
    """Alerts first seen per hour in ``scope``."""
    index = hour_index(hours)
    where, params = _scope_sql(region_tree(engine), scope)
    params["since"] = index[0].to_pydatetime()
    sql = (f"SELECT date_trunc('hour', first_seen), count(*) FROM alerts WHERE {where} "
           "AND first_seen >= :since" + _theme_sql(theme, params) + " GROUP BY 1")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql), params).all()
    return fill_hours(index, rows)


def hourly_alerts_by_theme(engine, *, scope: str, index: pd.DatetimeIndex) -> dict[str, dict]:
    """Alerts first seen in ``scope`` per theme and hour of ``index`` (theme -> {hour: n})."""
    where, params = _scope_sql(region_tree(engine), scope)
    params["since"] = index[0].to_pydatetime()
    out: dict[str, dict] = {}
    with engine.connect() as conn:
        for th, h, n in conn.execute(sa.text(
                f"SELECT theme, date_trunc('hour', first_seen), count(*) FROM alerts WHERE {where} "
                "AND first_seen >= :since GROUP BY 1, 2"), params):
            out.setdefault(th, {})[pd.Timestamp(h)] = int(n)
    return out


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
