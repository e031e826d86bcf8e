"""Building blocks shared by the views: query strings, breadcrumb, KPI strip, theme selector,
ranking, ticker, alert table, vital-sign cards, the error panel.

Pure functions of data (no database): the pages call :mod:`apps.queries` and hand the results here.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pandas as pd
from dash import dcc, html

from analytics import LEVELS, status_label
from apps.catalogue import (
    ALL_THEMES,
    DEFAULT_WINDOW,
    LEVEL_COLOURS,
    WINDOWS,
    theme_label,
    themes,
)
from apps.i18n import DEFAULT_LANG, t

VIEW_PARAMS = ("theme", "window", "lang", "screen", "rotate")
DEFAULTS = {"theme": ALL_THEMES, "window": DEFAULT_WINDOW, "lang": DEFAULT_LANG, "screen": "desk"}


def query_string(**params) -> str:
    """The view's query string with defaults left out (short shareable links).

    >>> query_string(theme="flood", window="24h", lang="zh", screen=None)
    '?theme=flood'
    >>> query_string(theme="all", lang="en")
    '?lang=en'
    >>> query_string()
    ''
    """
    kept = {k: v for k, v in params.items()
            if k in VIEW_PARAMS and v not in (None, "") and v != DEFAULTS.get(k)}
    ordered = {k: kept[k] for k in VIEW_PARAMS if k in kept}
    return "?" + urlencode(ordered) if ordered else ""


def parse_search(search: str | None) -> dict:
    """The view parameters of a location's ``search`` ("?theme=air&x=1" -> {"theme": "air"}).

    >>> parse_search("?theme=air&junk=1&lang=en")
    {'theme': 'air', 'lang': 'en'}
    """
    pairs = parse_qsl((search or "").lstrip("?"))
    return {k: v for k, v in pairs if k in VIEW_PARAMS}


def with_query(search: str | None, **values) -> str:
    """``search`` with ``values`` set (any other parameter kept, in order): a link that shares one
    more piece of a view's state, such as the selected sensor.

    >>> with_query("?theme=air&sensor=a", sensor="b"), with_query("", sensor="s 1")
    ('?theme=air&sensor=b', '?sensor=s+1')
    """
    pairs = dict(parse_qsl((search or "").lstrip("?"), keep_blank_values=True))
    pairs.update({k: v for k, v in values.items() if v not in (None, "")})
    return "?" + urlencode(pairs) if pairs else ""


def view_href(level: str, adcode: str, search: str | None = None, **override) -> str:
    """Link to a region view that keeps the current theme/window/lang/screen.

    >>> view_href("city", "440100", "?theme=air&lang=en")
    '/city/440100?theme=air&lang=en'
    >>> view_href("county", "440106", "?theme=air", theme="flood")
    '/county/440106?theme=flood'
    """
    params = {**parse_search(search), **override}
    return f"/{level}/{adcode}" + query_string(**params)


def breadcrumb(tree, adcode: str, *, params: dict, lang: str) -> html.Nav:
    """广东省 › 广州市 › 天河区 — every ancestor links to its own view (same query string)."""
    items = []
    path = tree.path(adcode)
    for i, code in enumerate(path):
        name = tree.name(code, lang=lang)
        if i:
            items.append(html.Span("›", className="crumb-sep"))
        if code == adcode:
            items.append(html.Span(name, className="crumb crumb-current", id="breadcrumb-current"))
        else:
            items.append(dcc.Link(name, href=f"/{tree.level(code)}/{code}" + query_string(**params),
                                  className="crumb", id=f"crumb-{code}"))
    return html.Nav(items, className="breadcrumb", id="breadcrumb")


def header(tree, adcode: str, *, params: dict, lang: str, level: str) -> html.Div:
    """Page head: breadcrumb, theme and window selectors, up-one-level, wall and language links."""
    other = "en" if lang == "zh" else "zh"
    here = f"/{level}/{adcode}"
    links = [dcc.Link(t("lang.switch", lang), href=here + query_string(**{**params, "lang": other}),
                      className="lang-switch", id="lang-switch"),
             dcc.Link(t("nav.wall", lang), href=here + query_string(**{**params, "screen": "wall"}),
                      className="head-link", id="wall-link"),
             dcc.Link(t("nav.alerts", lang), href=f"/alerts?region={adcode}" + ("&lang=en" if lang == "en" else ""),
                      className="head-link",
                      id="alerts-link"),
             dcc.Link(t("nav.subscriptions", lang), href="/subscriptions" + query_string(lang=lang),
                      className="head-link", id="subscriptions-link"),
             dcc.Link(t("nav.status", lang), href="/status" + query_string(lang=lang), className="head-link")]
    parent = tree.parent(adcode)
    if parent:
        links.insert(0, dcc.Link("↑ " + t("nav.back", lang),
                                 href=f"/{tree.level(parent)}/{parent}" + query_string(**params),
                                 className="head-link", id="up-link"))
    return html.Div([
        breadcrumb(tree, adcode, params=params, lang=lang),
        html.Div([theme_selector(level, params.get("theme") or ALL_THEMES, lang),
                  window_selector(level, params.get("window") or DEFAULT_WINDOW, lang)],
                 className="selectors"),
        html.Div(links, className="head-links"),
    ], className="page-head")


def theme_selector(page: str, theme: str, lang: str) -> dcc.RadioItems:
    options = [{"label": theme_label(ALL_THEMES, lang), "value": ALL_THEMES}]
    options += [{"label": theme_label(k, lang), "value": k} for k in themes()]
    return dcc.RadioItems(id=f"{page}-theme", options=options, value=theme, inline=True,
                          className="theme-tabs", inputClassName="theme-input",
                          labelClassName="theme-tab")


def window_selector(page: str, window: str, lang: str) -> dcc.Dropdown:
    return dcc.Dropdown(id=f"{page}-window", options=[{"label": t(f"window.{w}", lang), "value": w}
                                                      for w in WINDOWS],
                        value=window, clearable=False, searchable=False, className="window-select")


def fmt_int(n: float | None) -> str:
    """Thousands separators; "—" for missing.

    >>> fmt_int(1234567), fmt_int(None)
    ('1,234,567', '—')
    """
    return "—" if n is None else f"{int(n):,}"


def kpi_values(k: dict, lang: str) -> dict[str, str]:
    """The KPI strip's texts by element id suffix (the live callback sends only changed ones).

    >>> v = kpi_values({"sensors_online": 5, "sensors_total": 8, "readings_today": 1200,
    ...                 "video_today": 3, "alerts": {"blue": 1, "yellow": 0, "orange": 2, "red": 0},
    ...                 "open_alerts": 3}, "zh")
    >>> v["sensors"], v["readings"], v["alert-orange"]
    ('5 / 8', '1,200', '2')
    """
    catching_up = k.get("catch_up")
    out = {"sensors": t("kpi.catching_up", lang, pct=catching_up) if catching_up is not None else
           f"{fmt_int(k['sensors_online'])} / {fmt_int(k['sensors_total'])}",
           "readings": fmt_int(k["readings_today"]), "video": fmt_int(k["video_today"]),
           "open": fmt_int(k["open_alerts"])}
    for lv in LEVELS:
        out[f"alert-{lv}"] = fmt_int(k["alerts"].get(lv, 0))
    return out


KPI_IDS = ("sensors", "readings", "video", "open", *[f"alert-{lv}" for lv in LEVELS])


def kpi_strip(page: str, k: dict, lang: str) -> html.Div:
    v = kpi_values(k, lang)

    def card(key, label, cls=""):
        return html.Div([html.Div(v[key], id=f"{page}-kpi-{key}", className="kpi-value"),
                         html.Div(label, className="kpi-label")], className="kpi " + cls)

    levels = html.Div([
        html.Div([html.Div(v[f"alert-{lv}"], id=f"{page}-kpi-alert-{lv}", className="kpi-value",
                           style={"color": LEVEL_COLOURS[lv]}),
                  html.Div(t(f"alert.level.{lv}", lang), className="kpi-label")], className="kpi-level")
        for lv in reversed(LEVELS)], className="kpi-levels")
    return html.Div([
        card("sensors", t("kpi.sensors_online", lang)),
        card("readings", t("kpi.readings_today", lang)),
        card("video", t("kpi.video_today", lang)),
        card("open", t("kpi.open_alerts", lang), "kpi-open"),
        levels,
    ], className="kpi-strip", id=f"{page}-kpis")


def level_badge(level: str, lang: str) -> html.Span:
    return html.Span(t(f"alert.level.{level}", lang), className=f"level-badge level-{level}",
                     style={"background": LEVEL_COLOURS.get(level, "#555")})


RANK_LEVELS = ("red", "orange", "yellow", "blue")


def ranking(page: str, state: pd.DataFrame, *, level: str, search: str, lang: str,
            limit: int = 25, columns: int = 1) -> html.Table:
    """Children by severity: worst level, then counts — each row links down. At most ``limit``
    rows of ``columns`` regions side by side (the walls fit their panel so); when more regions
    than that remain, the last place says how many more and how many alerts they hold open."""
    room = limit * columns
    shown = state if len(state) <= room else state.head(room - 1)
    cells = []
    for i, r in enumerate(shown.itertuples(), 1):
        name = r.name_en if lang == "en" and r.name_en else r.name
        cells.append([
            html.Td(i, className="rank-no"),
            html.Td(dcc.Link(name, href=view_href(level, r.adcode, search), id=f"{page}-rank-{r.adcode}")),
            html.Td(level_badge(r.worst, lang)),
            html.Td(int(r.open)),
            *[html.Td(int(getattr(r, lv)) or "", style={"color": LEVEL_COLOURS[lv]}) for lv in RANK_LEVELS],
        ])
    rest = state.iloc[len(shown):]
    if len(rest):
        cells.append([html.Td(t("ranking.more", lang, n=len(rest), open=int(rest["open"].sum())),
                              colSpan=4 + len(RANK_LEVELS), className="rank-more", id=f"{page}-rank-more")])
    per_col = -(-len(cells) // columns) if cells else 0
    rows = [html.Tr([cell for c in range(columns) if c * per_col + i < len(cells) for cell in cells[c * per_col + i]])
            for i in range(per_col)]
    head = [th for _ in range(columns) for th in (
        html.Th("#"), html.Th(t("col.region", lang)), html.Th(t("col.worst", lang)), html.Th(t("col.open", lang)),
        *[html.Th("●", style={"color": LEVEL_COLOURS[lv]}) for lv in RANK_LEVELS])]
    return html.Table([html.Thead(html.Tr(head)), html.Tbody(rows)],
                      className="grid-table ranking" + (f" ranking-cols-{columns}" if columns > 1 else ""),
                      id=f"{page}-ranking")


def fmt_when(ts) -> str:
    if ts is None or (isinstance(ts, float) and pd.isna(ts)) or ts is pd.NaT:
        return ""
    ts = pd.Timestamp(ts)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("Asia/Shanghai")
    return ts.strftime("%m-%d %H:%M:%S")


def ticker_item(row: dict, *, search: str, lang: str) -> html.Div:
    """One line of the live ticker; clicking opens the county view centred on the alert."""
    kind = row.get("kind", "new")
    title = alert_title(row, lang) or row.get("theme") or ""
    href = view_href("county", row["adcode"], search) if row.get("adcode") else None
    if href and row.get("id") is not None:
        href += ("&" if "?" in href else "?") + f"alert={row['id']}"
    when = row.get("escalated_at") if kind == "escalated" else row.get("first_seen")
    body = [html.Span(fmt_when(when if when is not None and not pd.isna(when) else row.get("last_seen")),
                      className="tick-time"),
            level_badge(row["level"], lang),
            html.Span(t("alert.escalated" if kind == "escalated" else "alert.new", lang),
                      className=f"tick-kind tick-{kind}"),
            html.Span(row.get("region_name_en" if lang == "en" else "region_name", ""), className="tick-region"),
            html.Span(title, className="tick-title")]
    content = dcc.Link(body, href=href, className="tick-link") if href else html.Span(body)
    return html.Div(content, className=f"tick tick-level-{row['level']}",
                    id={"type": "tick", "alert": str(row.get("id"))})


def ticker_items(df: pd.DataFrame, *, search: str, lang: str) -> list:
    return [ticker_item(r, search=search, lang=lang) for r in df.to_dict("records")]


TABLE_ACTIONS = ("ack", "dispatch", "resolve", "close", "reopen")
# The actions a status leaves (the alert page's forms and the tables' buttons offer only these).
OFFERED = {
    "open": ("take_over", "ack", "dispatch", "resolve", "false_alarm"),
    "acknowledged": ("take_over", "dispatch", "resolve", "false_alarm"),
    "dispatched": ("take_over", "dispatch", "resolve", "false_alarm"),
    "resolved": ("close", "false_alarm", "reopen"),
    "closed": ("reopen",),
}


def alert_title(row: dict, lang: str) -> str:
    """An alert's title in ``lang``: in English its ``title_en`` (the rule's English title,
    kept in the alert's detail) when it has one.

    >>> alert_title({"title": "道路积水预警", "title_en": "Road ponding"}, "en"), alert_title({"title": "道路积水预警"}, "en")
    ('Road ponding', '道路积水预警')
    """
    en = row.get("title_en") if lang == "en" else None
    return (en if isinstance(en, str) and en else None) or row.get("title") or ""


def _title_link(row: dict, lang: str):
    """An alert's title linking to its page; a row standing for an incident's repeated alerts
    (:func:`apps.queries.by_incident`) links to the incident, with how many they are."""
    n = row.get("incident_n") or 1
    if n > 1 and not pd.isna(row.get("incident_id")):
        return dcc.Link([html.Span(alert_title(row, lang)), html.Span(t("table.incident_n", lang, n=int(n)),
                                                                      className="incident-n")],
                        className="alert-link incident-link",
                        href=f"/incident/{int(row['incident_id'])}" + query_string(lang=lang))
    return dcc.Link(html.Span(alert_title(row, lang)), className="alert-link",
                    href=f"/alert/{row['id']}" + query_string(lang=lang))


def alerts_table(page: str, df: pd.DataFrame, *, lang: str, actions: bool | tuple = False,
                 search: str = "", limit: int = 50, focus: str | None = None) -> html.Div:
    """The alerts as rows (level, region, title linking to the alert's page, theme, status, time);
    ``actions``: a handling button per row, ``TABLE_ACTIONS`` or the names given."""
    if df.empty:
        return html.Div(t("empty.alerts", lang), className="muted empty", id=f"{page}-alerts-empty")
    from apps.catalogue import theme_label as tl

    rows = []
    shown = df.head(limit)
    if focus is not None and str(focus) not in set(shown["id"].astype(str)):
        shown = pd.concat([df[df["id"].astype(str) == str(focus)], shown])  # the linked alert first
    for r in shown.to_dict("records"):
        cells = [html.Td(level_badge(r["level"], lang)),
                 html.Td(dcc.Link(r.get("region_name_en" if lang == "en" else "region_name", r["adcode"]),
                                  href=view_href("county", r["adcode"], search)) if len(r["adcode"]) == 6 else r["adcode"]),
                 html.Td(_title_link(r, lang)),
                 html.Td(tl(r["theme"], lang) if r.get("theme") else ""),
                 html.Td(status_label(r["status"], lang), className=f"status status-{r['status']}"),
                 html.Td(fmt_when(r.get("last_seen")))]
        if actions:
            cells.append(html.Td([html.Button(t(f"action.{a}", lang), n_clicks=0,
                                              id={"type": f"{page}-action", "action": a, "alert": str(r["id"])},
                                              className=f"action-btn action-{a}")
                                  for a in (TABLE_ACTIONS if actions is True else actions)
                                  if a in OFFERED.get(str(r["status"]), ())]))
        rows.append(html.Tr(cells, id=f"{page}-alert-row-{r['id']}",
                            className="alert-focus" if focus is not None and str(r["id"]) == str(focus) else ""))
    head = [t(k, lang) for k in ("col.level", "col.region", "col.title", "col.theme", "col.status", "col.time")]
    if actions:
        head.append(t("col.actions", lang))
    return html.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
                      className="grid-table alerts-table", id=f"{page}-alerts-table")


def overdue_table(page: str, rows: list[dict], *, lang: str, tree) -> html.Div:
    """Dispatched alerts past their due time (督办), most overdue first: level, region, title
    (links to the alert's page, where it is handled), unit, due time, how long overdue."""
    if not rows:
        return html.Div(t("empty.overdue", lang), className="muted empty", id=f"{page}-overdue-empty")
    body = []
    for r in rows:
        try:
            region = tree.name(r["adcode"], lang=lang)
        except Exception:  # noqa: BLE001 - an unknown code is shown as it is
            region = r["adcode"]
        body.append(html.Tr([
            html.Td(level_badge(r["level"], lang)), html.Td(region),
            html.Td(dcc.Link(r.get("title") or "", href=f"/alert/{r['id']}" + query_string(lang=lang),
                             className="alert-link")),
            html.Td(r.get("assigned_unit") or ""), html.Td(fmt_when(r.get("due_at"))),
            html.Td(t("overdue.minutes", lang, n=int(r.get("overdue_min") or 0)), className="overdue-min"),
        ], id=f"{page}-overdue-row-{r['id']}"))
    head = [t(k, lang) for k in ("col.level", "col.region", "col.title", "col.unit", "col.due")] + [""]
    return html.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(body)],
                      className="grid-table alerts-table overdue-table", id=f"{page}-overdue-table")


