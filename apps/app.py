"""The Dash frame: one server; the views are discovered from ``apps/pages/`` by Dash
(``use_pages``), each registering itself with ``dash.register_page`` and its callbacks with
``dash.callback``. Dash runs the page modules for every app it makes, so each app of a process
(the server, tests, benchmarks, the screenshot helper) gets its own page callbacks."""

from __future__ import annotations

import json

import dash
from dash import dcc, html

from apps.context import AppConfig
from apps.i18n import t


def _fast_json() -> None:
    """Dash serialises every callback answer with plotly's ``to_json_plotly``. Its "orjson" engine
    (the default when orjson is installed, as here) first walks the whole answer in Python to clean
    it; the "json" engine hands it to the C encoder and is called back only for components and
    numpy values. Measured on a city page's layout (116 kB): 75 ms orjson, 40 ms json; a county
    page 26 vs 15 ms. The output is the same JSON (NaN as null in both)."""
    import plotly.io as pio

    pio.json.config.default_engine = "json"


def create_app(config: AppConfig) -> dash.Dash:
    _fast_json()
    app = dash.Dash(
        "apps",  # the package: pages are apps/pages/*.py (as apps.pages.<name>), assets apps/assets/
        use_pages=True,
        pages_folder="pages",
        title=t("app.title"),
        update_title=None,
        suppress_callback_exceptions=True,
        serve_locally=True,  # offline: government intranets have no CDN
    )
    app.server.config["TONGGUAN"] = config
    from apps import web  # log-in, region scope, audit, /api/v1

    web.install(app)

    # "/" is the province view of Guangdong: the server redirects (below); in-app navigation to
    # "/" lands on this page, which sends the browser on.
    dash.register_page("home", path="/", name="home", title=t("app.title"),
                       layout=lambda **_q: dcc.Location(id="home-redirect", href=HOME, refresh=True))

    @app.server.before_request
    def _home_is_the_province():
        # "/" opens the province view of Guangdong (the operations centre's start screen).
        import flask

        if flask.request.path == "/":
            query = flask.request.query_string.decode()
            return flask.redirect(HOME + ("?" + query if query else ""), code=302)
        return None

    @app.server.route("/geo/children/<adcode>.geojson")
    def _children_geojson(adcode: str):
        # The maps load their boundaries from here instead of carrying them in every figure:
        # the browser caches them, and the server does not re-serialise 200 KB per request.
        import flask

        from apps import queries
        from tongguan.db import engine_for

        from apps.context import current_scope
        from apps.policy import tree_for

        if not (len(adcode) == 6 and adcode.isdigit()):
            flask.abort(404)
        eng = engine_for(config.database_url)
        if not current_scope().within(tree_for(eng), adcode):  # boundaries of the caller's subtree only
            flask.abort(403)
        body, etag = queries.children_geojson_bytes(eng, adcode)
        if flask.request.if_none_match.contains(etag):
            return flask.Response(status=304)
        resp = flask.Response(body, mimetype="application/geo+json")
        resp.set_etag(etag)
        resp.cache_control.max_age = 3600
        resp.cache_control.private = True
        return resp

    app.layout = html.Div([
        dcc.Location(id="url", refresh="callback-nav"),
        html.Header([dcc.Link("统管 tongguan", href=HOME, className="brand", id="brand"),
                     # a plain GET form: /search?q= is a page of its own (shareable, audited)
                     html.Form([dcc.Input(name="q", type="search", id="search-q", className="search-input",
                                          placeholder=t("search.placeholder"), debounce=True),
                                dcc.Input(name="lang", type="hidden", id="search-lang", value="zh"),
                                html.Button(t("search.go"), type="submit", className="search-go",
                                            id="search-go")],
                               action="/search", method="get", id="search-form", className="search-form")],
                    className="topbar", id="topbar"),
        dash.page_container,
    ], id="frame")
    # The frame is drawn once per page load: the box shows the query on its results page, and
    # speaks (and searches in) the page's language.
    app.clientside_callback(
        """function(path, search) {
            const q = new URLSearchParams(search || "");
            const en = q.get("lang") === "en";
            return [path === "/search" ? (q.get("q") || "") : "", en ? %s : %s, en ? "en" : "zh", en ? %s : %s];
        }""" % tuple(json.dumps(t(k, lang), ensure_ascii=False)
                     for k in ("search.placeholder", "search.go") for lang in ("en", "zh")),
        dash.Output("search-q", "value"), dash.Output("search-q", "placeholder"), dash.Output("search-lang", "value"),
        dash.Output("search-go", "children"), dash.Input("url", "pathname"), dash.Input("url", "search"))
    return app


HOME = "/province/440000"

