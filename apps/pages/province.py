"""/province/<adcode> — 粤治慧: the state of every city at a glance (map coloured by the worst open
warning of the selected theme, KPI strip, ranking, 24 h trend, live ticker). Click a city to
open its view."""

from __future__ import annotations

import dash
from dash import dcc, html

from apps import queries, view_cache
from apps.catalogue import theme_label
from apps.components import (
    alerts_table,
    error_panel,
    header,
    kpi_strip,
    level_legend,
    panel,
    ticker_items,
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
    replay_slider,
    stores,
    ticker_limit,
    view_params,
    wall_clock_callback,
    wall_frame,
    wall_map_text,
)

PAGE = "province"



def layout(adcode: str | None = None, theme=None, window=None, lang=None, screen=None, **_query):
    p = view_params(adcode, theme, window, lang, screen)
    eng = engine()
    try:
        queries.check_region(eng, p.adcode, "province")
    except AppsError as exc:
        return error_panel(user_message(exc, p.lang), p.lang)
    version = queries.alerts_version(eng, scope=p.adcode)  # before the reads: a change meanwhile shows next tick
    tree = queries.region_tree(eng)
    state = queries.region_state(eng, scope=p.adcode, theme=p.theme)
    kpis = queries.kpis(eng, scope=p.adcode, theme=p.theme)
    trend = queries.trend(eng, scope=p.adcode, theme=p.theme)
    tick = queries.ticker(eng, scope=p.adcode, theme=p.theme, limit=ticker_limit(p.wall))
    geojson = queries.children_geojson(eng, p.adcode)
    codes = [f["properties"]["adcode"] for f in geojson.get("features", [])]

    map_graph = dcc.Graph(id=f"{PAGE}-map", figure=region_map(geojson, state, lang=p.lang,
                                                                   source=queries.geojson_url(p.adcode),
                                                                   **wall_map_text(p)),
                          config=MAP_CONFIG, responsive=True,
                          className="region-map", style={"height": "100%"})
    ticker = html.Div(ticker_items(tick, search=p.search, lang=p.lang), id=f"{PAGE}-ticker",
                      className="ticker")
    rank = page_ranking(PAGE, state, level="city", search=p.search, lang=p.lang, wall=p.wall)
    trend_graph = dcc.Graph(id=f"{PAGE}-trend", figure=trend_figure(trend, lang=p.lang,
                                                                   height=240 if p.wall else 220,
                                                                   font_px=WALL_FONT_PX if p.wall else None),
                            config={"displayModeBar": False})
    live = stores(PAGE, p, kpis=kpis, state=state, ticker=tick, codes=codes, tables=version)
    title = f"{tree.name(p.adcode, lang=p.lang)} · {theme_label(p.theme, p.lang)}"

    if p.wall:
        return wall_frame(
            PAGE, p, title=title, kpis=kpis, live=live,
            left=panel(t("panel.ranking", p.lang), rank, cls="panel-ranking"),
            centre=[map_graph, level_legend(p.lang)],
            right=panel(t("panel.ticker", p.lang), ticker, cls="panel-ticker"),
            bottom=[panel(t("panel.trend", p.lang), trend_graph, cls="panel-trend"),
                    panel(t("panel.alerts", p.lang), live_table(PAGE, "alerts", wall_alerts(eng, p)),
                          cls="panel-alerts")])
    return html.Div([
        header(tree, p.adcode, params=p.as_dict(), lang=p.lang, level=PAGE),
        kpi_strip(PAGE, kpis, p.lang),
        html.Div([
            panel(t("panel.map_province", p.lang) + " · " + theme_label(p.theme, p.lang),
                  [html.Div([map_graph, level_legend(p.lang)], className="map-wrap"), replay_slider(PAGE, p.lang)],
                  cls="panel-map", id=f"{PAGE}-map-panel"),
            html.Div([
                panel(t("panel.ticker", p.lang), ticker, cls="panel-ticker"),
                panel(t("panel.ranking", p.lang), rank, cls="panel-ranking"),
            ], className="side-col"),
        ], className="main-row"),
        panel(t("panel.trend", p.lang), trend_graph, cls="panel-trend"),
        *live,
    ], className=f"page region-page {PAGE}-page", id=f"{PAGE}-page")


def wall_alerts(eng, p):
    """The wall's table of the newest open alerts, one row per incident (the live tick draws it
    again on a change)."""
    alerts = queries.alerts_list(eng, scope=p.adcode, theme=p.theme, limit=60)
    if alerts.empty:
        return empty_note(t("empty.alerts", p.lang))
    return alerts_table(PAGE, queries.by_incident(alerts), lang=p.lang, search=p.search, limit=8)


register_region_callbacks(PAGE, child_level="city", renderers={"alerts": wall_alerts})
wall_clock_callback(PAGE)


# Registered with its layout: the frame imports the pages explicitly (no folder discovery).
dash.register_page(__name__, path_template="/province/<adcode>", name=PAGE, title="统管 · 全省态势",
                   layout=view_cache.page_layout(layout, version=alerts_version_here))
