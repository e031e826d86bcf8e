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
    VITAL_COLOURS,
    clock,
    fmt_indicator,
    kpi_strip,
    kpi_values,
    parse_search,
    query_string,
    ranking,
    ticker_items,
    view_href,
    vital_status_text,
)
from apps.context import engine
from apps.i18n import norm_lang, t
from apps.live import (
    LIVE_INTERVAL_MS,
    changed_values,
    map_levels,
    newest_change,
    ranking_rows,
    ticker_merge,
)
from apps.maps import DESK_MAP_FRAME, WALL_FONT_PX, WALL_MAP_FRAME, level_z

TICKER_MAX = 30
# What fits a wall's panels at 18 px (1920x1080): the ranking's rows per column and columns
# (the province's beside the map, a city's in the wide bottom row), the ticker's lines.
WALL_RANKING = {"province": (15, 1), "city": (7, 2)}
WALL_TICKER = 15


def page_ranking(page: str, state, *, level: str, search: str, lang: str, wall: bool):
    """The ranking of a region view: on a wall as many rows as its panel holds."""
    rows, columns = WALL_RANKING[page] if wall else (25, 1)
    return ranking(page, state, level=level, search=search, lang=lang, limit=rows, columns=columns)


def ticker_limit(wall: bool) -> int:
    return WALL_TICKER if wall else TICKER_MAX


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
        raise AccessError(f"未找到区域 {code} / region {code} not found", 404, "not_found", "region_unknown",
                          adcode=code)
    if not current_scope().within(tree, code):
        exc = AccessError(f"区域 {code} 不在您的权限范围内 / region {code} is outside your region", 403, "forbidden",
                          "region_outside", region=code, home=current_scope().home)
        exc.region = code if len(code) == 6 and code.isdigit() else None
        raise exc
    return code


def stores(page: str, p: ViewParams, *, kpis: dict, state, ticker, codes: list[str],
           tables: str = "", vitals: list | None = None) -> list:
    """The page's state for the live callback: what is on screen now (``tables``: the alerts
    version the page's live tables were read at, :func:`apps.queries.alerts_version`; ``vitals``:
    the (indicator, value) pairs of the vital signs shown)."""
    return [
        dcc.Store(id=f"{page}-params", data={"adcode": p.adcode, **p.as_dict()}),
        dcc.Store(id=f"{page}-shown", data={
            "kpis": kpi_values(kpis, p.lang), "codes": codes, "levels": map_levels(state, codes),
            "rank": ranking_rows(state), "since": newest_change(ticker, None),
            "tick_ids": [str(i) for i in ticker["id"]] if not ticker.empty else [],
            **({"vitals": {i.id: vital_text(i, v) for i, v in vitals}} if vitals else {})}),
        dcc.Store(id=f"{page}-tables-shown", data=tables),
        # hours back the map shows (the 24 h slider; 0 = live): the live tick leaves the map alone meanwhile
        dcc.Store(id=f"{page}-replaying", data=0),
        dcc.Interval(id=f"{page}-live", interval=LIVE_INTERVAL_MS),
    ]


def live_table(page: str, name: str, body) -> html.Div:
    """A table the live tick renders again when the alerts of the view's region changed
    (``renderers[name]`` of :func:`register_region_callbacks` draws it)."""
    return html.Div(body, id={"type": f"{page}-live-table", "table": name}, className="live-table")


