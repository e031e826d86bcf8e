"""/city/<adcode> — 穗智管: the city's 城市体征 (vital signs from apps/indicators.yaml, each with
normal/abnormal colour and a 24 h sparkline), one map of its counties (一图统揽), theme tabs, the
city's alerts with their status and the escalations waiting for the city. Click a county to open
its view."""

from __future__ import annotations

import dash
from dash import dcc, html

from apps import queries
from apps.catalogue import indicators, theme_label
from apps.components import (
    alerts_table,
    clock,
    error_panel,
    header,
    kpi_strip,
    panel,
    ranking,
    ticker_items,
    vital_card,
)
from apps.context import engine
from apps.errors import AppsError
from apps.i18n import t
from apps.maps import MAP_CONFIG, region_map, trend_figure
from apps.pages.common import (
    empty_note,
    live_table,
    register_region_callbacks,
    register_rotation,
    rotation,
    stores,
    view_params,
    wall_clock_callback,
)

PAGE = "city"



def alerts_panel(eng, p):
    """The city's alerts in the window (any status), newest change first."""
    alerts = queries.alerts_list(eng, scope=p.adcode, theme=p.theme, window=p.window, statuses=None, limit=30)
    return alerts_table(PAGE, alerts, lang=p.lang, search=p.search, limit=30)


def escalations_panel(eng, p):
    """The alerts escalated to the city and not yet taken in hand there."""
    escalations = queries.escalations_waiting(eng, scope=p.adcode, theme=p.theme)
    if escalations.empty:
        return empty_note(t("empty.escalations", p.lang))
    return alerts_table(f"{PAGE}-esc", escalations, lang=p.lang, search=p.search)


LIVE_TABLES = {"alerts": alerts_panel, "escalations": escalations_panel}


def layout(adcode: str | None = None, theme=None, window=None, lang=None, screen=None, rotate=None,
           **_query):
    p = view_params(adcode, theme, window, lang, screen)
    eng = engine()
    try:
        queries.check_region(eng, p.adcode, "city")
    except AppsError as exc:
        return error_panel(str(exc), p.lang)
    version = queries.alerts_version(eng, scope=p.adcode)  # before the reads: a change meanwhile shows next tick
    tree = queries.region_tree(eng)
    state = queries.region_state(eng, scope=p.adcode, theme=p.theme)
    kpis = queries.kpis(eng, scope=p.adcode, theme=p.theme)
    tick = queries.ticker(eng, scope=p.adcode, theme=p.theme, limit=30)
    geojson = queries.children_geojson(eng, p.adcode)
    codes = [f["properties"]["adcode"] for f in geojson.get("features", [])]
    inds = indicators()
    # the open-alert vital signs from the read the KPI strip shows: one figure, one source
    vit = queries.vitals(eng, scope=p.adcode, indicators=inds, open_counts=kpis["open_by_theme"])

    map_graph = dcc.Graph(id=f"{PAGE}-map", figure=region_map(geojson, state, lang=p.lang,
                                                                   source=queries.geojson_url(p.adcode)),
                          config=MAP_CONFIG, responsive=True,
                          className="region-map", style={"height": "100%"})
    vitals_panel = html.Div([vital_card(PAGE, ind, v, p.lang) for ind, v in zip(inds, vit)],
                            className="vitals", id=f"{PAGE}-vitals")
    ticker = html.Div(ticker_items(tick, search=p.search, lang=p.lang), id=f"{PAGE}-ticker", className="ticker")
    rank = ranking(PAGE, state, level="county", search=p.search, lang=p.lang)
    live = stores(PAGE, p, kpis=kpis, state=state, ticker=tick, codes=codes, tables=version,
                  vitals=[(ind, v["value"]) for ind, v in zip(inds, vit)])
    title = f"{tree.name(p.adcode, lang=p.lang)} · {theme_label(p.theme, p.lang)}"

    if p.wall:
        trend = queries.trend(eng, scope=p.adcode, theme=p.theme)
        return html.Div([
            html.Div([html.Div(t("wall.title", p.lang), className="wall-title"),
                      html.Div(title, className="wall-subtitle"),
                      clock(PAGE), dcc.Interval(id=f"{PAGE}-clock-tick", interval=1000)],
                     className="wall-head"),
            kpi_strip(PAGE, kpis, p.lang),
            html.Div([
                html.Div([panel(t("panel.vitals", p.lang), vitals_panel, cls="panel-vitals")],
                         className="wall-left"),
                html.Div([map_graph], className="wall-centre"),
                html.Div([panel(t("panel.ticker", p.lang), ticker, cls="panel-ticker")], className="wall-right"),
            ], className="wall-main"),
            html.Div([panel(t("panel.trend", p.lang), dcc.Graph(figure=trend_figure(trend, lang=p.lang, height=240),
                                                                config={"displayModeBar": False}),
                            cls="panel-trend"),
                      panel(t("panel.ranking_county", p.lang), rank, cls="panel-ranking")],
                     className="wall-bottom"),
            html.Div([dcc.RadioItems(id=f"{PAGE}-theme", value=p.theme, options=[p.theme]),
                      dcc.Dropdown(id=f"{PAGE}-window", value=p.window, options=[p.window])],
                     style={"display": "none"}),
            *live,
            *rotation(PAGE, p, rotate),
        ], className=f"wall wall-{PAGE}", id=f"{PAGE}-page")

    return html.Div([
        header(tree, p.adcode, params=p.as_dict(), lang=p.lang, level=PAGE),
        kpi_strip(PAGE, kpis, p.lang),
        panel(t("panel.vitals", p.lang), vitals_panel, cls="panel-vitals"),
        html.Div([
            panel(t("panel.map_city", p.lang) + " · " + theme_label(p.theme, p.lang), map_graph,
                  cls="panel-map", id=f"{PAGE}-map-panel"),
            html.Div([
                panel(t("panel.ticker", p.lang), ticker, cls="panel-ticker"),
                panel(t("panel.ranking_county", p.lang), rank, cls="panel-ranking"),
            ], className="side-col"),
        ], className="main-row"),
        html.Div([
            panel(t("panel.alerts", p.lang), live_table(PAGE, "alerts", alerts_panel(eng, p)), cls="panel-alerts"),
            panel(t("panel.escalations", p.lang), live_table(PAGE, "escalations", escalations_panel(eng, p)),
                  cls="panel-escalations"),
        ], className="two-col"),
        *live,
    ], className=f"page region-page {PAGE}-page", id=f"{PAGE}-page")


register_region_callbacks(PAGE, child_level="county", renderers=LIVE_TABLES, vitals=indicators())
register_rotation(PAGE)
wall_clock_callback(PAGE)


# Registered with its layout: the frame imports the pages explicitly (no folder discovery).
dash.register_page(__name__, path_template="/city/<adcode>", name=PAGE, title="统管 · 城市运行", layout=layout)
