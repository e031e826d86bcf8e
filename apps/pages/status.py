"""/status — the platform's services (PostGIS, broker, workers), refreshed every few seconds."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import dash
from dash import Input, Output, State, callback, dcc, html

from apps.health import probe_broker, probe_database
from apps.i18n import norm_lang, t

CHINA = ZoneInfo("Asia/Shanghai")  # every time on the screens is China Standard Time


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
    worker_list = _workers_table(workers, lang) if workers else html.P(t("status.no_workers", lang))
    lost = [w for w in workers if w.get("log_lost")]
    notices = [html.P(t("status.log_lost", lang).format(at=w["log_lost"]["at"][:19].replace("T", " "),
                                                       n=w["log_lost"]["unconsumed_lower_bound"], worker=w["worker"]),
                      className="notice notice-red", id=f"status-log-lost-{i}")
               for i, w in enumerate(lost)]
    if not kb["up"]:
        notices.insert(0, html.P(t("status.broker_down", lang), className="notice notice-red",
                                 id="status-broker-down"))
    return [
        *notices,
        services,
        html.H3(t("status.topics", lang)), topics,
        html.H3(t("status.workers", lang)), worker_list,
        html.P(f"{t('status.updated', lang)} {datetime.now(CHINA):%Y-%m-%d %H:%M:%S}", className="muted"),
    ]


def _workers_table(workers: list[dict], lang: str):
    """One row per worker: green when it makes progress, red with the reasons when not."""
    def age(v):
        return "—" if v is None else f"{v:.0f} s"

    rows = [html.Tr([
        html.Td(w["role"]), html.Td(w["worker"]),
        html.Td(html.Span(t(f"status.health.{w['health']}", lang), className=f"badge badge-{w['health']}",
                          **{"data-health": w["health"]})),
        html.Td(f"{w['lag']:,}"), html.Td(age(w["last_commit_age_s"])), html.Td(age(w["heartbeat_age_s"])),
        html.Td("; ".join(w["reasons"]) or (w.get("last_error") or "")),
    ], id=f"status-worker-{i}") for i, w in enumerate(workers)]
    head = ("status.role", "status.worker", "status.health", "status.lag", "status.last_commit",
            "status.heartbeat", "status.problem")
    return html.Table([html.Thead(html.Tr([html.Th(t(k, lang)) for k in head])), html.Tbody(rows)],
                      className="grid-table", id="status-workers")


# Registered explicitly with their layout: pages here are imported by the frame, not discovered.
dash.register_page(__name__, path="/status", name="status", title="统管 · 平台服务状态", layout=layout)
