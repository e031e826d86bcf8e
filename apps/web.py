"""The web server's wiring: sessions, CSRF, rate limits and the guard in front of every page, on
the Dash app's Flask server; then the log-in and admin pages (``apps.access_pages``) and the JSON
API (``apps.api``) beside the views.

- Sessions: Flask's signed cookie (``TONGGUAN_SECRET_KEY`` from the environment; Settings refuses
  the development default outside development), HttpOnly, SameSite=Lax, Secure outside
  development. The session holds the user id, the time the password was last set, the user's
  session version (``users.session_version``: log-out, a reset or a disable bump it, so every
  earlier cookie ends at its next request, in every server process) and a random nonce.
- Admin pages (``/status``, ``/catalogue``, ``/quality``, ``/audit``) answer 403 to others; request
  bodies are capped (``MAX_BODY``); every answer carries a Content-Security-Policy; every refusal
  (4xx) is in the audit log.
- CSRF: the log-in, log-out forms carry a Flask-WTF token; Dash's JSON callbacks must be
  same-origin (``Origin`` header) and JSON (a cross-site form cannot send ``application/json``).
- Every request runs under the caller's region scope (``apps.scope``): the pages
  ``/province|city|county/<adcode>`` and Dash navigation to them answer 403 outside the scope,
  and every database connection of the request is switched to row-level security.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs

from apps import access_pages, api, audit
from apps import scope as scope_mod
from apps.context import current_scope, current_user, same_origin
from apps.errors import AccessError
from apps.identity import scope_of
from apps.policy import tree_for
from apps.scope import Scope

SESSION_HOURS = 12
REGION_PATH = re.compile(r"^/(province|city|county)/([^/?#]+)")
STATIC_PREFIXES = ("/assets/", "/_dash-component-suites/", "/_favicon.ico", "/favicon.ico")
PUBLIC_PREFIXES = ("/login", "/api/", "/healthz", *STATIC_PREFIXES)
# Pages for admins only (README): the platform's internals and the governance views.
ADMIN_PATHS = re.compile(r"^/(status|catalogue|quality/[^/]*|audit)/?$")
# Request bodies: Dash callbacks and API calls are small; a bigger body is refused unread (413).
MAX_BODY = 4 * 1024 * 1024
# Answers that refuse something: each is in the audit log (a catch-all records those nothing else did).
DENIALS = (400, 401, 403, 404, 405, 413, 429)
# The views take their region from the path only (``/county/<adcode>``).
PATH_VARIABLES = ("adcode",)
# Pages that take a region filter from the query string (``/alerts?region=440106``): guarded
# like a region path, so a foreign region is a 403 page and an audited denial, not an empty list.
REGION_QUERY_PATHS = re.compile(r"^/alerts/?$")


def norm_path(value: str) -> str:
    """A path as Dash's router reads it: no query or fragment, runs of slashes collapsed (a
    browser and Dash treat ``//county/x`` as ``/county/x``; ``urlparse`` would call ``county`` a host).

    >>> norm_path("//county//440303?theme=flood"), norm_path("http://h:1/city/440100#x")
    ('/county/440303', '/city/440100')
    """
    text = str(value or "")
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        text = "/" + text.split("://", 1)[1].partition("/")[2]
    text = text.split("#", 1)[0].split("?", 1)[0]
    return re.sub(r"/{2,}", "/", text) or "/"


def install(app) -> None:
    """Put log-in, sessions, scoping, the page guard, CSRF, rate limits, the log-in, audit and
    governance pages and the JSON API on the Dash app's Flask server. Called once by
    ``apps.app.create_app``."""
    import flask
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    from tongguan.db import engine_for
    from tongguan.settings import get_settings

    server = app.server if hasattr(app, "server") else app
    settings = get_settings()
    config = server.config["TONGGUAN"]
    engine = scope_mod.install(engine_for(config.database_url, pre_ping=False))  # the scope switch pings
    server.config["TONGGUAN_ENGINE"] = engine
    server.secret_key = settings.secret_key.get_secret_value()
    server.config.update(
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.env != "development",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        # The cookie is written only when the session changes: the many concurrent Dash callback
        # answers must not race to overwrite it (and its CSRF token); sessions end SESSION_HOURS
        # after log-in, however active.
        SESSION_REFRESH_EACH_REQUEST=False,
        WTF_CSRF_TIME_LIMIT=SESSION_HOURS * 3600,
        MAX_CONTENT_LENGTH=MAX_BODY,
    )
    server.config.setdefault("TONGGUAN_LOGIN_RATE", "10 per minute")
    server.config.setdefault("TONGGUAN_API_RATE", "300 per minute")
    from flask_wtf.csrf import generate_csrf

    server.jinja_env.globals["csrf_token"] = generate_csrf
    limiter = Limiter(get_remote_address, app=server, storage_uri="memory://", default_limits=[],
                      headers_enabled=True)
    server.extensions["tongguan_limiter"] = limiter

    @server.before_request
    def _authenticate():
        path = flask.request.path
        flask.g.tongguan_scope_token = None
        if path.startswith("/api/"):
            return None  # the API authenticates itself (token or session) in its blueprint
        if path.startswith(STATIC_PREFIXES):  # scripts and styles: no database, no user lookup
            if ".." in path.split("/") or "\\" in path:
                flask.abort(404)
            flask.g.tongguan_scope_token = scope_mod.enter(Scope.nobody())
            return None
        user = current_user(engine)
        scope = scope_of(user) if user else Scope.nobody()
        flask.g.tongguan_user = user
        flask.g.tongguan_scope = scope
        flask.g.tongguan_scope_token = scope_mod.enter(scope)
        if any(path.startswith(p) for p in PUBLIC_PREFIXES):
            return None
        if user is not None and path == "/":  # home: the user's own region, not the province
            return flask.redirect(access_pages.home_path(engine, scope) + (
                "?" + flask.request.query_string.decode() if flask.request.query_string else ""))
        if user is None:
            if flask.request.method == "GET" and not path.startswith("/_dash"):
                return flask.redirect(flask.url_for("tongguan_auth.login", next=flask.request.full_path.rstrip("?")))
            return flask.jsonify({"error": {"status": 401, "code": "unauthorized",
                                            "message": "log in first / 请先登录"}}), 401
        if flask.request.method not in ("GET", "HEAD", "OPTIONS") and not same_origin():
            return flask.jsonify({"error": {"status": 403, "code": "csrf",
                                            "message": "cross-origin request refused"}}), 403
        if ADMIN_PATHS.match(norm_path(path)) and not scope.is_admin:
            return _admin_only(engine, scope, path)
        return guard_regions(engine, scope, path)

    @server.errorhandler(AccessError)
    def _refused(exc: AccessError):
        """A layout or callback refused a region (a crafted request the guard did not see)."""
        scope = current_scope()
        region = getattr(exc, "region", None)
        audit.record(engine, actor=scope.username, user_id=scope.user_id, action="denied", region=region,
                     target=flask.request.path, outcome="denied", ip=flask.request.remote_addr,
                     detail={"status": exc.status, "reason": str(exc)})
        return flask.jsonify({"error": {"status": exc.status, "code": exc.code, "message": str(exc)}}), exc.status

    @server.after_request
    def _audit_denials(resp):
        path = flask.request.path
        if (resp.status_code in DENIALS and not flask.g.get("tongguan_denial_audited")
                and not path.startswith(STATIC_PREFIXES) and path != "/favicon.ico"):
            scope = current_scope()
            m = REGION_PATH.match(norm_path(path))
            args = flask.request.view_args or {}
            region = m.group(2) if m else args.get("adcode")
            audit.record(engine, actor=scope.username, user_id=scope.user_id, action="denied",
                         region=region if isinstance(region, str) and re.fullmatch(r"\d{6}", region) else None,
                         target=(path + ("/" + str(args["alert_id"]) if "alert_id" in args else ""))[:500],
                         outcome="denied", channel="api" if path.startswith("/api/") else "web",
                         ip=flask.request.remote_addr,
                         detail={"status": resp.status_code, "method": flask.request.method})
        return resp

    @server.errorhandler(RecursionError)
    def _too_deep(_exc):  # a JSON body nested beyond what the parser takes
        return flask.jsonify({"error": {"status": 400, "code": "invalid", "message": "JSON nested too deeply"}}), 400

    csp: list[str] = []  # computed at the first answer: the pages add their inline scripts after install

    @server.teardown_request
    def _unscope(_exc=None):
        token = flask.g.pop("tongguan_scope_token", None)
        if token is not None:
            scope_mod.leave(token)

    @server.after_request
    def _headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if not csp:
            csp.append(content_security_policy(app))
        resp.headers.setdefault("Content-Security-Policy", csp[0])
        return resp

    @server.get("/healthz")
    def _healthz():
        # For the container's health check and load balancers: no log-in, no redirect; 200 only
        # when the database answers (the log-in page would answer even with the database down).
        import sqlalchemy as sa

        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            return flask.jsonify({"status": "unavailable", "database": str(exc).splitlines()[0]}), 503
        return flask.jsonify({"status": "ok"})

    access_pages.install(server, engine, limiter)
    _register_badge()
    api.install(server, engine, limiter)


def _user_badge(layout):
    """Dash layout hook: who is signed in, their region, and links to the catalogue, the audit
    log (admins) and log-out, on every page (text nodes only: names are never HTML)."""
    import flask
    from dash import html

    if not flask.has_request_context():
        return layout
    me = access_pages.who(flask.current_app.config["TONGGUAN_ENGINE"])
    if not me:
        return layout
    links = [html.Span(f"{me['username']} · {me['region']}", id="access-user-name")]
    if me["admin"]:
        links += [html.A("数据目录 Catalogue", href="/catalogue"),
                  html.A("数据质量 Quality", href=f"/quality/{me['home']}"), html.A("审计 Audit", href="/audit")]
    links.append(html.A("退出 Log out", href="/logout", id="access-logout"))
    # the same bar as the server-rendered pages' (access_pages.TOP), styled by base.css
    return html.Div([layout, html.Div(links, id="access-user", className="user-bar")], style={"display": "contents"})


def _register_badge() -> None:
    import dash

    if not getattr(_register_badge, "done", False):
        dash.hooks.layout()(_user_badge)
        _register_badge.done = True


def content_security_policy(app) -> str:
    """Scripts only from this server plus Dash's own inline scripts (by hash): an injected
    ``<script>`` does not run, nor does ``eval``. No 'unsafe-eval': Dash's renderer, dcc and the
    DataTable only reach ``new Function`` in webpack's fallback for browsers without
    ``globalThis``; Plotly compiles functions only for its WebGL traces (regl: scattergl, splom,
    parcoords, 3-D), which no view uses — a view that adds one needs 'unsafe-eval' back
    (``tests/access/test_access_csp_browser.py`` renders the views under this policy). Dash sets
    inline styles, hence 'unsafe-inline' for styles only."""
    hashes = " ".join(app.csp_hashes()) if hasattr(app, "csp_hashes") else ""
    return ("default-src 'self'; "
            f"script-src 'self' {hashes}; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
            "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; "
            "form-action 'self'; frame-ancestors 'self'")


def _admin_only(engine, scope: Scope, path: str):
    import flask

    audit.record(engine, actor=scope.username, user_id=scope.user_id, action="denied", region=scope.home or None,
                 target=path, outcome="denied", ip=flask.request.remote_addr, detail={"reason": "admin only"})
    msg = "此页面仅限管理员 / this page is for admins"
    if path.endswith("/_dash-update-component"):
        return flask.jsonify({"error": {"status": 403, "code": "forbidden", "message": msg}}), 403
    return flask.render_template_string(access_pages.FORBIDDEN_HTML, message=msg), 403


def guard_regions(engine, scope: Scope, path: str):
    """403 for a region page, or a Dash navigation to one, outside the caller's scope; the
    views of regions are audited."""
    import flask

    targets: list[str] = []
    filters: set[str] = set()  # regions of a list page's filter: audited by the page, here only refused
    navigation = False
    m = REGION_PATH.match(norm_path(path))
    if m and flask.request.method == "GET":
        if any(k in flask.request.args for k in PATH_VARIABLES):
            return _path_variable_in_query(engine, scope, path, flask.request.args.get("adcode"))
        targets.append(m.group(2))
        navigation = True
    elif REGION_QUERY_PATHS.match(norm_path(path)) and flask.request.method == "GET":
        if flask.request.args.get("region"):  # the page audits its own reads (view_alerts)
            targets.append(flask.request.args["region"].strip())
            filters.add(targets[-1])
    elif path.endswith("/_dash-update-component") and flask.request.method == "POST":
        body = flask.request.get_json(silent=True)
        if body is None:
            return flask.jsonify({"error": {"status": 400, "code": "invalid", "message": "JSON body expected"}}), 400
        items = _flatten(body.get("inputs", [])) + _flatten(body.get("state", []))
        nav_paths = [norm_path(it["value"]) for it in items if isinstance(it, dict)
                     and it.get("property") in ("pathname", "href") and isinstance(it.get("value"), str)]
        for item in items:
            if isinstance(item, dict) and item.get("property") in ("search", "href") and isinstance(item.get("value"), str):
                query = parse_qs(item["value"].partition("?")[2])
                if any(k in query for k in PATH_VARIABLES):
                    return _path_variable_in_query(engine, scope, path, (query.get("adcode") or [None])[0])
                if any(REGION_QUERY_PATHS.match(p) for p in nav_paths) and (query.get("region") or [""])[0].strip():
                    targets.append(query["region"][0].strip())
                    filters.add(targets[-1])
            if isinstance(item, dict) and item.get("property") in ("pathname", "href") and isinstance(item.get("value"), str):
                nav_path = norm_path(item["value"])
                if ADMIN_PATHS.match(nav_path) and not scope.is_admin:
                    return _admin_only(engine, scope, nav_path)
                mm = REGION_PATH.match(nav_path)
                if mm:
                    targets.append(mm.group(2))
        navigation = "_pages_content" in str(body.get("output", ""))
    for code in dict.fromkeys(targets):
        tree = tree_for(engine)
        allowed = scope.within(tree, code)
        if (navigation and code not in filters) or not allowed:
            audit.record(engine, actor=scope.username, user_id=scope.user_id, action="view_region",
                         region=code if code in tree else None, target=path, ip=flask.request.remote_addr,
                         outcome="ok" if allowed else "denied")
        if code not in tree:  # an adcode that names no region: not found, not "outside your region"
            msg = f"未找到区域 {code} / region {code} not found"
            if path.endswith("/_dash-update-component"):
                return flask.jsonify({"error": {"status": 404, "code": "not_found", "message": msg}}), 404
            return flask.render_template_string(access_pages.NOT_FOUND_HTML, message=msg), 404
        if not allowed:
            msg = f"区域 {code} 不在您的权限范围内 / region {code} is outside your region {scope.home}"
            if path.endswith("/_dash-update-component"):
                return flask.jsonify({"error": {"status": 403, "code": "forbidden", "message": msg}}), 403
            return flask.render_template_string(access_pages.FORBIDDEN_HTML, message=msg), 403
    return None


def _path_variable_in_query(engine, scope: Scope, path: str, region: str | None):
    """``?adcode=`` would override the path's region in Dash: refused, and audited with the region
    it asked for."""
    import flask

    region = region if isinstance(region, str) and re.fullmatch(r"\d{6}", region) else None
    audit.record(engine, actor=scope.username, user_id=scope.user_id, action="denied", region=region,
                 target=path, outcome="denied", ip=flask.request.remote_addr,
                 detail={"reason": "path variable in the query string", "query": flask.request.query_string.decode()[:200]})
    msg = "区域只能写在路径中 / the region goes in the path, not the query string"
    if path.endswith("/_dash-update-component"):
        return flask.jsonify({"error": {"status": 400, "code": "invalid", "message": msg}}), 400
    return flask.render_template_string(access_pages.FORBIDDEN_HTML, message=msg), 400


def _flatten(items) -> list:
    out = []
    for it in items or []:
        out.extend(_flatten(it) if isinstance(it, list) else [it])
    return out
