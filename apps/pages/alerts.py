"""/alerts — every alert of the signed-in user's region subtree: filter by region (tree picker),
theme, level and status; select rows and handle them in bulk (acknowledge, dispatch, resolve with
note, close). Each alert goes through the county view's path (access check, audit, analytics
lifecycle); refused ones are listed with the reason, the rest are handled.

The initial filters come from the query string (``?region=440106&theme=flood&level=red,orange
&status=open&lang=en``), so a filtered list is a shareable link."""

from __future__ import annotations

from datetime import UTC, datetime

import dash
from dash import (
    ALL,
    Input,
    Output,
    State,
    callback,
    ctx,
    dash_table,
    dcc,
    html,
    no_update,
)

from analytics import ACTIVE_STATUSES, LEVELS, STATUSES
from apps import alerts_view as view
from apps import audit
from apps.catalogue import LEVEL_COLOURS, norm_theme
from apps.components import error_panel, panel, theme_selector
from apps.context import current_scope, engine
from apps.errors import AppsError
from apps.handling import DEFAULT_UNIT
from apps.i18n import norm_lang, t, user_message
from apps.live import LIVE_INTERVAL_MS
from apps.navigation import nav_links
from apps.pages.common import require_in_scope

PAGE = "alerts"


def _csv(text: str | None, allowed) -> list[str]:
    return [x for x in (text or "").split(",") if x in allowed]


def _columns(lang: str) -> list[dict]:
    return [{"id": "level_label", "name": t("col.level", lang)},
            {"id": "region", "name": t("col.region", lang)},
            {"id": "title", "name": t("col.title", lang)},
            {"id": "theme", "name": t("col.theme", lang)},
            {"id": "status_label", "name": t("col.status", lang)},
            {"id": "owner", "name": t("alerts.owner", lang)},
            {"id": "last_seen", "name": t("col.time", lang)}]


# DataTable sets its own (monospace) font; the page's font keeps Chinese and English alike.
FONT = '"Noto Sans CJK SC", "WenQuanYi Micro Hei", "Source Han Sans SC", "Microsoft YaHei", sans-serif'
_STATUS_COLOURS = {"open": "#ffb020", "acknowledged": "#7cc4ff", "dispatched": "#c58cff",
                   "resolved": "#3fd07a", "closed": "#3fd07a"}


def alerts_table(rows: list[dict], lang: str) -> dash_table.DataTable:
    """Selectable rows; DataTable renders every cell as text (alert titles are never HTML)."""
    cond = [{"if": {"filter_query": f'{{level}} = "{lv}"', "column_id": "level_label"},
             "backgroundColor": LEVEL_COLOURS[lv], "color": "#111" if lv in ("yellow", "orange") else "#fff",
             "fontWeight": 700, "textAlign": "center"} for lv in LEVELS]
    cond += [{"if": {"filter_query": f'{{status}} = "{s}"', "column_id": "status_label"}, "color": c}
             for s, c in _STATUS_COLOURS.items()]
    cond.append({"if": {"state": "selected"}, "backgroundColor": "#153462", "border": "1px solid #2f5b94"})
    return dash_table.DataTable(
        id=f"{PAGE}-table", columns=_columns(lang), data=rows, row_selectable="multi", selected_rows=[],
        page_action="native", page_size=20, sort_action="native", markdown_options={"html": False},
        style_as_list_view=True, cell_selectable=False,
        style_table={"overflowX": "auto"},
        style_header={"backgroundColor": "#102a4c", "color": "#cfe3ff", "fontWeight": 700,
                      "border": "1px solid #23406b"},
        style_data={"backgroundColor": "#0c2038", "color": "#e6eef8", "border": "1px solid #1b355b",
                    "whiteSpace": "normal", "height": "auto"},
        style_cell={"fontFamily": FONT, "fontSize": "13px", "padding": "5px 8px", "textAlign": "left",
                    "maxWidth": "460px"},
        style_cell_conditional=[{"if": {"column_id": "title"}, "minWidth": "300px"},
                                {"if": {"column_id": "level_label"}, "width": "60px"}],
        style_data_conditional=cond,
    )


