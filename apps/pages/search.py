"""/search?q= — the header's search box: sensors, cameras, places (regions by name, grid cells)
and alerts (by id or title) inside the caller's region, each linking to where it is handled;
every search is audited as a read."""

from __future__ import annotations

from urllib.parse import quote

import dash
from dash import dcc, html

from apps import audit
from apps.catalogue import label
from apps.components import error_panel, fmt_when, level_badge, panel, query_string, status_label, view_href
from apps.context import current_scope, engine
from apps.i18n import norm_lang, t
from apps.queries.search import search

PAGE = "search"
MAX_QUERY = 100  # characters: a search box, not a document


def sensor_href(county: str, sensor_id: str, qs: str) -> str:
    """The county view with the sensor picked (its series open), as the map's click makes it.

    >>> sensor_href("440106", "s 1", "?lang=en")
    '/county/440106?lang=en&sensor=s%201'
    """
    href = view_href("county", county, qs)
    return href + ("&" if "?" in href else "?") + "sensor=" + quote(sensor_id, safe="")


def _table(head: list[str], rows: list, name: str, lang: str):
    if not rows:
        return html.Div(t("search.none", lang), className="muted empty", id=f"{PAGE}-{name}-none")
    return html.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
                      className="grid-table", id=f"{PAGE}-{name}")


def results(found: dict, lang: str) -> list:
    """The result panels of one search (pure: rows in, components out)."""
    qs = query_string(lang=lang)
    sensors = [html.Tr([html.Td(dcc.Link(r["sensor_id"], href=sensor_href(r["county"], r["sensor_id"], qs))),
                        html.Td(label("metric", r["metric"], lang) if r.get("metric") else ""),
                        html.Td(r["county"]), html.Td(fmt_when(r.get("last_seen")))]) for r in found["sensors"]]
    cameras = [html.Tr([html.Td(dcc.Link(r["camera_id"], href=view_href("county", r["county"], qs))),
                        html.Td(r["county"]), html.Td(fmt_when(r.get("last_seen")))]) for r in found["cameras"]]
    places = []
    for r in found["places"]:
        name = r["name_en"] if lang == "en" else r["name"]
        if r["level"] == "grid":
            places.append(html.Tr([html.Td(dcc.Link(r["grid_id"], href=view_href("county", r["adcode"], qs))),
                                   html.Td(t("search.grid", lang)), html.Td(name)]))
        else:
            places.append(html.Tr([html.Td(dcc.Link(name, href=view_href(r["level"], r["adcode"], qs))),
                                   html.Td(t(f"level.{r['level']}", lang)), html.Td(r["adcode"])]))
    alerts = [html.Tr([html.Td(level_badge(r["level"], lang)),
                       html.Td(dcc.Link(r["id"], href=f"/alert/{r['id']}" + qs)), html.Td(r.get("title") or ""),
                       html.Td(status_label(r["status"], lang), className=f"status status-{r['status']}"),
                       html.Td(fmt_when(r.get("last_seen")))]) for r in found["alerts"]]
    return [
        panel(t("search.alerts", lang), _table([t("col.level", lang), t("search.alert_id", lang), t("col.title", lang),
                                                t("col.status", lang), t("col.time", lang)], alerts, "alerts", lang)),
        panel(t("search.places", lang), _table([t("col.region", lang), t("col.type", lang), t("col.adcode", lang)],
                                               places, "places", lang)),
        panel(t("search.sensors", lang), _table([t("col.sensor", lang), t("col.metric", lang), t("col.adcode", lang),
                                                 t("search.last_seen", lang)], sensors, "sensors", lang)),
        panel(t("search.cameras", lang), _table([t("search.camera", lang), t("col.adcode", lang),
                                                 t("search.last_seen", lang)], cameras, "cameras", lang)),
    ]


def layout(q: str | None = None, lang=None, **_query):
    lang = norm_lang(lang)
    scope = current_scope()
    if not scope.home:
        return error_panel(t("error.signin", lang), lang)
    q = str(q or "").strip()[:MAX_QUERY]
    found = search(engine(), q=q, scope=scope.home)
    audit.record_web("search", region=scope.home, target=q, rows={k: len(v) for k, v in found.items()})
    return html.Div([
        html.Div([html.H2(t("search.title", lang, q=q) if q else t("search.empty", lang), className="page-title",
                          id=f"{PAGE}-title")], className="page-head"),
        html.Div(results(found, lang) if q else [], className="search-results", id=f"{PAGE}-results"),
    ], className=f"page {PAGE}-page", id=f"{PAGE}-page")


dash.register_page(__name__, path="/search", name=PAGE, title="统管 · 搜索", layout=layout)
