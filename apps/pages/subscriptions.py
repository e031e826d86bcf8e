"""/subscriptions — the signed-in user's alert subscriptions: create and edit (region tree picker,
themes, minimum level, channels, quiet hours, escalated-only), remove, send a test delivery; and
the in-app inbox with read/unread. The work is :mod:`apps.subscriptions_view` (scoped, audited)."""

from __future__ import annotations

import dash
from dash import ALL, Input, Output, State, callback, ctx, dcc, html, no_update

from analytics import LEVELS
from analytics.alerting.channels import channel, channels, setting_fields
from apps import subscriptions_view as view
from apps.alerts_view import region_options
from apps.catalogue import LEVEL_COLOURS, theme_label, themes
from apps.components import error_panel, fmt_when, panel, query_string
from apps.context import current_scope, engine
from apps.i18n import norm_lang, t, user_message
from apps.live import LIVE_INTERVAL_MS
from apps.navigation import nav_links
from tongguan import TongguanError

PAGE = "subs"
# The form's inputs; each channel's settings come from the channel registry, in view.fields() order.
FORM = ("name", "region", "themes", "level", "channels", *(f"set-{f.name}" for f in setting_fields()),
        "quiet-start", "quiet-end", "escalated")


def channel_label(name: str, lang: str) -> str:
    try:
        return channel(name).label(lang)
    except TongguanError:  # a channel no longer offered, on an old subscription
        return name


def _tree_name(eng, adcode: str, lang: str) -> str:
    from apps import queries

    try:
        return queries.region_tree(eng).name(adcode, lang=lang)
    except Exception:  # noqa: BLE001
        return adcode


def subs_list(eng, rows: list[dict], lang: str):
    """The user's subscriptions, each with edit / test / remove (names are text, never HTML)."""
    if not rows:
        return html.Div(t("subs.empty", lang), className="muted empty", id=f"{PAGE}-empty")
    body = []
    for r in rows:
        rule = [html.Span(t(f"alert.level.{r['min_level']}", lang) + "+", className="level-badge",
                          style={"background": LEVEL_COLOURS.get(r["min_level"], "#555")}),
                " " + (" · ".join(theme_label(x, lang) for x in r["themes"]) or t("subs.all_themes", lang))]
        if r.get("quiet_start"):
            rule.append(html.Div(t("subs.quiet_short", lang, start=view.fmt_time(r["quiet_start"]),
                                   end=view.fmt_time(r["quiet_end"])), className="quiet-tag"))
        if r.get("escalated_only"):
            rule.append(html.Div(t("subs.escalated_short", lang), className="quiet-tag"))
        body.append(html.Tr([
            html.Td(f"#{r['id']}", className="muted"),
            html.Td([html.Div(r["name"], className="sub-name"),
                     html.Div(_tree_name(eng, r["adcode"], lang), className="muted")]),
            html.Td(rule),
            html.Td(", ".join(channel_label(c, lang) for c in r["channels"])),
            html.Td([html.Button(t(f"subs.{a}", lang), n_clicks=0, className=f"action-btn sub-{a}",
                                 id={"type": f"{PAGE}-act", "action": a, "sub": r["id"]})
                     for a in ("edit", "test", "remove")]),
        ], id=f"{PAGE}-row-{r['id']}"))
    head = html.Thead(html.Tr([html.Th("#"), html.Th(t("subs.name", lang)), html.Th(t("subs.col.rule", lang)),
                               html.Th(t("subs.col.channels", lang)), html.Th(t("col.actions", lang))]))
    return html.Table([head, html.Tbody(body)], className="grid-table subs-table", id=f"{PAGE}-table")


def inbox_list(eng, scope, lang: str, unread_only: bool = False):
    rows = view.inbox(eng, scope, unread_only=unread_only)
    if not rows:
        return html.Div(t("inbox.empty", lang), className="muted empty", id="inbox-empty")
    items = []
    for m in rows:
        unread = m["read_at"] is None
        items.append(html.Div([
            html.Details([
                html.Summary([html.Span("●" if unread else "○", className="inbox-dot"),
                              html.Span(fmt_when(m["created_at"]), className="tick-time"),
                              html.Span(m["title"] or "", className="inbox-title")]),
                html.Div(m["body"] or "", className="inbox-body"),
            ]),
            *([dcc.Link(t("nav.inbox_alert", lang), href=f"/alert/{m['alert_id']}" + query_string(lang=lang),
                        className="head-link inbox-alert-link", id=f"inbox-alert-{m['id']}")]
              if m.get("alert_id") else []),
            html.Button(t("inbox.read" if unread else "inbox.unread_btn", lang), n_clicks=0,
                        className="action-btn inbox-toggle",
                        id={"type": "inbox-toggle", "msg": m["id"], "read": unread}),
        ], className="inbox-item " + ("inbox-unread" if unread else "inbox-read"), id=f"inbox-msg-{m['id']}"))
    return html.Div(items, id="inbox-items")


