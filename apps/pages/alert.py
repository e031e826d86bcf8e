"""One alert's own page, ``/alert/<id>``: where a duty officer handles it.

Its head (level, title, region, status, who handles it, where it is escalated, the dispatch with
unit and due time), the handling forms (take over, acknowledge, dispatch with unit and due time,
resolve with a note, verify and close, close as a false alarm, reopen), the timeline of every
transition and delivery, the readings that raised it with the rule's thresholds, cameras nearby
and their recent events, the corroborating alerts, and its incident. The data is
``apps.alert_detail``; each action is ``apps.handling.handle`` (access rule, audit, lifecycle).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import dash
import pandas as pd
from dash import ALL, Input, Output, State, callback, ctx, dcc, html, no_update

from apps import audit, handling
from apps.alert_detail import alert_detail
from apps.catalogue import label, theme_label
from apps.components import (
    OFFERED,
    error_panel,
    fmt_when,
    level_badge,
    panel,
    query_string,
    status_label,
)
from apps.context import current_scope, engine
from apps.errors import AppsError
from apps.i18n import MESSAGES, norm_lang, t, user_message
from apps.maps import series_figure
from apps.pages.subscriptions import channel_label
from tongguan import TongguanError

PAGE = "alert"
CHINA = timezone(timedelta(hours=8))
DUE_FORMAT = "%Y-%m-%d %H:%M"
# Which actions the page offers in each status (components.OFFERED: the lifecycle still decides;
# this keeps the forms that cannot apply out of the way).


def parse_due(text: str | None, lang: str) -> datetime:
    """The dispatch form's due time, ``YYYY-MM-DD HH:MM`` in China time (UTC+8)."""
    try:
        return datetime.strptime((text or "").strip(), DUE_FORMAT).replace(tzinfo=CHINA)
    except ValueError:
        raise AppsError(t("alertpage.bad_due", lang, value=text or "")) from None


def county_href(adcode: str, alert_id: str, lang: str) -> str:
    """The county view centred on the alert (its map and table)."""
    return f"/county/{adcode}?" + "&".join(x for x in (query_string(lang=lang)[1:], f"alert={alert_id}") if x)


def default_due(now: datetime | None = None) -> str:
    return ((now or datetime.now(CHINA)) + handling.DISPATCH_DUE).astimezone(CHINA).strftime(DUE_FORMAT)


def _region(tree, code: str | None, lang: str) -> str:
    code = str(code or "").strip()
    if not code:
        return ""
    try:
        return f"{tree.name(code[:6], lang=lang)}{code[6:]}"
    except Exception:  # noqa: BLE001 - a grid id or unknown code is shown as it is
        return code


def _namer(tree, lang: str):
    """adcode -> its name in ``lang`` (None when the tree does not know it), for notes."""
    return lambda code: tree.name(code, lang=lang) if code in tree else None


def _facts(a: dict, tree, lang: str) -> html.Div:
    rows = [("alertpage.region", _region(tree, a["adcode"], lang)),
            ("alertpage.status", status_label(a["status"], lang)),
            ("alertpage.owner", _region(tree, a.get("handling_region"), lang)),
            ("alertpage.visible", _region(tree, a.get("visible_at"), lang)),
            ("alertpage.first_seen", fmt_when(a.get("first_seen"))),
            ("alertpage.last_seen", fmt_when(a.get("last_seen")))]
    if a.get("escalation_reason"):
        rows.append(("alertpage.escalation", history_note(a["escalation_reason"], lang, _namer(tree, lang))))
    if a.get("assigned_unit"):
        rows += [("alertpage.unit", f"{a['assigned_unit']} · {_region(tree, a.get('assigned_region'), lang)}"),
                 ("alertpage.due", fmt_when(a.get("due_at")) + (" · " + t("alertpage.overdue", lang)
                                                              if a.get("overdue_at") else ""))]
    return html.Dl([x for key, value in rows for x in (html.Dt(t(key, lang)), html.Dd(value, id=f"{PAGE}-fact-{key[10:]}"))],
                   className="alert-facts", id=f"{PAGE}-facts")


def _button(action: str, lang: str, key: str | None = None):
    return html.Button(t(key or f"action.{action}", lang), n_clicks=0, className=f"action-btn action-{action}",
                       id={"type": f"{PAGE}-do", "action": action})


def form_state(status: str, lang: str, hidden: tuple = ()) -> tuple:
    """The parts of the forms that follow the alert's status: the quick buttons, the dispatch
    button, the note form's buttons, and whether each fieldset shows (``hidden``: actions not
    offered to this caller, e.g. taking over what their region already handles)."""
    offered = [x for x in OFFERED.get(status, ()) if x not in hidden]
    notes = [x for x in ("resolve", "close", "false_alarm", "reopen") if x in offered]
    return ([_button(x, lang) for x in ("take_over", "ack") if x in offered],
            [_button("dispatch", lang)] if "dispatch" in offered else [],
            [_button(x, lang, "action.verify_close" if x == "close" else None) for x in notes],
            {} if "dispatch" in offered else {"display": "none"},
            {} if notes else {"display": "none"})


