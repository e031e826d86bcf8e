"""/county/<adcode> — the county official's map: sensors (coloured by their worst open warning,
grey when offline), cameras, recent video events (clustered when dense), grid cells shaded by
activity; click a sensor for its series with the warning thresholds (the pick goes into the address as
?sensor=, so the view can be shared); the county's alerts with
their handling actions."""

from __future__ import annotations

from urllib.parse import parse_qsl

import dash
import pandas as pd
from dash import ALL, Input, Output, Patch, State, callback, ctx, dcc, html, no_update

from analytics import ACTIVE_STATUSES
from apps import handling, queries, view_cache
from apps.catalogue import WINDOWS, label, level_rank, theme_label
from apps.components import (
    KPI_IDS,
    alerts_table,
    error_panel,
    header,
    kpi_strip,
    kpi_values,
    level_legend,
    panel,
    with_query,
)
from apps.context import engine
from apps.errors import AppsError
from apps.i18n import t, user_message
from apps.live import LIVE_INTERVAL_MS, changed_values
from apps.maps import (
    EVENT_COLOURS,
    MAP_CONFIG,
    WALL_FONT_PX,
    county_map,
    sensor_marks,
    sensor_trace,
    series_figure,
    trend_figure,
)
from apps.pages.common import (
    VITALS_EVERY,
    alerts_version_here,
    register_rotation,
    rotation,
    view_params,
    wall_clock_callback,
    wall_frame,
)

PAGE = "county"



def county_boundary(eng, county: str) -> dict:
    """The county's own display boundary (from its city's map of counties)."""
    tree = queries.region_tree(eng)
    parent = tree.parent(county)
    gj = queries.children_geojson(eng, parent)
    return {"type": "FeatureCollection",
            "features": [f for f in gj.get("features", []) if f["properties"]["adcode"] == county]}


def build_map(eng, p, selected: str | None = None, alerts=None, focus: dict | None = None):
    sensors = queries.county_sensors(eng, county=p.adcode, theme=p.theme, alerts=alerts)
    cams = queries.county_cameras(eng, county=p.adcode)
    clusters = queries.county_event_clusters(eng, county=p.adcode, window=p.window, theme=p.theme)
    events = queries.county_events(eng, county=p.adcode, window=p.window, theme=p.theme, limit=12)
    grid = queries.grid_activity(eng, county=p.adcode, window=p.window, theme=p.theme)
    fig = county_map(county_boundary(eng, p.adcode), sensors=sensors, cameras=cams, events=clusters,
                     grid=grid, lang=p.lang, selected=selected, focus=focus,
                     font_px=WALL_FONT_PX if p.wall else None)
    return fig, sensors, events


def focus_alert(alerts, alert_id) -> dict | None:
    """The alert a link points at (``?alert=<id>``), if it is one of this county's."""
    if not alert_id or alerts.empty:
        return None
    hit = alerts[alerts["id"].astype(str) == str(alert_id)]
    return hit.iloc[0].to_dict() if not hit.empty else None


def events_list(events, lang: str, limit: int = 12):
    if events.empty:
        return html.Div(t("empty.data", lang), className="muted empty")
    rows = []
    for r in events.head(limit).itertuples():
        ts = r.ts.tz_convert("Asia/Shanghai").strftime("%m-%d %H:%M") if hasattr(r.ts, "tz_convert") else str(r.ts)
        rows.append(html.Tr([html.Td(ts), html.Td(html.Span("●", style={"color": EVENT_COLOURS.get(r.type, "#fff")})),
                             html.Td(label("event", r.type, lang)), html.Td(r.camera_id)]))
    return html.Table([html.Thead(html.Tr([html.Th(t("col.time", lang)), html.Th(""),
                                           html.Th(t("col.type", lang)), html.Th(t("legend.camera", lang))])),
                       html.Tbody(rows)], className="grid-table events-table", id=f"{PAGE}-events")


def county_alerts(eng, p):
    """One read of the county's alerts (any status, newest change first): it serves both the
    table (:func:`recent_or_open`) and the sensors' colours (the open ones)."""
    return queries.alerts_list(eng, scope=p.adcode, theme=p.theme, statuses=None, limit=200)