def form(eng, scope, lang: str):
    def field(label, control, cls=""):
        return html.Div([html.Label(label, className="f-label"), control], className="f-item " + cls)

    return html.Div([
        field(t("subs.name", lang), dcc.Input(id=f"{PAGE}-name", className="text-input", value="")),
        field(t("subs.region", lang), dcc.Dropdown(id=f"{PAGE}-region", options=region_options(eng, scope.home, lang),
                                                    value=scope.home, clearable=False, className="region-picker")),
        field(t("subs.themes", lang), dcc.Checklist(id=f"{PAGE}-themes", value=[], inline=True,
                                                     className="chip-list",
                                                     options=[{"label": theme_label(k, lang), "value": k}
                                                              for k in themes()])),
        field(t("subs.min_level", lang), dcc.RadioItems(
            id=f"{PAGE}-level", value="yellow", inline=True, className="chip-list",
            options=[{"label": html.Span(t(f"alert.level.{lv}", lang), className=f"lv-chip lv-{lv}",
                                         style={"background": LEVEL_COLOURS[lv]}), "value": lv} for lv in LEVELS])),
        field(t("subs.channels", lang), dcc.Checklist(
            id=f"{PAGE}-channels", value=["inbox"], inline=True, className="chip-list",
            options=[{"label": c.label(lang), "value": c.name} for c in channels()])),
        html.Div([field(f.label(lang), dcc.Input(id=f"{PAGE}-set-{f.name}", className="text-input",
                                                 placeholder=f.placeholder, value=""))
                  for f in setting_fields()], className="f-row"),
        field(t("subs.quiet", lang), html.Div([
            dcc.Input(id=f"{PAGE}-quiet-start", className="time-input", placeholder="22:00", value=""),
            html.Span("–"),
            dcc.Input(id=f"{PAGE}-quiet-end", className="time-input", placeholder="07:00", value="")],
            className="quiet")),
        dcc.Checklist(id=f"{PAGE}-escalated", value=[], className="chip-list",
                      options=[{"label": t("subs.escalated_only", lang), "value": "yes"}]),
        html.Div([html.Button(t("subs.save", lang), id=f"{PAGE}-save", n_clicks=0, className="primary-btn"),
                  html.Button(t("subs.new", lang), id=f"{PAGE}-new", n_clicks=0, className="action-btn")],
                 className="form-buttons"),
    ], className="subs-form", id=f"{PAGE}-form")


def layout(lang=None, **_query):
    lang = norm_lang(lang)
    scope = current_scope()
    if not scope.home:
        return error_panel(t("error.signin", lang), lang)
    eng = engine()
    return html.Div([
        html.Div([html.H2(t("subs.title", lang), className="page-title"),
                  nav_links("subscriptions", lang, eng=eng, home=scope.home)], className="page-head"),
        html.Div(id=f"{PAGE}-msg", className="action-result"),
        html.Div([
            html.Section([html.H3(t("subs.form_new", lang), id=f"{PAGE}-form-title", className="panel-title"),
                          form(eng, scope, lang)], className="panel panel-form"),
            panel(t("subs.mine", lang), html.Div(subs_list(eng, view.list_mine(eng, scope), lang),
                                                 id=f"{PAGE}-list"), cls="panel-subs"),
            panel(t("inbox.title", lang), html.Div([
                html.Div([html.Span(t("inbox.unread", lang, n=view.unread(eng, scope)), id="inbox-unread",
                                    className="inbox-count"),
                          dcc.Checklist(id="inbox-unread-only", value=[], className="chip-list",
                                        options=[{"label": t("inbox.unread_only", lang), "value": "yes"}]),
                          html.Button(t("inbox.mark_all", lang), id="inbox-mark-all", n_clicks=0,
                                      className="action-btn")], className="inbox-bar"),
                html.Div(inbox_list(eng, scope, lang), id="inbox-list"),
            ]), cls="panel-inbox"),
        ], className="subs-row"),
        dcc.Store(id=f"{PAGE}-editing", data=None),
        dcc.Store(id=f"{PAGE}-params", data={"lang": lang}),
        dcc.Store(id="inbox-refresh", data=0),
        dcc.Store(id="inbox-shown", data=view.inbox_version(eng, scope)),
        dcc.Interval(id="inbox-live", interval=LIVE_INTERVAL_MS),
    ], className="page subscriptions-page", id="subscriptions-page")


def _form_values(row: dict | None, home: str) -> list:
    if row is None:
        return ["", home, [], "yellow", ["inbox"], *("" for _ in setting_fields()), "", "", []]
    return [row["name"], row["adcode"], list(row["themes"]), row["min_level"], list(row["channels"]),
            *(row.get(f.name) or "" for f in setting_fields()), view.fmt_time(row.get("quiet_start")),
            view.fmt_time(row.get("quiet_end")), ["yes"] if row.get("escalated_only") else []]