def layout(region=None, theme=None, level=None, status=None, lang=None, **_query):
    lang = norm_lang(lang)
    scope = current_scope()
    if not scope.home:
        return error_panel(t("error.signin", lang), lang)
    eng = engine()
    theme = norm_theme(theme)
    levels = _csv(level, LEVELS)
    statuses = _csv(status, STATUSES) if status is not None else list(ACTIVE_STATUSES)
    if (region or "").strip():
        require_in_scope(region)  # a crafted navigation the page guard did not see: 403, audited
    shown_version = view.version(eng, scope.home)  # before the read: a change meanwhile shows next tick
    try:
        region = view.check_region(eng, scope.home, region)
        df = view.filter_alerts(eng, home=scope.home, region=region, theme=theme, levels=levels, statuses=statuses)
    except AppsError as exc:
        return error_panel(user_message(exc, lang), lang)
    rows = view.table_rows(df, lang, eng)
    audit.record_web("view_alerts", region=region, target="/alerts", rows=len(rows), theme=theme,
                     levels=levels, statuses=statuses)
    level_opts = [{"label": html.Span(t(f"alert.level.{lv}", lang), className=f"lv-chip lv-{lv}",
                                      style={"background": LEVEL_COLOURS[lv]}), "value": lv}
                  for lv in reversed(LEVELS)]
    status_opts = [{"label": t(f"alert.status.{s}", lang), "value": s} for s in STATUSES]
    filters = html.Div([
        html.Div([html.Label(t("alerts.region", lang), className="f-label"),
                  dcc.Dropdown(id=f"{PAGE}-region", options=view.region_options(eng, scope.home, lang),
                               value=region, clearable=False, searchable=True, className="region-picker")],
                 className="f-item f-region"),
        html.Div([html.Label(t("theme.label", lang), className="f-label"), theme_selector(PAGE, theme, lang)],
                 className="f-item"),
        html.Div([html.Label(t("alerts.levels", lang), className="f-label"),
                  dcc.Checklist(id=f"{PAGE}-levels", options=level_opts, value=levels, inline=True,
                                className="chip-list")], className="f-item"),
        html.Div([html.Label(t("alerts.statuses", lang), className="f-label"),
                  dcc.Checklist(id=f"{PAGE}-statuses", options=status_opts, value=statuses, inline=True,
                                className="chip-list")], className="f-item"),
    ], className="alerts-filters", id=f"{PAGE}-filters")
    bulk = html.Div([
        html.Button(t("alerts.select_all", lang), id=f"{PAGE}-select-all", n_clicks=0, className="action-btn"),
        html.Button(t("alerts.select_none", lang), id=f"{PAGE}-select-none", n_clicks=0, className="action-btn"),
        html.Span(t("alerts.count", lang, n=len(rows), k=0), id=f"{PAGE}-count", className="muted bulk-count"),
        dcc.Input(id=f"{PAGE}-note", placeholder=t("alerts.note_hint", lang, unit=DEFAULT_UNIT), className="note-input bulk-note",
                  debounce=False),
        html.Button(t("alerts.export", lang), id=f"{PAGE}-export", n_clicks=0, className="action-btn export-btn"),
        dcc.Download(id=f"{PAGE}-download"),
        html.Span(t("alerts.bulk", lang), className="bulk-label"),
        *[html.Button(t(f"action.{a}", lang), n_clicks=0, id={"type": f"{PAGE}-bulk", "action": a},
                      className=f"action-btn bulk-btn action-{a}") for a in view.BULK_ACTIONS],
    ], className="bulk-bar")
    return html.Div([
        html.Div([html.H2(t("alerts.title", lang), className="page-title"),
                  nav_links(PAGE, lang, {"region": region if region != scope.home else "",
                                         "theme": theme if theme != "all" else "", "level": ",".join(levels),
                                         "status": ",".join(statuses) if status is not None else ""},
                            eng=eng, home=scope.home)],
                 className="page-head"),
        filters,
        panel(t("panel.alerts", lang), html.Div([
            bulk,
            html.Div(id=f"{PAGE}-result", className="action-result"),
            html.Div(alerts_table(rows, lang), id=f"{PAGE}-table-wrap"),
        ]), cls="panel-alerts-page"),
        dcc.Store(id=f"{PAGE}-params", data={"lang": lang}),
        dcc.Store(id=f"{PAGE}-shown", data=shown_version),
        dcc.Interval(id=f"{PAGE}-live", interval=LIVE_INTERVAL_MS),
    ], className=f"page {PAGE}-page", id=f"{PAGE}-page")


@callback(Output(f"{PAGE}-table", "data"), Output(f"{PAGE}-table", "selected_rows"),
          Output(f"{PAGE}-result", "children"),
          Input(f"{PAGE}-region", "value"), Input(f"{PAGE}-theme", "value"), Input(f"{PAGE}-levels", "value"),
          Input(f"{PAGE}-statuses", "value"), Input({"type": f"{PAGE}-bulk", "action": ALL}, "n_clicks"),
          State(f"{PAGE}-table", "derived_virtual_data"), State(f"{PAGE}-table", "selected_rows"),
          State(f"{PAGE}-table", "data"), State(f"{PAGE}-note", "value"), State(f"{PAGE}-params", "data"),
          prevent_initial_call=True)
