"""/city/<adcode> — 穗智管: the city's 城市体征 (vital signs from apps/indicators.yaml, each with
normal/abnormal colour and a 24 h sparkline), one map of its counties (一图统揽), theme tabs, the
city's alerts with their status and the escalations waiting for the city. Click a county to open
its view. Live: KPIs, vital signs, map, ranking, ticker and tables without reload; the escalations
panel takes an escalated alert over, acknowledges or dispatches it; the overdue panel (督办) lists
what is past its due time."""

from __future__ import annotations

import dash
from dash import ALL, Input, Output, State, callback, ctx, dcc, html, no_update

from analytics import alerting
from apps import handling, queries, view_cache
from apps.catalogue import indicators, theme_label
from apps.components import (
    alerts_table,
    error_panel,
    header,
    kpi_strip,
    level_legend,
    overdue_table,
    panel,
    ticker_items,
    vital_card,
)
from apps.context import engine
from apps.errors import AppsError
from apps.i18n import t, user_message
from apps.maps import MAP_CONFIG, WALL_FONT_PX, region_map, trend_figure
from apps.pages.common import (
    alerts_version_here,
    empty_note,
    live_table,
    page_ranking,
    register_region_callbacks,
    register_rotation,
    replay_slider,
    rotation,
    stores,
    ticker_limit,
    view_params,
    wall_clock_callback,
    wall_frame,
    wall_map_text,
)
from tongguan import TongguanError

PAGE = "city"



def alerts_panel(eng, p):
    """The city's alerts in the window (any status), newest change first, one row per incident
    (repeated alerts of one sensor, place and theme)."""
    alerts = queries.alerts_list(eng, scope=p.adcode, theme=p.theme, window=p.window, statuses=None, limit=120)
    return alerts_table(PAGE, queries.by_incident(alerts), lang=p.lang, search=p.search, limit=30)


# What the city does with an escalation from the table (the alert's page has every form).
ESCALATION_ACTIONS = ("take_over", "ack", "dispatch")


def escalations_panel(eng, p):
    """The alerts escalated to the city and not yet taken in hand there, each with take over,
    acknowledge (which takes it over) and dispatch (back down, to the county's duty team)."""
    escalations = queries.escalations_waiting(eng, scope=p.adcode, theme=p.theme)
    if escalations.empty:
        body = empty_note(t("empty.escalations", p.lang))
    else:
        body = alerts_table(f"{PAGE}-esc", escalations, lang=p.lang, search=p.search,
                            actions=() if p.wall else ESCALATION_ACTIONS)
    return html.Div(body, id=f"{PAGE}-esc-body")


def overdue_panel(eng, p):
    """Dispatched alerts of the city past their due time (督办), most overdue first."""
    rows = alerting.overdue(eng, p.adcode, limit=30)
    if p.theme != "all":
        rows = [r for r in rows if r["theme"] == p.theme]
    return overdue_table(PAGE, rows, lang=p.lang, tree=queries.region_tree(eng))


LIVE_TABLES = {"alerts": alerts_panel, "escalations": escalations_panel, "overdue": overdue_panel}