def register_region_callbacks(page: str, child_level: str, *, renderers: dict | None = None,
                              vitals=None) -> None:
    """Drill-down on map click, theme/window links, and the live update of a region view
    (``renderers``: the page's live tables by name; ``vitals``: its vital signs)."""

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

    # Walls have no slider: a wall is watched across a room, not clicked, and shows the present
    # (a ``?t=`` in a wall's address is ignored like any other unknown parameter).
    @callback(Output(f"{page}-map", "figure", allow_duplicate=True), Output(f"{page}-replay-at", "children"),
              Output(f"{page}-replaying", "data"),
              Input(f"{page}-replay", "value"), State(f"{page}-params", "data"), State(f"{page}-shown", "data"),
              prevent_initial_call=True)
    def _replay(hours_ago, params, shown):
        fig, label = replay_figure(engine(), params=params, codes=shown["codes"], hours_ago=hours_ago)
        return fig, label, abs(int(hours_ago or 0))

    inds = list(vitals or ())
    vital_outputs = [Output(f"{page}-vital{part}-{ind.id}", prop) for ind in inds for part, prop in VITAL_PARTS]

    @callback([Output(f"{page}-kpi-{k}", "children") for k in KPI_IDS]
              + [Output(f"{page}-map", "figure"), Output(f"{page}-ticker", "children"),
                 Output(f"{page}-ranking", "children")]
              + vital_outputs + [Output(f"{page}-shown", "data")],
              Input(f"{page}-live", "n_intervals"),
              State(f"{page}-params", "data"), State(f"{page}-shown", "data"), State(f"{page}-replaying", "data"),
              prevent_initial_call=True)
    def _live(n, params, shown, replaying):
        return live_update(data_engine=engine(), params=params, shown=shown, page=page, child_level=child_level,
                           vitals=inds, tick=n or 0, replaying=bool(replaying))

    if renderers:
        # The tables the page holds differ (desk, wall): a pattern-matching output takes those present.
        @callback(Output({"type": f"{page}-live-table", "table": ALL}, "children"),
                  Output(f"{page}-tables-shown", "data"),
                  Input(f"{page}-live", "n_intervals"), State(f"{page}-params", "data"),
                  State(f"{page}-tables-shown", "data"), prevent_initial_call=True)
        def _live_tables(n, params, shown):
            names = [o["id"]["table"] for o in dash.ctx.outputs_list[0]]
            return live_tables_update(engine(), params=params, shown=shown, names=names, renderers=renderers,
                                      tick=n or 0)


REPLAY_HOURS = 24


def replay_slider(page: str, lang: str) -> html.Div:
    """The map's time slider: the last 24 h by the hour (0 = now); moving it colours the map as
    the alerts stood then (:func:`replay_figure`)."""
    marks = {h: t("replay.now", lang) if h == 0 else t("replay.ago", lang, h=-h)
             for h in range(-REPLAY_HOURS, 1, 6)}
    return html.Div([html.Span(t("replay.label", lang), className="replay-title"),
                     html.Div(dcc.Slider(id=f"{page}-replay", min=-REPLAY_HOURS, max=0, step=1, value=0, marks=marks,
                                         updatemode="mouseup"), className="replay-slider"),
                     html.Span(t("replay.now", lang), id=f"{page}-replay-at", className="replay-at")],
                    className="replay", id=f"{page}-replay-bar")


def replay_figure(eng, *, params: dict, codes: list[str], hours_ago: int):
    """[a Patch of the map colours as the alerts stood ``hours_ago`` hours ago (0: now, the
    live state), the time shown]: the region's children coloured by the worst alert that was
    open at that moment, in China Standard Time."""
    import pandas as pd

    scope, theme = require_in_scope(params["adcode"]), params["theme"]
    hours_ago = max(0, min(REPLAY_HOURS, int(-(hours_ago or 0))))
    if hours_ago == 0:
        state, label = queries.region_state(eng, scope=scope, theme=theme), t("replay.now", params["lang"])
    else:
        at = pd.Timestamp.now(tz="UTC").floor("h") - pd.Timedelta(hours=hours_ago - 1)
        state = queries.region_state_at(eng, scope=scope, theme=theme, at=at.to_pydatetime())
        label = at.tz_convert("Asia/Shanghai").strftime("%m-%d %H:00")
    fig = Patch()
    fig["data"][0]["z"] = level_z(map_levels(state, codes))
    return [fig, label]


VITAL_PARTS = (("", "children"), ("", "style"), ("-status", "children"))  # value, its colour, 正常/异常
VITALS_EVERY = 5  # ticks (10 s) between reads of the vital signs that are not alert counts


TABLES_EVERY = 30  # ticks (1 min): the tables are drawn again even unchanged (due times pass)


def live_tables_update(eng, *, params: dict, shown: str | None, names: list[str], renderers: dict,
                       tick: int = 0) -> list:
    """The live tables' tick: when the alerts of the view's region changed
    (:func:`apps.queries.alerts_version`), or every ``TABLES_EVERY`` ticks, each table in
    ``names`` drawn again by ``renderers[name](engine, params)``; else nothing.

    Returns [the tables (a list), the version now shown]."""
    if not names:
        return [[], no_update]
    scope = require_in_scope(params["adcode"])
    version = queries.alerts_version(eng, scope=scope)
    if version == shown and tick % TABLES_EVERY:
        return [[no_update] * len(names), no_update]
    p = view_params(scope, params["theme"], params.get("window"), params["lang"], params.get("screen"))
    return [[renderers[name](eng, p) for name in names], version if version != shown else no_update]