def recent_or_open(alerts, window: str):
    """The alerts the table lists: those seen in the window, or still open."""
    if alerts.empty:
        return alerts
    recent = alerts["last_seen"] >= pd.Timestamp.now(tz="UTC") - WINDOWS[window]
    return alerts[recent | alerts["status"].isin(ACTIVE_STATUSES)]


def alerts_panel(alerts, p, focus: str | None = None):
    """The table: on the desk one row per alert with its handling buttons; the wall only shows,
    one row per incident (repeated alerts of one sensor, place and theme)."""
    table = alerts_table(PAGE, queries.by_incident(alerts) if p.wall else alerts, lang=p.lang,
                         actions=not p.wall, search=p.search, focus=focus, limit=8 if p.wall else 50)
    return html.Div(table, id=f"{PAGE}-alerts")


def layout(adcode: str | None = None, theme=None, window=None, lang=None, screen=None, alert=None,
           sensor=None, rotate=None, **_query):
    p = view_params(adcode, theme, window, lang, screen)
    eng = engine()
    try:
        queries.check_region(eng, p.adcode, "county")
    except AppsError as exc:
        return error_panel(user_message(exc, p.lang), p.lang)
    version = queries.alerts_version(eng, scope=p.adcode)  # before the reads: a change meanwhile shows next tick
    tree = queries.region_tree(eng)
    kpis = queries.kpis(eng, scope=p.adcode, theme=p.theme)
    alerts = county_alerts(eng, p)
    focus = focus_alert(alerts, alert)
    fig, sensors, events = build_map(eng, p, selected=sensor, alerts=alerts, focus=focus)
    table = alerts_panel(recent_or_open(alerts, p.window), p, focus=focus["id"] if focus else None)
    if p.wall:  # nobody clicks a wall: it shows the sensor in the worst warning by itself
        sensor = sensor or wall_sensor(sensors)
    series = (series_panel(eng, sensor, p, sensors) if sensor
              else html.Div(t("series.none_warning" if p.wall else "series.pick", p.lang), className="muted empty"))
    map_graph = dcc.Graph(id=f"{PAGE}-map", figure=fig, config=MAP_CONFIG, responsive=True,
                          className="region-map", style={"height": "100%"})
    live = [
        dcc.Store(id=f"{PAGE}-params", data={"adcode": p.adcode, **p.as_dict(), "alert": alert}),
        dcc.Store(id=f"{PAGE}-shown", data={
            "kpis": kpi_values(kpis, p.lang), "tables": version, "sensors": list(sensors["sensor_id"]),
            "marks": list(sensor_marks(sensors, sensor)) if not sensors.empty else None,
            "trace": sensor_trace(fig),
            "events": events_key(events)}),
        dcc.Interval(id=f"{PAGE}-live", interval=LIVE_INTERVAL_MS),
        # The picked sensor goes into the address (?sensor=) so the view can be shared; refresh=False
        # only rewrites the address bar, the pages router does not render the page again.
        dcc.Location(id=f"{PAGE}-sensor-url", refresh=False),
    ]
    events_panel = html.Div(events_list(events, p.lang), id=f"{PAGE}-events-live")
    alerts_live = html.Div(table, id=f"{PAGE}-alerts-live")
    title = f"{tree.name(p.adcode, lang=p.lang)} · {theme_label(p.theme, p.lang)}"
    if p.wall:
        trend = queries.trend(eng, scope=p.adcode, theme=p.theme)
        return wall_frame(
            PAGE, p, title=title, kpis=kpis, live=live, extra=rotation(PAGE, p, rotate),
            left=panel(t("panel.events", p.lang), events_panel, cls="panel-events"),
            centre=[map_graph, level_legend(p.lang, sensors=True)],
            right=panel(t("panel.series", p.lang), html.Div(series, id=f"{PAGE}-series"), cls="panel-series"),
            bottom=[panel(t("panel.trend", p.lang), dcc.Graph(figure=trend_figure(trend, lang=p.lang, height=240, font_px=WALL_FONT_PX),
                                                              config={"displayModeBar": False}), cls="panel-trend"),
                    panel(t("panel.alerts", p.lang), alerts_live, cls="panel-alerts")])
    return html.Div([
        header(tree, p.adcode, params=p.as_dict(), lang=p.lang, level=PAGE),
        kpi_strip(PAGE, kpis, p.lang),
        html.Div([
            panel(t("panel.map_county", p.lang) + " · " + theme_label(p.theme, p.lang),
                  html.Div([map_graph, level_legend(p.lang, sensors=True)], className="map-wrap"),
                  cls="panel-map", id=f"{PAGE}-map-panel"),
            html.Div([
                panel(t("panel.series", p.lang), html.Div(series, id=f"{PAGE}-series"), cls="panel-series"),
                panel(t("panel.events", p.lang), events_panel, cls="panel-events"),
            ], className="side-col"),
        ], className="main-row"),
        panel(t("panel.alerts", p.lang), html.Div([
            dcc.Input(id=f"{PAGE}-note", placeholder=t("action.note", p.lang), className="note-input",
                      debounce=False),
            html.Div(id=f"{PAGE}-action-result", className="action-result"),
            alerts_live,
        ]), cls="panel-alerts"),
        *live,
    ], className=f"page region-page {PAGE}-page", id=f"{PAGE}-page")


