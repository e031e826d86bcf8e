"""The Dash frame: one server, pages registered per view (``dash.register_page``)."""

from __future__ import annotations

import dash
from dash import dcc, html

from apps.context import AppConfig
from apps.i18n import t

# The page callbacks (``dash.callback`` at import), as they stood once every page was imported.
_PAGE_CALLBACKS: tuple[dict, list, list] | None = None


def _share_page_callbacks() -> None:
    """Give every app of this process the page callbacks.

    Dash moves the ``dash.callback`` registrations into the FIRST app that serves a request and
    clears the global lists, so a second app in the same process (tests, benchmarks, the
    screenshot helper) would render pages whose callbacks never fire. Keep a copy the first time
    and put it back before each further app; replacing (not extending) the globals means no
    callback is ever registered twice.
    """
    global _PAGE_CALLBACKS
    from dash import _callback

    if _PAGE_CALLBACKS is None:
        _PAGE_CALLBACKS = (dict(_callback.GLOBAL_CALLBACK_MAP), list(_callback.GLOBAL_CALLBACK_LIST),
                           list(_callback.GLOBAL_INLINE_SCRIPTS))
        return
    callback_map, callback_list, inline_scripts = _PAGE_CALLBACKS
    _callback.GLOBAL_CALLBACK_MAP.clear()
    _callback.GLOBAL_CALLBACK_MAP.update(callback_map)
    _callback.GLOBAL_CALLBACK_LIST[:] = callback_list
    _callback.GLOBAL_INLINE_SCRIPTS[:] = inline_scripts


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
    from apps import web  # log-in, region scope, audit, /api/v1

    web.install(app)
    from apps.pages import (  # noqa: F401  (register their pages)
        alert,
        alerts,
        city,
        county,
        incident,
        province,
        status,  # noqa: F401  (registers its page)
        subscriptions,
    )

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

        from apps import data
        from tongguan.db import engine_for

        if not (len(adcode) == 6 and adcode.isdigit()):
            flask.abort(404)
        body, etag = data.children_geojson_bytes(engine_for(config.database_url), adcode)
        if flask.request.if_none_match.contains(etag):
            return flask.Response(status=304)
        resp = flask.Response(body, mimetype="application/geo+json")
        resp.set_etag(etag)
        resp.cache_control.max_age = 3600
        resp.cache_control.private = True
        return resp

    _share_page_callbacks()
    app.layout = html.Div([
        dcc.Location(id="url", refresh="callback-nav"),
        html.Header([dcc.Link("统管 tongguan", href=HOME, className="brand", id="brand")],
                    className="topbar", id="topbar"),
        dash.page_container,
    ], id="frame")
    return app


HOME = "/province/440000"