def live_update(*, data_engine, params: dict, shown: dict, page: str | None = None, child_level: str | None = None,
                vitals: list = (), tick: int = 0, replaying: bool = False) -> list:
    """One live tick: only the KPI texts that changed, a Patch of the map colours when a region's
    level changed, a Patch that prepends new/escalated alerts to the ticker, the ranking again
    when it changed (from the same region state as the map colours), and the vital signs that
    changed (the open-alert ones from the read the KPIs show, every tick; the others every
    ``VITALS_EVERY`` ticks). The tables are :func:`live_tables_update`'s.

    Returns the outputs in the callback's order: KPIs, map, ticker, ranking (of ``page``, whose
    rows link to ``child_level`` views), three per vital sign (value, its colour, its status),
    the shown-state store. While ``replaying`` (the 24 h slider shows an earlier hour) the map is
    left as it is; the levels shown are still tracked, and the slider's return to "now" draws
    the present."""
    scope, theme, lang = require_in_scope(params["adcode"]), params["theme"], params["lang"]
    kpis = queries.kpis(data_engine, scope=scope, theme=theme)
    k = kpi_values(kpis, lang)
    diff = changed_values(shown.get("kpis"), k)
    out = [diff.get(key, no_update) for key in KPI_IDS]
    new_shown = dict(shown)

    state = queries.region_state(data_engine, scope=scope, theme=theme)
    levels = map_levels(state, shown["codes"])
    if levels != shown.get("levels") and not replaying:
        fig = Patch()
        fig["data"][0]["z"] = level_z(levels)
        out.append(fig)
    else:
        out.append(no_update)

    since = shown.get("since")
    most = ticker_limit(params.get("screen") == "wall")
    new = queries.ticker(data_engine, scope=scope, theme=theme, since=since, limit=most)
    if not new.empty:
        items = ticker_items(new, search=query_string(**params), lang=lang)
        # a state from before the ids were kept knows only how many lines it shows
        shown_ids = shown.get("tick_ids", [None] * shown.get("ticks", 0))
        drop, after = ticker_merge(shown_ids, [str(i) for i in new["id"]], most)
        patch = Patch()
        for index in drop:
            del patch[index]
        for item in reversed(items):
            patch.prepend(item)
        for _ in range(len(items) + len(shown_ids) - len(drop) - len(after)):
            del patch[most]
        out.append(patch)
        new_shown["tick_ids"] = after
        new_shown.pop("ticks", None)
    else:
        out.append(no_update)

    rank = ranking_rows(state) if page and child_level else None
    if rank is not None and rank != shown.get("rank"):
        out.append(page_ranking(page, state, level=child_level, search=query_string(**params), lang=lang,
                                wall=params.get("screen") == "wall").children)
        new_shown["rank"] = rank
    else:
        out.append(no_update)

    vital_values = shown.get("vitals") or {}
    if vitals:
        now = dict(vital_values)
        now.update(open_alert_vitals(vitals, kpis["open_by_theme"]))
        if tick % VITALS_EVERY == 0:
            rest = [i for i in vitals if i.kind != "open_alerts"]
            vit = queries.vitals(data_engine, scope=scope, indicators=rest, spark=False)
            now.update({i.id: vital_text(i, v["value"]) for i, v in zip(rest, vit)})
        changed = changed_values(vital_values, now)
        for ind in vitals:
            if ind.id in changed:
                text, status = changed[ind.id]
                out += [text, {"color": VITAL_COLOURS[status]}, vital_status_text(status, lang)]
            else:
                out += [no_update] * len(VITAL_PARTS)
        new_shown["vitals"] = now

    new_shown.update(kpis=k, levels=levels, since=newest_change(new, since))
    out.append(new_shown if new_shown != shown else no_update)
    return out


def vital_text(ind, value) -> list:
    """[shown text, status] of one vital sign (what the live tick compares and sends)."""
    return [fmt_indicator(ind, value), ind.status(value)]


def open_alert_vitals(inds, by_theme: dict[str, int]) -> dict[str, list]:
    """The open-alert vital signs from the open alerts per theme the KPI strip was read with."""
    return {i.id: vital_text(i, queries.open_alerts_value(i, by_theme)) for i in inds if i.kind == "open_alerts"}