def not_offered(eng, scope, a: dict) -> tuple:
    """Actions the page does not offer the caller: a take-over their region cannot make (it
    handles the alert already, or is below the region that does)."""
    from apps.policy import can_handle

    return () if can_handle(eng, scope, a, "take_over")[0] else ("take_over",)


def forms(status: str, lang: str, hidden: tuple = ()) -> html.Div:
    """The handling forms. The inputs stay in the page (the action callback reads them and
    empties them); the buttons and fieldsets follow the status."""
    quick, dispatch, notes, dispatch_style, note_style = form_state(status, lang, hidden)
    return html.Div([
        html.Div(quick, className="form-row", id=f"{PAGE}-quick"),
        html.Fieldset([
            html.Legend(t("alertpage.dispatch", lang)),
            html.Label(t("alertpage.unit", lang), className="f-label"),
            dcc.Input(id=f"{PAGE}-unit", value="", placeholder=t("alertpage.unit_hint", lang), className="text-input"),
            html.Label(t("alertpage.due", lang) + " (UTC+8)", className="f-label"),
            dcc.Input(id=f"{PAGE}-due", value=default_due(), placeholder="YYYY-MM-DD HH:MM",
                      className="text-input due-input"),
            html.Div(dispatch, id=f"{PAGE}-dispatch-buttons"),
        ], className="form-box", id=f"{PAGE}-dispatch-form", style=dispatch_style),
        html.Fieldset([
            html.Legend(t("alertpage.note_title", lang)),
            dcc.Textarea(id=f"{PAGE}-note", value="", placeholder=t("alertpage.note_hint", lang),
                         className="note-box"),
            html.Div(notes, className="form-row", id=f"{PAGE}-note-buttons"),
        ], className="form-box", id=f"{PAGE}-note-form", style=note_style),
    ], id=f"{PAGE}-forms")


_ADCODE = re.compile(r"(?<!\d)\d{6}(?!\d)")


def history_note(note: str | None, lang: str, name=None) -> str:
    """A history entry's note for the page: the lifecycle writes its own part in both languages
    ("派往 … / dispatched to …") before the person's note ("… | 请携泵车到场"); the page shows
    its language's half, regions by name (``name``: adcode -> name) instead of their codes.

    >>> history_note("440100 接管 / taken over by 440100 | 雨大", "zh", {"440100": "广州市"}.get)
    '广州市 接管 | 雨大'
    >>> history_note("440100 接管 / taken over by 440100", "en", {"440100": "Guangzhou"}.get)
    'taken over by Guangzhou'
    >>> history_note("ponding 42 cm", "zh")
    'ponding 42 cm'
    """
    from analytics.notes import in_language

    if name is None:
        return in_language(note, lang)
    return in_language(note, lang, lambda text: _ADCODE.sub(lambda m: name(m.group(0)) or m.group(0), text))


def collapse_updates(items: list[dict]) -> list[dict]:
    """The timeline with each run of "still there" entries (the detector's periodic updates,
    without a note) as one entry that says how many and until when.

    >>> rows = [{"kind": "history", "action": a, "ts": i, "note": None} for i, a in
    ...         enumerate(["opened", "updated", "updated", "updated", "acknowledged", "updated"])]
    >>> [(e["action"], e.get("repeats", 1), e.get("until")) for e in collapse_updates(rows)]
    [('opened', 1, None), ('updated', 3, 3), ('acknowledged', 1, None), ('updated', 1, None)]
    """
    out: list[dict] = []
    for e in items:
        prev = out[-1] if out else None
        if (e["kind"] == "history" and e["action"] == "updated" and not e.get("note") and prev is not None
                and prev["kind"] == "history" and prev["action"] == "updated" and not prev.get("note")):
            out[-1] = {**prev, "repeats": prev.get("repeats", 1) + 1, "until": e["ts"]}
        else:
            out.append(e)
    return out


