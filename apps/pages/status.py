"""/status — the platform's services (PostGIS, broker, workers), refreshed every few seconds."""

from __future__ import annotations

from datetime import datetime

import dash
from dash import Input, Output, State, callback, dcc, html

from apps.health import probe_broker, probe_database
from apps.i18n import norm_lang, t


def layout(lang: str | None = None, **_query):
    lang = norm_lang(lang)
    return html.Div([
        dcc.Store(id="status-lang", data=lang),
        html.Div([
            html.H2(t("status.title", lang)),
            dcc.Link(t("lang.switch", lang), href="?lang=" + ("en" if lang == "zh" else "zh"),
                     className="lang-switch"),
        ], className="page-head"),
        dcc.Interval(id="status-tick", interval=5000),
        html.Div(render(lang), id="status-body"),
    ], className="page status-page")


@callback(Output("status-body", "children"), Input("status-tick", "n_intervals"),
          State("status-lang", "data"), prevent_initial_call=True)
def refresh(_n, lang):
    return render(lang)


def _badge(up: bool, lang: str):
    return html.Span(t("state.up" if up else "state.down", lang),
                     className="badge " + ("badge-up" if up else "badge-down"),
                     **{"data-state": "up" if up else "down"})


def render(lang: str):
    from apps.context import current_config

    cfg = current_config()
    db = probe_database(cfg.database_url)
    kb = probe_broker(cfg.kafka_bootstrap)
    db_detail = (f"PostgreSQL {db['postgres']} · PostGIS {db['postgis']} · schema {db['revision']}"
                 if db["up"] else db["error"])
    kb_detail = (f"{len(kb['topics'])} topics" if kb["up"] else kb["error"])
    rows = [
        html.Tr([html.Td(t("status.postgres", lang)), html.Td(_badge(db["up"], lang)),
                 html.Td(cfg.database_url.split("@")[-1]), html.Td(db_detail)], id="status-row-postgres"),
        html.Tr([html.Td(t("status.kafka", lang)), html.Td(_badge(kb["up"], lang)),
                 html.Td(cfg.kafka_bootstrap), html.Td(kb_detail)], id="status-row-kafka"),
    ]
    services = html.Table([
        html.Thead(html.Tr([html.Th(t(k, lang)) for k in
                            ("status.service", "status.state", "status.address", "status.detail")])),
        html.Tbody(rows),
    ], className="grid-table")
    topics = html.Table([
        html.Thead(html.Tr([html.Th(t(k, lang)) for k in
                            ("status.topic", "status.partitions", "status.messages")])),
        html.Tbody([html.Tr([html.Td(name), html.Td(info["partitions"]), html.Td(f"{info['messages']:,}")])
                    for name, info in (kb.get("topics") or {}).items()]),
    ], className="grid-table")
    workers = db.get("workers") or []
    worker_list = (html.Ul([html.Li(f"{w['role']} · {w['worker']} · {w['last_seen']:%H:%M:%S}")
                            for w in workers]) if workers else html.P(t("status.no_workers", lang)))
    return [
        services,
        html.H3(t("status.topics", lang)), topics,
        html.H3(t("status.workers", lang)), worker_list,
        html.P(f"{t('status.updated', lang)} {datetime.now():%Y-%m-%d %H:%M:%S}", className="muted"),
    ]


# Registered explicitly with their layout: pages here are imported by the frame, not discovered.
dash.register_page(__name__, path="/status", name="status", title="统管 · 平台服务状态", layout=layout)
