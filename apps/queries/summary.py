"""A region's figures at a glance: the KPI strip, the 24-hour trend and the city's vital signs
(``indicators.yaml``), combined from the rollups, the alerts and the sensor registry."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa

from apps.catalogue import ALL_THEMES, WINDOWS, Indicator
from apps.queries.alerts import (
    hourly_alerts,
    hourly_alerts_by_theme,
    open_alerts_by_theme_level,
    open_by_level,
    open_by_theme,
)
from apps.queries.rollups import (
    hour_index,
    hourly_readings,
    hourly_video_events,
    metric_hours,
    metric_windows,
    readings_count,
    sensor_counts,
    video_event_count,
)
from apps.view_cache import memo

LOCAL_TZ = "Asia/Shanghai"
METRIC_KINDS = ("metric_mean", "metric_max")


def local_midnight(now: datetime | None = None) -> datetime:
    """Start of today in China Standard Time ("today" on the screens), as an aware datetime.

    >>> local_midnight(now=datetime(2026, 11, 23, 16, 30, tzinfo=UTC)).isoformat()
    '2026-11-24T00:00:00+08:00'
    """
    local = (now or datetime.now(UTC)).astimezone(ZoneInfo(LOCAL_TZ))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


@memo
def kpis(engine, *, scope: str, theme: str = ALL_THEMES) -> dict:
    """The KPI strip: sensors online/total, readings today, video events today, open alerts by
    level (of ``theme``) and ``open_by_theme`` (every theme, for the open-alert vital signs)."""
    midnight = local_midnight()
    sensors = sensor_counts(engine, scope=scope, theme=theme)
    counts = open_alerts_by_theme_level(engine, scope=scope)
    alerts = open_by_level(counts, theme)
    return {
        "sensors_online": sensors["online"], "sensors_total": sensors["total"], "catch_up": sensors["catch_up"],
        "readings_today": readings_count(engine, scope=scope, since=midnight, theme=theme),
        "video_today": video_event_count(engine, scope=scope, since=midnight, theme=theme),
        "alerts": alerts, "open_alerts": sum(alerts.values()),
        # every theme's open alerts, from the same read: the open-alert vital signs show these
        "open_by_theme": open_by_theme(counts),
    }


@memo
def trend(engine, *, scope: str, theme: str = ALL_THEMES, hours: int = 24) -> pd.DataFrame:
    """Hourly readings, video events and new alerts for the last ``hours`` hours."""
    return pd.DataFrame({
        "readings": hourly_readings(engine, scope=scope, hours=hours, theme=theme),
        "events": hourly_video_events(engine, scope=scope, hours=hours, theme=theme),
        "alerts": hourly_alerts(engine, scope=scope, hours=hours, theme=theme),
    })


def open_alerts_value(ind: Indicator, by_theme: dict[str, int]) -> float:
    """An open-alert vital sign's value from the open alerts per theme (its theme, or all).

    >>> open_alerts_value(Indicator("o", "o", "o", "open_alerts"), {"flood": 2, "air": 1})
    3.0
    """
    return float(sum(n for th, n in by_theme.items() if not ind.theme or th == ind.theme))


def _float(v) -> float | None:
    return None if v is None else float(v)


@memo
def vitals(engine, *, scope: str, indicators: list[Indicator], spark: bool = True,
           open_counts: dict[str, int] | None = None) -> list[dict]:
    """Every configured vital sign of ``scope``: value, status and (``spark``) its hourly history
    for the sparkline (None where no data).

    ``open_counts`` (open alerts per theme, as ``kpis(...)["open_by_theme"]``) feeds the
    open-alert signs from the read the KPI strip shows, so the two agree.

    Batched: one query per kind of source (metric windows, metric hours, alerts, video events,
    sensors) whatever the number of indicators, instead of two or three per indicator.
    """
    hours = 24
    index = hour_index(hours)
    metric_inds = [i for i in indicators if i.kind in METRIC_KINDS]
    values: dict[str, float | None] = {}
    sparks: dict[str, list] = {}
    with engine.connect() as conn:
        for window in sorted({i.window for i in metric_inds}):
            inds = [i for i in metric_inds if i.window == window]
            got = metric_windows(conn, scope=scope, metrics=[i.metric for i in inds], window=window)
            for i in inds:
                values[i.id] = _float(got.get(i.metric, (None, None))[METRIC_KINDS.index(i.kind)])
        if spark and metric_inds:
            hist = metric_hours(conn, scope=scope, metrics=sorted({i.metric for i in metric_inds}), index=index)
            for i in metric_inds:
                k = METRIC_KINDS.index(i.kind)
                sparks[i.id] = [_float(hist.get((i.metric, ts), (None, None))[k]) for ts in index]
    alert_inds = [i for i in indicators if i.kind == "open_alerts"]
    if alert_inds:
        by_theme = (open_counts if open_counts is not None
                    else open_by_theme(open_alerts_by_theme_level(engine, scope=scope)))
        hourly = hourly_alerts_by_theme(engine, scope=scope, index=index) if spark else {}
        for i in alert_inds:
            values[i.id] = open_alerts_value(i, by_theme)
            if spark:
                sparks[i.id] = [float(sum(c.get(ts, 0) for th, c in hourly.items() if not i.theme or th == i.theme))
                                for ts in index]
    for i in indicators:
        if i.kind == "video_events":
            with engine.connect() as conn:
                since = conn.execute(sa.text("SELECT date_trunc('minute', now() - :w)"),
                                     {"w": WINDOWS[i.window]}).scalar()
            values[i.id] = float(video_event_count(engine, scope=scope, since=since, event_type=i.event_type))
            if spark:
                sparks[i.id] = [float(v) for v in hourly_video_events(
                    engine, scope=scope, hours=hours, event_type=i.event_type).tolist()]
        elif i.kind == "sensor_online_rate":
            c = sensor_counts(engine, scope=scope)
            # replaying history, nobody is "offline" yet: no rate rather than a red 0 %
            values[i.id] = c["online"] / c["total"] if c["total"] and c["catch_up"] is None else None
            if spark:  # the online rate has no history in the rollups: readings per hour instead
                sparks[i.id] = [float(v) for v in hourly_readings(engine, scope=scope, hours=hours).tolist()]
    return [{"id": i.id, "value": values.get(i.id), "status": i.status(values.get(i.id)),
             "spark": sparks.get(i.id) if spark else None} for i in indicators]