def _timeline(items: list[dict], lang: str, name=None) -> html.Table:
    rows = []
    for e in collapse_updates(items):
        if e["kind"] == "history":
            key = f"history.{e['action']}"
            what = t(key, lang) if key in MESSAGES else e["action"]
            if e.get("repeats"):
                what += " " + t("history.repeats", lang, n=e["repeats"], until=fmt_when(e["until"]))
            rows.append(html.Tr([html.Td(fmt_when(e["ts"])), html.Td(what, className="tl-action"),
                                 html.Td(e.get("actor") or ""), html.Td(history_note(e.get("note"), lang, name))],
                                className=f"tl-history tl-{e['action']}"))
        else:
            channel = channel_label(e["channel"], lang)
            outcome = t(f"delivery.{e['delivery_status']}", lang)
            rows.append(html.Tr([html.Td(fmt_when(e["ts"])), html.Td(t("alertpage.delivery", lang), className="tl-action"),
                                 html.Td(e.get("recipient") or ""),
                                 html.Td(f"{channel} · {e.get('subscription') or ''} · {outcome}"
                                         + (f" ({e['last_error']})" if e.get("last_error") else ""))],
                                className="tl-delivery"))
    head = html.Thead(html.Tr([html.Th(t(k, lang)) for k in ("col.time", "alertpage.what", "alertpage.who",
                                                             "alertpage.detail")]))
    return html.Table([head, html.Tbody(rows)], className="grid-table timeline-table", id=f"{PAGE}-timeline")


def _readings(a: dict, lang: str):
    if not a["readings"]:
        return html.Div(t("alertpage.no_readings", lang), className="muted empty", id=f"{PAGE}-no-readings")
    df = pd.DataFrame(a["readings"])
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    metric = a.get("metric") or df["metric"].iloc[-1]
    title = f"{a.get('sensor_id') or ''} · {label('metric', metric, lang)}"
    return dcc.Graph(figure=series_figure(df, thresholds=a["thresholds"], lang=lang, title=title),
                     config={"displayModeBar": False}, id=f"{PAGE}-readings")


def _cameras(a: dict, lang: str):
    if not a["cameras"]:
        return html.Div(t("alertpage.no_cameras", lang), className="muted empty", id=f"{PAGE}-no-cameras")
    items = []
    for cam in a["cameras"]:
        events = [html.Li([html.Span(fmt_when(e["ts"]), className="tick-time"), " ", label("event", e["type"], lang),
                           f" · {e['confidence']:.2f}",
                           *([" · ", html.A(e["snapshot_uri"], href=e["snapshot_uri"], className="snapshot-uri",
                                            target="_blank")] if e.get("snapshot_uri") else [])])
                  for e in cam["events"]]
        items.append(html.Div([html.B(cam["camera_id"]), html.Span(f" · {cam['distance_m']} m", className="muted"),
                               html.Ul(events) if events else html.Div(t("alertpage.no_events", lang),
                                                                         className="muted")],
                              className="camera-item", id=f"{PAGE}-camera-{cam['camera_id']}"))
    return html.Div(items, id=f"{PAGE}-cameras")


def _corroborating(a: dict, lang: str):
    notes = [e for e in a["timeline"] if e["kind"] == "history" and e["action"] == "corroborated"]
    if not a["corroborating"] and not notes:
        return html.Div(t("alertpage.no_corroboration", lang), className="muted empty")
    rows = [html.Li([level_badge(o["level"], lang), " ", dcc.Link(html.Span(o["title"]), href=f"/alert/{o['id']}"),
                     f" · {o['subject']} · {o['distance_m']} m · {status_label(o['status'], lang)}"])
            for o in a["corroborating"]]
    rows += [html.Li([html.Span(fmt_when(e["ts"]), className="tick-time"), " ", e.get("note") or ""]) for e in notes]
    return html.Ul(rows, id=f"{PAGE}-corroborating")


def _incident(a: dict, lang: str):
    inc = a.get("incident")
    if not inc or inc["alerts"] < 2:
        return html.Div(t("alertpage.single", lang), className="muted", id=f"{PAGE}-incident")
    return html.Div([dcc.Link(t("alertpage.incident_link", lang, n=inc["alerts"], id=inc["id"]),
                              href=f"/incident/{inc['id']}" + query_string(lang=lang), id=f"{PAGE}-incident-link")],
                    id=f"{PAGE}-incident")


def body(eng, scope, alert_id: str, lang: str, a: dict | None = None):
    """The page but its forms (re-rendered after each action)."""
    from apps.queries import region_tree

    a = a or alert_detail(eng, scope, alert_id)
    tree = region_tree(eng)
    detail = a.get("detail") if isinstance(a.get("detail"), dict) else {}
    title = (detail.get("title_en") if lang == "en" else None) or a["title"]
    county = county_href(a["adcode"], a["id"], lang)
    return html.Div([
        html.Div([level_badge(a["level"], lang), html.H2(title, className="page-title", id=f"{PAGE}-title"),
                  html.Span(theme_label(a["theme"], lang), className="muted"),
                  dcc.Link(t("alertpage.on_map", lang), href=county, className="head-link", id=f"{PAGE}-county-link"),
                  dcc.Link(t("nav.alerts", lang), href="/alerts" + query_string(lang=lang), className="head-link")],
                 className="alert-head"),
        html.Div([
            html.Div([panel(t("alertpage.facts", lang), _facts(a, tree, lang))], className="side-col"),
            html.Div([panel(t("alertpage.timeline", lang), _timeline(
                          a["timeline"], lang, _namer(tree, lang))),
                      panel(t("alertpage.readings", lang), _readings(a, lang))], className="main-col"),
        ], className="main-row alert-main"),
        html.Div([panel(t("alertpage.cameras", lang), _cameras(a, lang)),
                  panel(t("alertpage.corroborating", lang), _corroborating(a, lang)),
                  panel(t("alertpage.incident", lang), _incident(a, lang))], className="main-row alert-extra"),
    ], id=f"{PAGE}-body")