def _update(region, theme, levels, statuses, _clicks, _virtual, selected, rows, note, params):
    """A filter changed (re-read), or a bulk button was pressed (handle the selected, re-read)."""
    lang = params["lang"]
    scope = current_scope()
    eng = engine()
    result = no_update
    trig = ctx.triggered_id
    if isinstance(trig, dict) and trig.get("type") == f"{PAGE}-bulk":
        if not any(c for c in (_clicks or []) if c):
            return no_update, no_update, no_update
        ids = [rows[i]["id"] for i in (selected or []) if 0 <= i < len(rows or [])]
        if not ids:
            return no_update, no_update, html.Span(t("alerts.none_selected", lang), className="error")
        outcomes = view.bulk_action(eng, alert_ids=ids, action=trig["action"],
                                    actor=f"web:{scope.username}", note=note, lang=lang)
        ok = sum(o.ok for o in outcomes)
        result = html.Div([
            html.Span(t("alerts.bulk_done", lang, action=t(f"action.{trig['action']}", lang), ok=ok,
                        bad=len(outcomes) - ok), className="ok" if ok == len(outcomes) else "warn",
                      id=f"{PAGE}-bulk-summary"),
            html.Ul([html.Li([html.B(o.alert_id), " — ", o.message], className="refused")
                     for o in outcomes if not o.ok], id=f"{PAGE}-refused"),
        ])
    if (region or "").strip():
        require_in_scope(region)  # the picker only offers the caller's subtree: anything else is crafted
    try:
        df = view.filter_alerts(eng, home=scope.home, region=region, theme=theme or "all", levels=levels,
                                statuses=statuses)
    except AppsError as exc:
        return [], [], html.Span(user_message(exc, lang), className="error")
    rows = view.table_rows(df, lang, eng)
    audit.record_web("view_alerts", region=(region or "").strip() or scope.home, target="/alerts", rows=len(rows),
                     theme=theme, levels=levels, statuses=statuses)
    return rows, [], result


@callback(Output(f"{PAGE}-table", "data", allow_duplicate=True),
          Output(f"{PAGE}-table", "selected_rows", allow_duplicate=True), Output(f"{PAGE}-shown", "data"),
          Input(f"{PAGE}-live", "n_intervals"),
          State(f"{PAGE}-region", "value"), State(f"{PAGE}-theme", "value"), State(f"{PAGE}-levels", "value"),
          State(f"{PAGE}-statuses", "value"), State(f"{PAGE}-table", "data"), State(f"{PAGE}-table", "selected_rows"),
          State(f"{PAGE}-shown", "data"), State(f"{PAGE}-params", "data"), prevent_initial_call=True)
def _live(_n, region, theme, levels, statuses, rows, selected, shown, params):
    """Live: when an alert of the user's region changed, the list is read again with the filters
    on screen; the selected alerts stay selected (by id). A refresh of the view already opened
    (and audited) is not audited again."""
    scope = current_scope()
    eng = engine()
    now = view.version(eng, scope.home)
    if now == shown:
        return no_update, no_update, no_update
    if (region or "").strip():
        require_in_scope(region)  # the picker only offers the caller's subtree: anything else is crafted
    try:
        df = view.filter_alerts(eng, home=scope.home, region=region, theme=theme or "all", levels=levels,
                                statuses=statuses)
    except AppsError:
        return no_update, no_update, now
    new_rows = view.table_rows(df, params["lang"], eng)
    return new_rows, view.keep_selection(rows, selected, new_rows), now


@callback(Output(f"{PAGE}-download", "data"), Input(f"{PAGE}-export", "n_clicks"),
          State(f"{PAGE}-region", "value"), State(f"{PAGE}-theme", "value"), State(f"{PAGE}-levels", "value"),
          State(f"{PAGE}-statuses", "value"), State(f"{PAGE}-params", "data"), prevent_initial_call=True)
def _export(clicks, region, theme, levels, statuses, params):
    """The list as filtered on screen, as CSV: read again under the caller's scope, audited."""
    if not clicks:
        return no_update
    scope = current_scope()
    eng = engine()
    if (region or "").strip():
        require_in_scope(region)  # the picker only offers the caller's subtree: anything else is crafted
    df = view.filter_alerts(eng, home=scope.home, region=region, theme=theme or "all", levels=levels,
                            statuses=statuses)
    rows = view.table_rows(df, params["lang"], eng)
    audit.record_web("export_alerts", region=(region or "").strip() or scope.home, target="/alerts",
                     rows=len(rows), theme=theme, levels=levels, statuses=statuses, format="csv")
    name = f"alerts-{(region or scope.home).strip()}-{datetime.now(UTC):%Y%m%d-%H%M}.csv"
    return {"content": view.csv_text(rows, params["lang"]), "filename": name, "type": "text/csv"}


@callback(Output(f"{PAGE}-table", "selected_rows", allow_duplicate=True),
          Input(f"{PAGE}-select-all", "n_clicks"), Input(f"{PAGE}-select-none", "n_clicks"),
          State(f"{PAGE}-table", "data"), prevent_initial_call=True)
def _select(_all, _none, rows):
    if ctx.triggered_id == f"{PAGE}-select-all":
        return list(range(len(rows or [])))
    return []


@callback(Output(f"{PAGE}-count", "children"), Input(f"{PAGE}-table", "data"),
          Input(f"{PAGE}-table", "selected_rows"), State(f"{PAGE}-params", "data"))
def _count(rows, selected, params):
    return t("alerts.count", params["lang"], n=len(rows or []), k=len(selected or []))


# Registered with its layout: the frame imports the pages explicitly (no folder discovery).
dash.register_page(__name__, path="/alerts", name=PAGE, title="统管 · 预警事件", layout=layout,
                   nav="nav.alerts", nav_id="alerts", order=1)