def level_legend(lang: str, *, sensors: bool = False) -> html.Div:
    """What the map colours mean: the four warning levels and 正常 (a county map: its sensors'
    colours, green online without a warning, grey offline)."""
    items = [(LEVEL_COLOURS[lv], t(f"alert.level.{lv}", lang)) for lv in ("red", "orange", "yellow", "blue")]
    items += ([("#3fd07a", t("legend.online", lang)), ("#6b7785", t("legend.offline", lang))] if sensors
              else [(LEVEL_COLOURS["none"], t("alert.level.none", lang))])
    return html.Div([html.Span(t("legend.levels", lang), className="legend-title")]
                    + [html.Span([html.Span(className="legend-dot", style={"background": c}), label],
                                 className="legend-item") for c, label in items],
                    # the county map's own legend (sensor, camera, event) is on the left
                    className="map-legend" + (" map-legend-right" if sensors else ""))


def fmt_indicator(ind, value: float | None) -> str:
    """A vital sign's value as shown: rounded, a rate as percent.

    >>> from apps.catalogue import Indicator
    >>> fmt_indicator(Indicator("r", "r", "r", "sensor_online_rate", digits=1), 0.9567)
    '95.7'
    >>> fmt_indicator(Indicator("p", "p", "p", "metric_mean", digits=0), None)
    '—'
    """
    if value is None:
        return "—"
    if ind.kind == "sensor_online_rate":
        value = value * 100
    return f"{value:,.{ind.digits}f}"