def layout(adcode: str | None = None, theme=None, window=None, lang=None, screen=None, rotate=None,
           **_query):
    p = view_params(adcode, theme, window, lang, screen)
    eng = engine()
    try:
        queries.check_region(eng, p.adcode, "city")
    except AppsError as exc:
        return error_panel(user_message(exc, p.lang), p.lang)
    version = queries.alerts_version(eng, scope=p.adcode)  # before the reads: a change meanwhile shows next tick
    tree = queries.region_tree(eng)
    state = queries.region_state(eng, scope=p.adcode, theme=p.theme)
    kpis = queries.kpis(eng, scope=p.adcode, theme=p.theme)
    tick = queries.ticker(eng, scope=p.adcode, theme=p.theme, limit=ticker_limit(p.wall))
    geojson = queries.children_geojson(eng, p.adcode)
    codes = [f["properties"]["adcode"] for f in geojson.get("features", [])]
    inds = indicators()
    # the open-alert vital signs from the read the KPI strip shows: one figure, one source
    vit = queries.vitals(eng, scope=p.adcode, indicators=inds, open_counts=kpis["open_by_theme"])

    map_graph = dcc.Graph(id=f"{PAGE}-map", figure=region_map(geojson, state, lang=p.lang,
                                                                   source=queries.geojson_url(p.adcode),
                                                                   **wall_map_text(p)),
                          config=MAP_CONFIG, responsive=True,
                          className="region-map", style={"height": "100%"})
    vitals_panel = html.Div([vital_card(PAGE, ind, v, p.lang) for ind, v in zip(inds, vit)],
                            className="vitals", id=f"{PAGE}-vitals")
    ticker = html.Div(ticker_items(tick, search=p.search, lang=p.lang), id=f"{PAGE}-ticker", className="ticker")
    rank = page_ranking(PAGE, state, level="county", search=p.search, lang=p.lang, wall=p.wall)
    live = stores(PAGE, p, kpis=kpis, state=state, ticker=tick, codes=codes, tables=version,
                  vitals=[(ind, v["value"]) for ind, v in zip(inds, vit)])
    title = f"{tree.name(p.adcode, lang=p.lang)} · {theme_label(p.theme, p.lang)}"

    if p.wall:
        trend = queries.trend(eng, scope=p.adcode, theme=p.theme)
        return wall_frame(
            PAGE, p, title=title, kpis=kpis, live=live, extra=rotation(PAGE, p, rotate),
            left=panel(t("panel.vitals", p.lang), vitals_panel, cls="panel-vitals"),
            centre=[map_graph, level_legend(p.lang)],
            right=panel(t("panel.ticker", p.lang), ticker, cls="panel-ticker"),
            bottom=[panel(t("panel.trend", p.lang), dcc.Graph(figure=trend_figure(trend, lang=p.lang, height=240, font_px=WALL_FONT_PX),
                                                              config={"displayModeBar": False}), cls="panel-trend"),
                    panel(t("panel.ranking_county", p.lang), rank, cls="panel-ranking")])

    return html.Div([
        header(tree, p.adcode, params=p.as_dict(), lang=p.lang, level=PAGE),
        kpi_strip(PAGE, kpis, p.lang),
        panel(t("panel.vitals", p.lang), vitals_panel, cls="panel-vitals"),
        html.Div([
            panel(t("panel.map_city", p.lang) + " · " + theme_label(p.theme, p.lang),
                  [html.Div([map_graph, level_legend(p.lang)], className="map-wrap"), replay_slider(PAGE, p.lang)],
                  cls="panel-map", id=f"{PAGE}-map-panel"),
            html.Div([
                panel(t("panel.ticker", p.lang), ticker, cls="panel-ticker"),
                panel(t("panel.ranking_county", p.lang), rank, cls="panel-ranking"),
            ], className="side-col"),
        ], className="main-row"),
        html.Div([
            panel(t("panel.alerts", p.lang), live_table(PAGE, "alerts", alerts_panel(eng, p)), cls="panel-alerts"),
            html.Div([
                panel(t("panel.escalations", p.lang),
                      html.Div([html.Div(id=f"{PAGE}-esc-result", className="action-result"),
                                live_table(PAGE, "escalations", escalations_panel(eng, p))]),
                      cls="panel-escalations"),
                panel(t("panel.overdue", p.lang), live_table(PAGE, "overdue", overdue_panel(eng, p)),
                      cls="panel-overdue"),
            ], className="side-stack"),
        ], className="two-col"),
        *live,
    ], className=f"page region-page {PAGE}-page", id=f"{PAGE}-page")


@callback(Output(f"{PAGE}-esc-result", "children"), Output(f"{PAGE}-esc-body", "children"),
          Input({"type": f"{PAGE}-esc-action", "action": ALL, "alert": ALL}, "n_clicks"),
          State(f"{PAGE}-params", "data"), prevent_initial_call=True)
def _act_escalation(clicks, params):
    """Take over, acknowledge or dispatch an escalated alert from the city's panel (the access
    rule, the audit and the lifecycle of every other handling path: ``apps.handling``)."""
    trig = ctx.triggered_id
    if not trig or not any(clicks):
        return no_update, no_update
    p = view_params(params["adcode"], params["theme"], params["window"], params["lang"], params["screen"])
    eng = engine()
    try:
        handling.handle(eng, alert_id=trig["alert"], action=trig["action"], actor=f"city:{p.adcode}")
    except TongguanError as exc:  # refused (scope, role, transition): the reason, nothing changed
        return html.Span(user_message(exc, p.lang), className="error", id=f"{PAGE}-esc-error"), no_update
    done = html.Span(t("action.done", p.lang, action=t(f"action.{trig['action']}", p.lang)), className="ok",
                     id=f"{PAGE}-esc-done")
    return done, escalations_panel(eng, p).children


register_region_callbacks(PAGE, child_level="county", renderers=LIVE_TABLES, vitals=indicators())
register_rotation(PAGE)
wall_clock_callback(PAGE)


# Registered with its layout: the frame imports the pages explicitly (no folder discovery).
dash.register_page(__name__, path_template="/city/<adcode>", name=PAGE, title="统管 · 城市运行",
                   layout=view_cache.page_layout(layout, version=alerts_version_here))
