"""What the province and city views share: request parameters, the region map with
click-to-drill-down, theme/window selectors that rewrite the link, and the live callback (KPI
strip, map colours, ticker) that sends only what changed."""

from __future__ import annotations

from dataclasses import dataclass

import dash
from dash import ALL, Input, Output, Patch, State, callback, dcc, html, no_update

from apps import queries
from apps.catalogue import norm_theme, norm_window
from apps.components import (
    KPI_IDS,
    kpi_values,
    parse_search,
    query_string,
    ticker_items,
    view_href,
)
from apps.context import engine
from apps.i18n import norm_lang
from apps.live import LIVE_INTERVAL_MS, changed_values, map_levels, newest_change
from apps.maps import level_z

TICKER_MAX = 30


@dataclass(frozen=True)
class ViewParams:
    adcode: str
    theme: str
    window: str
    lang: str
    screen: str

    @property
    def wall(self) -> bool:
        return self.screen == "wall"

    def as_dict(self) -> dict:
        return {"theme": self.theme, "window": self.window, "lang": self.lang, "screen": self.screen}

    @property
    def search(self) -> str:
        return query_string(**self.as_dict())


def view_params(adcode, theme=None, window=None, lang=None, screen=None) -> ViewParams:
    """A view's parameters; inside a request, the region must lie in the caller's scope (layouts
    and callbacks take it from the path or from a store the browser sends back: a crafted one is
    refused here, not only shown empty by row-level security)."""
    p = ViewParams(adcode=(adcode or "").strip(), theme=norm_theme(theme), window=norm_window(window),
                   lang=norm_lang(lang), screen="wall" if screen == "wall" else "desk")
    require_in_scope(p.adcode)
    return p


def require_in_scope(adcode) -> str:
    """``adcode`` when the signed-in caller's subtree holds it (or outside a request); else an
    AccessError(403) that ``apps.web`` answers and audits with the region asked for."""
    import flask

    code = str(adcode or "").strip()
    if not flask.has_request_context() or getattr(flask.g, "tongguan_scope", None) is None:
        return code
    from apps.context import current_scope
    from apps.errors import AccessError
    from apps.policy import tree_for

    tree = tree_for(engine())
    if code not in tree:
        raise AccessError(f"未找到区域 {code} / region {code} not found", 404, "not_found")
    if not current_scope().within(tree, code):
        exc = AccessError(f"区域 {code} 不在您的权限范围内 / region {code} is outside your region", 403, "forbidden")
        exc.region = code if len(code) == 6 and code.isdigit() else None
        raise exc
    return code


def stores(page: str, p: ViewParams, *, kpis: dict, state, ticker, codes: list[str]) -> list:
    """The page's state for the live callback: what is on screen now."""
    return [
        dcc.Store(id=f"{page}-params", data={"adcode": p.adcode, **p.as_dict()}),
        dcc.Store(id=f"{page}-shown", data={
            "kpis": kpi_values(kpis, p.lang), "codes": codes, "levels": map_levels(state, codes),
            "since": newest_change(ticker, None), "ticks": len(ticker)}),
        dcc.Interval(id=f"{page}-live", interval=LIVE_INTERVAL_MS),
    ]


def register_region_callbacks(page: str, child_level: str) -> None:
    """Drill-down on map click, theme/window links, and the live update of a region view."""

    @callback(Output("url", "href", allow_duplicate=True),
              Input(f"{page}-map", "clickData"), State(f"{page}-params", "data"),
              prevent_initial_call=True)
    def _drill(click, params):
        try:
            point = click["points"][0]
            adcode = point.get("location") or point.get("customdata")
        except (TypeError, KeyError, IndexError):
            return no_update
        if not isinstance(adcode, str) or len(adcode) != 6:
            return no_update
        return view_href(child_level, adcode, query_string(**params))

    @callback(Output("url", "href", allow_duplicate=True),
              Input(f"{page}-theme", "value"), Input(f"{page}-window", "value"),
              State(f"{page}-params", "data"), prevent_initial_call=True)
    def _relink(theme, window, params):
        if theme == params.get("theme") and window == params.get("window"):
            return no_update
        level = page
        return view_href(level, params["adcode"], query_string(**params), theme=theme, window=window)

    @callback([Output(f"{page}-kpi-{k}", "children") for k in KPI_IDS]
              + [Output(f"{page}-map", "figure"), Output(f"{page}-ticker", "children"),
                 Output(f"{page}-shown", "data")],
              Input(f"{page}-live", "n_intervals"),
              State(f"{page}-params", "data"), State(f"{page}-shown", "data"),
              prevent_initial_call=True)
    def _live(_n, params, shown):
        return live_update(data_engine=engine(), params=params, shown=shown)


def live_update(*, data_engine, params: dict, shown: dict) -> list:
    """One live tick: only the KPI texts that changed, a Patch of the map colours when a region's
    level changed, a Patch that prepends new/escalated alerts to the ticker."""
    scope, theme, lang = require_in_scope(params["adcode"]), params["theme"], params["lang"]
    k = kpi_values(queries.kpis(data_engine, scope=scope, theme=theme), lang)
    diff = changed_values(shown.get("kpis"), k)
    out = [diff.get(key, no_update) for key in KPI_IDS]

    state = queries.region_state(data_engine, scope=scope, theme=theme)
    levels = map_levels(state, shown["codes"])
    if levels != shown.get("levels"):
        fig = Patch()
        fig["data"][0]["z"] = level_z(levels)
        out.append(fig)
    else:
        out.append(no_update)

    since = shown.get("since")
    new = queries.ticker(data_engine, scope=scope, theme=theme, since=since, limit=TICKER_MAX)
    if not new.empty:
        items = ticker_items(new, search=query_string(**params), lang=lang)
        patch = Patch()
        for item in reversed(items):
            patch.prepend(item)
        total = shown.get("ticks", 0) + len(items)
        for _ in range(max(0, total - TICKER_MAX)):
            del patch[TICKER_MAX]
        out.append(patch)
        shown = {**shown, "ticks": min(total, TICKER_MAX)}
    else:
        out.append(no_update)
    if diff or levels != shown.get("levels") or not new.empty:
        out.append({**shown, "kpis": k, "levels": levels, "since": newest_change(new, since)})
    else:
        out.append(no_update)
    return out


def wall_clock_callback(page: str) -> None:
    """The wall's clock ticks in the browser (no server round trip), in China Standard Time
    like every other time on the screens ('sv-SE' formats as YYYY-MM-DD HH:MM:SS)."""
    dash.clientside_callback(
        """function(n) {  // China Standard Time, whatever the wall PC's own time zone
            return new Date().toLocaleString('sv-SE', {timeZone: 'Asia/Shanghai', hour12: false}); }""",
        Output(f"{page}-clock", "children"), Input(f"{page}-clock-tick", "n_intervals"))


def empty_note(text: str) -> html.Div:
    return html.Div(text, className="muted empty")


__all__ = [
    "ALL",
    "ViewParams",
    "engine",
    "live_update",
    "parse_search",
    "register_region_callbacks",
    "stores",
    "view_params",
    "wall_clock_callback",
]
