"""The Dash frame: one server, pages registered per view (``dash.register_page``)."""

from __future__ import annotations

from dataclasses import dataclass

import dash
from dash import dcc, html

from apps.i18n import t


@dataclass(frozen=True)
class AppConfig:
    """What the pages read at request time (through ``flask.current_app``)."""

    database_url: str
    kafka_bootstrap: str


def create_app(config: AppConfig) -> dash.Dash:
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder="",  # pages are imported explicitly below, not discovered from a folder
        title=t("app.title"),
        update_title=None,
        suppress_callback_exceptions=True,
        serve_locally=True,  # offline: government intranets have no CDN
    )
    app.server.config["TONGGUAN"] = config
    from apps.auth import install as install_access  # log-in, region scope, audit, /api/v1

    install_access(app)
    from apps.pages import status  # noqa: F401  (registers its page)
    from apps.pages import city, county, province  # noqa: F401  (register their pages)

    @app.server.before_request
    def _home_is_the_province():
        # "/" opens the province view of Guangdong (the operations centre's start screen).
        import flask

        if flask.request.path == "/":
            query = flask.request.query_string.decode()
            return flask.redirect(HOME + ("?" + query if query else ""), code=302)
        return None

    app.layout = html.Div([
        dcc.Location(id="url", refresh="callback-nav"),
        html.Header([dcc.Link("统管 tongguan", href=HOME, className="brand", id="brand")],
                    className="topbar", id="topbar"),
        dash.page_container,
    ], id="frame")
    return app


HOME = "/province/440000"


def current_config() -> AppConfig:
    import flask

    return flask.current_app.config["TONGGUAN"]