@callback([Output(f"{PAGE}-{k}", "value") for k in FORM]
          + [Output(f"{PAGE}-editing", "data"), Output(f"{PAGE}-form-title", "children"),
             Output(f"{PAGE}-msg", "children"), Output(f"{PAGE}-list", "children"),
             Output("inbox-refresh", "data")],
          Input(f"{PAGE}-save", "n_clicks"), Input(f"{PAGE}-new", "n_clicks"),
          Input({"type": f"{PAGE}-act", "action": ALL, "sub": ALL}, "n_clicks"),
          [State(f"{PAGE}-{k}", "value") for k in FORM]
          + [State(f"{PAGE}-editing", "data"), State(f"{PAGE}-params", "data"), State("inbox-refresh", "data")],
          prevent_initial_call=True)
def _subs_action(_save, _new, act_clicks, *states):
    values, editing, params, refresh = list(states[:len(FORM)]), states[-3], states[-2], states[-1]
    lang = params["lang"]
    scope = current_scope()
    eng = engine()
    trig = ctx.triggered_id
    keep = [no_update] * len(FORM)
    title_new = t("subs.form_new", lang)
    try:
        if trig == f"{PAGE}-new":
            return _form_values(None, scope.home) + [None, title_new, "", no_update, no_update]
        if trig == f"{PAGE}-save":
            f = dict(zip(view.fields(), values))
            f["escalated_only"] = bool(f["escalated_only"])
            row = view.save(eng, scope, f, sub_id=editing)
            msg = [html.Span(t("subs.saved", lang, id=row["id"]), className="ok", id=f"{PAGE}-saved")]
            if editing is None and row.get("secret"):
                msg.append(html.Div(t("subs.secret", lang, secret=row["secret"]), className="secret"))
            return keep + [row["id"], t("subs.form_edit", lang, id=row["id"]), html.Div(msg),
                           subs_list(eng, view.list_mine(eng, scope), lang), no_update]
        if isinstance(trig, dict) and trig.get("type") == f"{PAGE}-act":
            if not any(c for c in act_clicks if c):
                return keep + [no_update] * 5
            sub_id, action = int(trig["sub"]), trig["action"]
            if action == "edit":
                row = view.get_mine(eng, scope, sub_id)
                return _form_values(row, scope.home) + [sub_id, t("subs.form_edit", lang, id=sub_id), "",
                                                        no_update, no_update]
            if action == "remove":
                view.remove(eng, scope, sub_id)
                reset = editing == sub_id
                return ((_form_values(None, scope.home) if reset else keep)
                        + [None if reset else no_update, title_new if reset else no_update,
                           html.Span(t("subs.removed", lang, id=sub_id), className="ok"),
                           subs_list(eng, view.list_mine(eng, scope), lang), no_update])
            if action == "test":
                results = view.send_test_delivery(eng, scope, sub_id)
                text = "; ".join(f"{channel_label(c, lang)} {view.delivery_outcome(ok, detail, lang)}"
                                 for c, ok, detail in results)
                ok = all(ok for _, ok, _ in results)
                return keep + [no_update, no_update,
                               html.Span(t("subs.tested", lang, id=sub_id, result=text),
                                         className="ok" if ok else "error", id=f"{PAGE}-tested"),
                               no_update, (refresh or 0) + 1]
    except TongguanError as exc:  # bad input or outside the user's region: one line, no traceback
        return keep + [no_update, no_update, html.Span(user_message(exc, lang), className="error", id=f"{PAGE}-error"),
                       no_update, no_update]
    return keep + [no_update] * 5


@callback(Output("inbox-refresh", "data", allow_duplicate=True), Input("inbox-live", "n_intervals"),
          State("inbox-shown", "data"), State("inbox-refresh", "data"), prevent_initial_call=True)
def _inbox_live(_n, shown, refresh):
    """Live: a message delivered (or changed) since the list was drawn draws it again."""
    if view.inbox_version(engine(), current_scope()) == shown:
        return no_update
    return (refresh or 0) + 1


@callback(Output("inbox-list", "children"), Output("inbox-unread", "children"),
          Output("inbox-shown", "data"),
          Input("inbox-mark-all", "n_clicks"), Input({"type": "inbox-toggle", "msg": ALL, "read": ALL}, "n_clicks"),
          Input("inbox-unread-only", "value"), Input("inbox-refresh", "data"),
          State(f"{PAGE}-params", "data"), prevent_initial_call=True)
def _inbox(_all, toggles, unread_only, _refresh, params):
    lang = params["lang"]
    scope = current_scope()
    eng = engine()
    trig = ctx.triggered_id
    if trig == "inbox-mark-all":
        view.set_read(eng, scope, None, True)
    elif isinstance(trig, dict) and trig.get("type") == "inbox-toggle":
        if not any(c for c in toggles if c):
            return no_update, no_update, no_update
        view.set_read(eng, scope, [int(trig["msg"])], bool(trig["read"]))
    version = view.inbox_version(eng, scope)  # before the read: a message meanwhile shows next tick
    return (inbox_list(eng, scope, lang, unread_only=bool(unread_only)),
            t("inbox.unread", lang, n=view.unread(eng, scope)), version)


dash.register_page(__name__, path="/subscriptions", name="subscriptions", title="统管 · 预警订阅", layout=layout,
                   nav="nav.subscriptions", nav_id="subs", order=2)
