"""/city/<adcode> — 穗智管: the city's 城市体征 (vital signs from apps/indicators.yaml, each with
normal/abnormal colour and a 24 h sparkline), one map of its counties (一图统揽), theme tabs, the
city's alerts with their status and the escalations waiting for the city. Click a county to open
its view."""

from __future__ import annotations

import dash
from dash import Input, Output, State, callback, dcc, html, no_update

from apps import queries
from apps.catalogue import indicators, theme_label
from apps.components import (
    alerts_table,
    clock,
    error_panel,
    fmt_indicator,
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
from apps.live import changed_values, next_city
from apps.maps import MAP_CONFIG, region_map, trend_figure
from apps.pages.common import (
    empty_note,
    register_region_callbacks,
    require_in_scope,
    stores,
    view_params,
    wall_clock_callback,
)

PAGE = "city"



def layout(adcode: str | None = None, theme=None, window=None, lang=None, screen=None, rotate=None,
           **_query):
    p = view_params(adcode, theme, window, lang, screen)
    eng = engine()
    try:
        queries.check_region(eng, p.adcode, "city")
    except AppsError as exc:
        return error_panel(str(exc), p.lang)
    tree = queries.region_tree(eng)
    state = queries.region_state(eng, scope=p.adcode, theme=p.theme)
    kpis = queries.kpis(eng, scope=p.adcode, theme=p.theme)
    tick = queries.ticker(eng, scope=p.adcode, theme=p.theme, limit=30)
    geojson = queries.children_geojson(eng, p.adcode)
    codes = [f["properties"]["adcode"] for f in geojson.get("features", [])]
    inds = indicators()
    vit = queries.vitals(eng, scope=p.adcode, indicators=inds)
    alerts = queries.alerts_list(eng, scope=p.adcode, theme=p.theme, window=p.window, statuses=None, limit=30)
    escalations = queries.escalations_waiting(eng, scope=p.adcode, theme=p.theme)

    map_graph = dcc.Graph(id=f"{PAGE}-map", figure=region_map(geojson, state, lang=p.lang,
                                                                   source=queries.geojson_url(p.adcode)),
                          config=MAP_CONFIG, responsive=True,
                          className="region-map", style={"height": "100%"})
    vitals_panel = html.Div([vital_card(PAGE, ind, v, p.lang) for ind, v in zip(inds, vit)],
                            className="vitals", id=f"{PAGE}-vitals")
    ticker = html.Div(ticker_items(tick, search=p.search, lang=p.lang), id=f"{PAGE}-ticker", className="ticker")
    rank = ranking(PAGE, state, level="county", search=p.search, lang=p.lang)
    live = stores(PAGE, p, kpis=kpis, state=state, ticker=tick, codes=codes)
    live.append(dcc.Store(id=f"{PAGE}-vitals-shown",
                          data={ind.id: fmt_indicator(ind, v["value"]) for ind, v in zip(inds, vit)}))
    esc = (alerts_table(f"{PAGE}-esc", escalations, lang=p.lang, search=p.search)
           if not escalations.empty else empty_note(t("empty.escalations", p.lang)))
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
            *rotation(p, rotate),
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
            panel(t("panel.alerts", p.lang), alerts_table(PAGE, alerts, lang=p.lang, search=p.search, limit=30),
                  cls="panel-alerts"),
            panel(t("panel.escalations", p.lang), esc, cls="panel-escalations"),
        ], className="two-col"),
        *live,
    ], className=f"page region-page {PAGE}-page", id=f"{PAGE}-page")


def rotation(p, rotate) -> list:
    """``?screen=wall&rotate=30``: the wall moves on to the next city of the province every
    30 s (at least 10 s), round and round, keeping theme and language."""
    try:
        seconds = max(10, int(rotate))
    except (TypeError, ValueError):
        return []
    return [dcc.Interval(id=f"{PAGE}-rotate", interval=seconds * 1000),
            dcc.Store(id=f"{PAGE}-rotate-params", data={**p.as_dict(), "adcode": p.adcode, "rotate": seconds})]


@callback(Output("url", "href", allow_duplicate=True), Input(f"{PAGE}-rotate", "n_intervals"),
          State(f"{PAGE}-rotate-params", "data"), prevent_initial_call=True)
def _rotate(_n, params):
    from apps.components import query_string, view_href

    nxt = next_city(queries.region_tree(engine()), require_in_scope(params["adcode"]))
    return view_href(PAGE, nxt, query_string(**params))


register_region_callbacks(PAGE, child_level="county")
wall_clock_callback(PAGE)


@callback([Output(f"{PAGE}-vital-{ind.id}", "children") for ind in indicators()]
          + [Output(f"{PAGE}-vitals-shown", "data")],
          Input(f"{PAGE}-live", "n_intervals"), State(f"{PAGE}-params", "data"),
          State(f"{PAGE}-vitals-shown", "data"), prevent_initial_call=True)
def _live_vitals(n, params, shown):
    """Vital-sign values every 5th tick (10 s): sends only the values that changed."""
    if n % 5:
        return [no_update] * (len(indicators()) + 1)
    inds = indicators()
    vit = queries.vitals(engine(), scope=require_in_scope(params["adcode"]), indicators=inds, spark=False)
    now = {ind.id: fmt_indicator(ind, v["value"]) for ind, v in zip(inds, vit)}
    diff = changed_values(shown, now)
    return [diff.get(ind.id, no_update) for ind in inds] + [now if diff else no_update]


# Registered with its layout: the frame imports the pages explicitly (no folder discovery).
dash.register_page(__name__, path_template="/city/<adcode>", name=PAGE, title="统管 · 城市运行", layout=layout)
