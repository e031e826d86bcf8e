"""One incident's page, ``/incident/<id>``: the repeated alerts of one sensor, place and theme
(``analytics.alerting.incidents``), each linking to its alert page."""

from __future__ import annotations

import dash
from dash import dcc, html

from analytics.alerting.incidents import incident
from apps import audit
from apps.components import (
    error_panel,
    fmt_when,
    level_badge,
    panel,
    query_string,
    status_label,
)
from apps.context import current_scope, engine
from apps.i18n import norm_lang, t
from apps.pages.alert import county_href

PAGE = "incident"


def body(eng, incident_id: int, lang: str, inc: dict | None = None):
    """The page of one incident (None when absent, or outside the caller's region: row-level
    security hides it); ``inc`` when the caller has read it already."""
    inc = inc or incident(eng, incident_id)
    if inc is None:
        return None
    rows = [html.Tr([html.Td(level_badge(a["level"], lang)),
                     html.Td(dcc.Link(html.Span(a["title"]), href=f"/alert/{a['id']}" + query_string(lang=lang))),
                     html.Td(status_label(a["status"], lang), className=f"status status-{a['status']}"),
                     html.Td(fmt_when(a["first_seen"])), html.Td(fmt_when(a["last_seen"])), html.Td(a["count"]),
                     html.Td(a.get("assigned_unit") or "")], id=f"{PAGE}-alert-{a['id']}")
            for a in inc["alert_rows"]]
    head = html.Thead(html.Tr([html.Th(t(k, lang)) for k in (
        "col.level", "col.title", "col.status", "alertpage.first_seen", "alertpage.last_seen", "col.count",
        "alertpage.unit")]))
    return html.Div([
        html.Div([level_badge(inc["worst_level"], lang),
                  html.H2(t("incident.title", lang, id=inc["id"]) + " · " + inc["title"], className="page-title"),
                  html.Span(t("incident.summary", lang, n=inc["alerts"], k=inc["active_alerts"],
                              level=t(f"alert.level.{inc['worst_level']}", lang)), className="muted",
                            id=f"{PAGE}-summary"),
                  dcc.Link(t("alertpage.on_map", lang), className="head-link",
                           href=county_href(inc["adcode"], inc["latest_alert"], lang))],
                 className="alert-head"),
        panel(t("incident.alerts", lang), html.Table([head, html.Tbody(rows)], className="grid-table",
                                                     id=f"{PAGE}-alerts")),
    ], id=f"{PAGE}-body")


def layout(incident_id: str | None = None, lang=None, **_query):
    lang = norm_lang(lang)
    if not current_scope().home:
        return error_panel(t("error.signin", lang), lang)
    # Ids beyond a bigint are no incident (and would make the database raise).
    known = str(incident_id or "").isdigit() and int(incident_id) < 2 ** 63
    inc = incident(engine(), int(incident_id)) if known else None
    if inc is None:  # absent, or outside the caller's region (row-level security hides it): a denial
        audit.record_web("view_incident", target=str(incident_id or "")[:200], outcome="denied", status=404)
        return error_panel(t("incident.not_found", lang, id=incident_id or ""), lang)
    audit.record_web("view_incident", region=str(inc.get("adcode") or "").strip() or None, target=str(inc["id"]))
    content = body(engine(), inc["id"], lang, inc)
    return html.Div(content, className=f"page {PAGE}-page", id=f"{PAGE}-page")


dash.register_page(__name__, path_template="/incident/<incident_id>", name=PAGE, title="统管 · 事件", layout=layout)