def wall_sensor(sensors) -> str | None:
    """The sensor a county wall shows the series of: the one in the worst open warning (the
    first of equals), none when no sensor is in one.

    >>> import pandas as pd
    >>> wall_sensor(pd.DataFrame({"sensor_id": ["a", "b", "c"], "level": ["blue", "red", "red"]}))
    'b'
    >>> wall_sensor(pd.DataFrame({"sensor_id": ["a"], "level": ["none"]})) is None
    True
    """
    if sensors.empty:
        return None
    ranks = sensors["level"].map(level_rank)
    return str(sensors.loc[ranks.idxmax(), "sensor_id"]) if ranks.max() > 0 else None


def events_key(events) -> list:
    """What identifies the events list shown (its newest events), to send it only on a change."""
    return [str(e) for e in events["event_id"].head(12)] if not events.empty else []


def series_panel(eng, sensor_id: str, p, sensors=None):
    df = queries.sensor_series(eng, sensor_id=sensor_id, hours=24)
    if df.empty:
        return html.Div([html.B(sensor_id), html.Div(t("empty.data", p.lang), className="muted")])
    metric = df["metric"].iloc[-1]
    th = queries.thresholds(metric, tuple(queries.region_tree(eng).ancestors(p.adcode)[::-1] + [p.adcode]))
    unit = ""
    from apps.catalogue import metric_info

    unit = metric_info(metric).get("unit", "")
    title = f"{sensor_id} · {label('metric', metric, p.lang)} ({unit})"
    return dcc.Graph(figure=series_figure(df, thresholds=th, lang=p.lang, title=title,
                                          **({"height": 470, "font_px": WALL_FONT_PX} if p.wall else {})),
                     config={"displayModeBar": False}, id=f"{PAGE}-series-graph")


@callback(Output(f"{PAGE}-series", "children"), Output(f"{PAGE}-sensor-url", "search"),
          Input(f"{PAGE}-map", "clickData"), State(f"{PAGE}-params", "data"),
          State(f"{PAGE}-sensor-url", "search"), prevent_initial_call=True)
def _pick_sensor(click, params, search):
    try:
        cd = click["points"][0].get("customdata")
    except (TypeError, KeyError, IndexError):
        return no_update, no_update
    if not (isinstance(cd, list) and len(cd) == 2 and cd[0] == "sensor" and isinstance(cd[1], str)):
        return no_update, no_update
    p = view_params(params["adcode"], params["theme"], params["window"], params["lang"], params["screen"])
    return series_panel(engine(), cd[1], p), with_query(search, sensor=cd[1])


@callback(Output(f"{PAGE}-action-result", "children"), Output(f"{PAGE}-alerts", "children"),
          Input({"type": f"{PAGE}-action", "action": ALL, "alert": ALL}, "n_clicks"),
          State(f"{PAGE}-note", "value"), State(f"{PAGE}-params", "data"), prevent_initial_call=True)