def layout(alert_id: str | None = None, lang=None, **_query):
    lang = norm_lang(lang)
    scope = current_scope()
    if not scope.home:
        return error_panel(t("error.signin", lang), lang)
    eng = engine()
    try:
        a = alert_detail(eng, scope, str(alert_id or ""))
    except TongguanError as exc:
        status = getattr(exc, "status", 0)
        # Absent or outside the region (row-level security cannot tell them apart): a denial.
        audit.record_web("view_alert", target=str(alert_id or "")[:200], outcome="denied", status=status or 400,
                         reason=str(exc)[:200])
        return error_panel(t("alertpage.not_found", lang, id=alert_id or "") if status == 404 else user_message(exc, lang), lang)
    audit.record_web("view_alert", region=str(a.get("adcode") or "").strip() or None, target=str(alert_id))
    other = "en" if lang == "zh" else "zh"
    return html.Div([
        html.Div([dcc.Link(t("lang.switch", lang), href=f"/alert/{alert_id}" + query_string(lang=other),
                           className="lang-switch", id="lang-switch")], className="head-links"),
        html.Div(body(eng, scope, str(alert_id), lang, a), id=f"{PAGE}-content"),
        panel(t("alertpage.handle", lang), html.Div([html.Div(id=f"{PAGE}-result", className="action-result"),
                                                     forms(a["status"], lang, not_offered(eng, scope, a))]),
              cls="panel-handle"),
        dcc.Store(id=f"{PAGE}-params", data={"alert_id": str(alert_id), "lang": lang}),
    ], className=f"page {PAGE}-page", id=f"{PAGE}-page")


def apply(eng, *, alert_id: str, action: str, lang: str, note: str | None, unit: str | None,
          due: str | None) -> str:
    """One action of the page's forms; returns the new status (raises with the reason)."""
    if action == "dispatch":
        if not (unit or "").strip():
            raise AppsError(t("alertpage.need_unit", lang))
        return handling.handle(eng, alert_id=alert_id, action="dispatch", actor="web", note=note or None,
                               to_unit=unit.strip(), due_at=parse_due(due, lang))
    return handling.handle(eng, alert_id=alert_id, action=action, actor="web", note=(note or "").strip() or None)


@callback(Output(f"{PAGE}-result", "children"), Output(f"{PAGE}-content", "children"),
          Output(f"{PAGE}-quick", "children"), Output(f"{PAGE}-dispatch-buttons", "children"),
          Output(f"{PAGE}-note-buttons", "children"), Output(f"{PAGE}-dispatch-form", "style"),
          Output(f"{PAGE}-note-form", "style"),
          Output(f"{PAGE}-unit", "value"), Output(f"{PAGE}-note", "value"), Output(f"{PAGE}-due", "value"),
          Input({"type": f"{PAGE}-do", "action": ALL}, "n_clicks"),
          State(f"{PAGE}-note", "value"), State(f"{PAGE}-unit", "value"), State(f"{PAGE}-due", "value"),
          State(f"{PAGE}-params", "data"), prevent_initial_call=True)
def _do(clicks, note, unit, due, params):
    trig = ctx.triggered_id
    if not trig or not any(clicks):
        return (no_update,) * 10
    lang, aid = params["lang"], params["alert_id"]
    eng = engine()
    try:
        status = apply(eng, alert_id=aid, action=trig["action"], lang=lang, note=note, unit=unit, due=due)
    except TongguanError as exc:  # refused (access or lifecycle) or bad input: say why, keep what was typed
        return (html.Span(user_message(exc, lang), className="error", id=f"{PAGE}-error"),) + (no_update,) * 9
    msg = html.Span(t("alertpage.done", lang, action=t(f"action.{trig['action']}", lang),
                      status=status_label(status, lang)), className="ok", id=f"{PAGE}-ok")
    # The forms follow the new status and are emptied: a note is never carried into the next action.
    scope = current_scope()
    a = alert_detail(eng, scope, aid)
    return (msg, body(eng, scope, aid, lang, a), *form_state(status, lang, not_offered(eng, scope, a)), "", "",
            default_due())


dash.register_page(__name__, path_template="/alert/<alert_id>", name=PAGE, title="统管 · 预警详情", layout=layout)