VITAL_COLOURS = {"normal": "#3fd07a", "abnormal": "#e5242b", "unknown": "#6b7785"}


def vital_status_text(status: str, lang: str) -> str:
    """正常 / 异常, or "no data yet" for a vital sign without a value."""
    return t("vital." + status, lang) if status != "unknown" else t("empty.data", lang)


def vital_card(page: str, ind, v: dict, lang: str, spark: bool = True) -> html.Div:
    from apps.maps import sparkline

    status = v["status"]
    colour = VITAL_COLOURS[status]
    children = [
        html.Div(ind.label(lang), className="vital-label"),
        html.Div([html.Span(fmt_indicator(ind, v["value"]), className="vital-value",
                            id=f"{page}-vital-{ind.id}", style={"color": colour}),
                  html.Span(ind.unit_label(lang), className="vital-unit")]),
        html.Div(vital_status_text(status, lang), className="vital-status", id=f"{page}-vital-status-{ind.id}"),
    ]
    if spark and v.get("spark") is not None:
        children.append(dcc.Graph(figure=sparkline(v["spark"], colour=colour), config={"displayModeBar": False,
                                                                                      "staticPlot": True},
                                  className="vital-spark", id=f"{page}-spark-{ind.id}"))
    return html.Div(children, className=f"vital vital-{status}", **{"data-status": status})


def error_panel(message: str, lang: str) -> html.Div:
    """What a bad link shows (unknown adcode, wrong level): one line that says how to fix it."""
    return html.Div([html.H2("⚠"), html.P(message, className="error-message", id="error-message"),
                     dcc.Link(t("nav.province", lang), href="/province/440000" + query_string(lang=lang))],
                    className="page error-page")


def clock(page: str) -> html.Div:
    # China Standard Time from the first paint (the browser's tick keeps it so: common.wall_clock_callback)
    return html.Div(pd.Timestamp.now(tz="Asia/Shanghai").strftime("%Y-%m-%d %H:%M:%S"), id=f"{page}-clock",
                    className="clock")


def panel(title: str, body, *, id: str | None = None, cls: str = "") -> html.Section:
    kw = {"id": id} if id else {}
    parts = body if isinstance(body, list) else [body]  # a list: the panel's column, in order
    return html.Section([html.H3(title, className="panel-title"), *parts], className="panel " + cls, **kw)