def _act(clicks, note, params):
    trig = ctx.triggered_id
    if not trig or not any(clicks):
        return no_update, no_update
    lang = params["lang"]
    eng = engine()
    try:
        handling.handle(eng, alert_id=trig["alert"], action=trig["action"], actor=f"county:{params['adcode']}",
                       note=note)
        msg = html.Span(t("action.done", lang, action=t(f"action.{trig['action']}", lang)), className="ok")
    except Exception as exc:  # the lifecycle refuses nonsense transitions with a message
        return html.Span(user_message(exc, lang), className="error", id=f"{PAGE}-action-error"), no_update
    p = view_params(params["adcode"], params["theme"], params["window"], lang, params["screen"])
    return msg, alerts_panel(recent_or_open(county_alerts(eng, p), p.window), p, focus=params.get("alert")).children


@callback([Output(f"{PAGE}-kpi-{k}", "children") for k in KPI_IDS]
          + [Output(f"{PAGE}-map", "figure"), Output(f"{PAGE}-events-live", "children"),
             Output(f"{PAGE}-alerts-live", "children"), Output(f"{PAGE}-shown", "data")],
          Input(f"{PAGE}-live", "n_intervals"), State(f"{PAGE}-params", "data"), State(f"{PAGE}-shown", "data"),
          State(f"{PAGE}-sensor-url", "search"), prevent_initial_call=True)
def _live(n, params, shown, search):
    return live_update(engine(), params=params, shown=shown, tick=n or 0,
                       selected=dict(parse_qsl((search or "").lstrip("?"))).get("sensor"))


def live_update(eng, *, params: dict, shown: dict, tick: int = 0, selected: str | None = None) -> list:
    """One live tick of the county view: the KPI texts that changed; when the county's alerts
    changed, the alerts table again and a Patch of the sensors' colours (also every
    ``VITALS_EVERY`` ticks, as sensors go offline); the events list when new events came in.

    Outputs in the callback's order: KPIs, map, events, alerts table, the shown-state store."""
    p = view_params(params["adcode"], params["theme"], params["window"], params["lang"], params["screen"])
    k = kpi_values(queries.kpis(eng, scope=p.adcode, theme=p.theme), p.lang)
    diff = changed_values(shown.get("kpis"), k)
    out = [diff.get(key, no_update) for key in KPI_IDS]
    new_shown = {**shown, "kpis": k}

    version = queries.alerts_version(eng, scope=p.adcode)
    alerts_changed = version != shown.get("tables")
    alerts = county_alerts(eng, p) if alerts_changed or tick % VITALS_EVERY == 0 else None
    fig = no_update
    if alerts is not None and shown.get("trace") is not None:
        sensors = queries.county_sensors(eng, county=p.adcode, theme=p.theme, alerts=alerts)
        marks = list(sensor_marks(sensors, selected)) if not sensors.empty else None
        if list(sensors["sensor_id"]) == shown.get("sensors") and marks and marks != shown.get("marks"):
            trace = shown.get("trace")
            fig = Patch()
            fig["data"][trace]["marker"]["color"] = marks[0]
            fig["data"][trace]["marker"]["size"] = marks[1]
            new_shown["marks"] = marks
    out.append(fig)

    events = no_update
    if tick % VITALS_EVERY == 0:
        ev = queries.county_events(eng, county=p.adcode, window=p.window, theme=p.theme, limit=12)
        if events_key(ev) != shown.get("events"):
            events = events_list(ev, p.lang)
            new_shown["events"] = events_key(ev)
    out.append(events)

    if alerts_changed:
        out.append(alerts_panel(recent_or_open(alerts, p.window), p, focus=params.get("alert")))
        new_shown["tables"] = version
    else:
        out.append(no_update)
    out.append(new_shown if new_shown != shown else no_update)
    return out


@callback(Output("url", "href", allow_duplicate=True),
          Input(f"{PAGE}-theme", "value"), Input(f"{PAGE}-window", "value"),
          State(f"{PAGE}-params", "data"), prevent_initial_call=True)
def _relink(theme, window, params):
    from apps.components import query_string, view_href

    if theme == params.get("theme") and window == params.get("window"):
        return no_update
    return view_href(PAGE, params["adcode"], query_string(**params), theme=theme, window=window)


register_rotation(PAGE)
wall_clock_callback(PAGE)


# Registered with its layout: the frame imports the pages explicitly (no folder discovery).
dash.register_page(__name__, path_template="/county/<adcode>", name=PAGE, title="统管 · 区县",
                   layout=view_cache.page_layout(layout, version=alerts_version_here))