def rotation(page: str, p: ViewParams, rotate) -> list:
    """``?screen=wall&rotate=30``: the wall moves on every 30 s (at least 10 s) to the next region
    of the caller's ring (:func:`apps.live.rotation_ring`: never outside the caller's region),
    keeping theme and language. Nothing when the ring is this region alone."""
    try:
        seconds = max(10, int(rotate))
    except (TypeError, ValueError):
        return []
    if rotation_next(p.adcode) == p.adcode:
        return []
    return [dcc.Interval(id=f"{page}-rotate", interval=seconds * 1000),
            dcc.Store(id=f"{page}-rotate-params", data={**p.as_dict(), "adcode": p.adcode, "rotate": seconds})]


def rotation_next(adcode: str) -> str:
    """The region the wall on ``adcode`` shows next, for the signed-in caller (outside a request:
    as the province's operators, over the regions beside it)."""
    from apps.context import current_scope
    from apps.live import next_in_ring, rotation_ring

    tree = queries.region_tree(engine())
    home = current_scope().home
    if not home or home not in tree:
        home = tree.path(adcode)[0]
    return next_in_ring(rotation_ring(tree, home, adcode), adcode)


def register_rotation(page: str) -> None:
    """The rotating wall's step: the next region of the ring, as a wall, in the address."""

    @callback(Output("url", "href", allow_duplicate=True), Input(f"{page}-rotate", "n_intervals"),
              State(f"{page}-rotate-params", "data"), prevent_initial_call=True)
    def _rotate(_n, params):
        nxt = rotation_next(require_in_scope(params["adcode"]))
        if nxt == params["adcode"]:
            return no_update
        level = queries.region_tree(engine()).level(nxt)
        return view_href(level, require_in_scope(nxt), query_string(**params))


def wall_clock_callback(page: str) -> None:
    """The wall's clock ticks in the browser (no server round trip), in China Standard Time
    like every other time on the screens ('sv-SE' formats as YYYY-MM-DD HH:MM:SS)."""
    dash.clientside_callback(
        """function(n) {  // China Standard Time, whatever the wall PC's own time zone
            return new Date().toLocaleString('sv-SE', {timeZone: 'Asia/Shanghai', hour12: false}); }""",
        Output(f"{page}-clock", "children"), Input(f"{page}-clock-tick", "n_intervals"))


def wall_frame(page: str, p: ViewParams, *, title: str, kpis: dict, left, centre: list, right, bottom: list,
               live: list, extra: list = ()) -> html.Div:
    """The 1920×1080 wall of every level (dark, no scrolling): title, clock and KPIs on top, the
    map (``centre``) between the ``left`` and ``right`` panels, the ``bottom`` row under it. The
    wall has no selectors; hidden ones keep the shared callbacks' inputs present."""
    return html.Div([
        html.Div([html.Div(t("wall.title", p.lang), className="wall-title"),
                  html.Div(title, className="wall-subtitle"),
                  clock(page), dcc.Interval(id=f"{page}-clock-tick", interval=1000)],
                 className="wall-head"),
        kpi_strip(page, kpis, p.lang),
        html.Div([html.Div([left], className="wall-left"), html.Div(centre, className="wall-centre"),
                  html.Div([right], className="wall-right")], className="wall-main"),
        html.Div(bottom, className="wall-bottom"),
        html.Div([dcc.RadioItems(id=f"{page}-theme", value=p.theme, options=[p.theme]),
                  dcc.Dropdown(id=f"{page}-window", value=p.window, options=[p.window])],
                 style={"display": "none"}),
        *live,
        *extra,
    ], className=f"wall wall-{page}", id=f"{page}-page")


def wall_map_text(p: ViewParams) -> dict:
    """How a region map writes its names: on the wall in ``WALL_FONT_PX`` for its centre panel,
    on the desk in the default size for the map panel (:func:`apps.maps.region_map`)."""
    return {"label_size": WALL_FONT_PX, "frame": WALL_MAP_FRAME} if p.wall else {"frame": DESK_MAP_FRAME}


def empty_note(text: str) -> html.Div:
    return html.Div(text, className="muted empty")


__all__ = [
    "ALL",
    "ViewParams",
    "engine",
    "live_update",
    "parse_search",
    "register_region_callbacks",
    "register_rotation",
    "rotation",
    "stores",
    "view_params",
    "wall_clock_callback",
]


def alerts_version_here(adcode: str) -> tuple[str, str]:
    """The app's database and the token of the alerts in ``adcode`` (what the live tables
    follow): the version a cached page layout is keyed by (apps.view_cache.page_layout)."""
    eng = engine()
    return str(eng.url), queries.alerts_version(eng, scope=adcode)
