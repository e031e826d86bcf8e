"""Users, roles, log-in, sessions and API tokens (接口鉴权), and the guard in front of the apps.

- Passwords: Argon2id (``argon2-cffi``, its default parameters, rehashed on log-in when they
  change). Unknown user names cost the same verification as known ones.
- Lock-out: ``MAX_FAILURES`` failed log-ins in a row lock the account for ``LOCK_MINUTES``;
  log-in is also rate-limited per client address (flask-limiter).
- Sessions: Flask's signed cookie (``TONGGUAN_SECRET_KEY`` from the environment; Settings refuses
  the development default outside development), HttpOnly, SameSite=Lax, Secure outside
  development. The session holds the user id and the time the password was last set, so a reset
  or a disable ends every session at the next request.
- CSRF: the log-in, log-out forms carry a Flask-WTF token; Dash's JSON callbacks must be
  same-origin (``Origin`` header) and JSON (a cross-site form cannot send ``application/json``).
- Every request runs under the caller's region scope (``apps.scope.scoped``): the pages
  ``/province|city|county/<adcode>`` and Dash navigation to them answer 403 outside the scope,
  and every database connection of the request is switched to row-level security.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import sqlalchemy as sa

from apps.access_models import ROLES
from apps.scope import AccessError, Scope, tree_for, unscoped

log = logging.getLogger(__name__)

MAX_FAILURES = 5
LOCK_MINUTES = 15
MIN_PASSWORD = 10
SESSION_HOURS = 12
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{1,63}$")
TOKEN_PREFIX = "tg_"
REGION_PATH = re.compile(r"^/(province|city|county)/([^/?#]+)")

_hasher = None


def hasher():
    global _hasher
    if _hasher is None:
        from argon2 import PasswordHasher

        _hasher = PasswordHasher()
    return _hasher


_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hasher().hash(secrets.token_hex(16))
    return _DUMMY_HASH


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- users
def _check_roles(roles) -> list[str]:
    roles = sorted({r.strip() for r in roles if r and r.strip()})
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise AccessError(f"roles must be among {', '.join(ROLES)} (got {', '.join(bad) or 'none'})", 422, "invalid")
    return roles


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise AccessError(f"a password needs at least {MIN_PASSWORD} characters", 422, "invalid")


def add_user(engine, username: str, password: str, *, home: str, roles=("viewer",),
             display_name: str = "") -> dict:
    """Create a user (home region + roles). Raises AccessError with the fix on bad input."""
    if not USERNAME_RE.match(username or ""):
        raise AccessError("user names are 2-64 characters: letters, digits and _ . @ -", 422, "invalid")
    roles = _check_roles(roles)
    _check_password(password)
    tree = tree_for(engine)
    if home not in tree:
        raise AccessError(f"unknown region {home!r}; load regions with `tongguan geo load` or check the adcode",
                          422, "invalid")
    with unscoped(), engine.begin() as conn:
        if conn.execute(sa.text("SELECT 1 FROM users WHERE username = :u"), {"u": username}).first():
            raise AccessError(f"user {username} exists; use `tongguan users reset-password`", 409, "conflict")
        uid = conn.execute(sa.text(
            "INSERT INTO users (username, display_name, home_adcode, roles, password_hash) "
            "VALUES (:u, :d, :h, :r, :p) RETURNING id"),
            {"u": username, "d": display_name, "h": home, "r": roles, "p": hasher().hash(password)}).scalar_one()
    return {"id": uid, "username": username, "home": home, "roles": roles}


def get_user(engine, username: str) -> dict | None:
    with unscoped(), engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM users WHERE username = :u"), {"u": username}).first()
    return dict(row._mapping) if row else None


def list_users(engine, *, within: str | None = None) -> list[dict]:
    """Users, optionally only those whose home lies in ``within``'s subtree (an admin's view)."""
    with unscoped(), engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.text(
            "SELECT id, username, display_name, home_adcode, roles, active, failed_logins, locked_until, "
            "last_login_at, created_at FROM users ORDER BY username"))]
    for r in rows:
        r["home_adcode"] = r["home_adcode"].strip()
    if within:
        tree = tree_for(engine)
        rows = [r for r in rows if tree.is_within(r["home_adcode"], within)]
    return rows


def set_active(engine, username: str, active: bool) -> None:
    with unscoped(), engine.begin() as conn:
        n = conn.execute(sa.text(
            "UPDATE users SET active = :a, password_changed_at = CASE WHEN :a THEN password_changed_at "
            "ELSE now() END WHERE username = :u"), {"a": active, "u": username}).rowcount
    if not n:
        raise AccessError(f"no user {username}; see `tongguan users list`", 404, "not_found")


def reset_password(engine, username: str, password: str) -> None:
    """New password; unlocks the account and ends its sessions."""
    _check_password(password)
    with unscoped(), engine.begin() as conn:
        n = conn.execute(sa.text(
            "UPDATE users SET password_hash = :p, failed_logins = 0, locked_until = NULL, "
            "password_changed_at = now() WHERE username = :u"),
            {"p": hasher().hash(password), "u": username}).rowcount
    if not n:
        raise AccessError(f"no user {username}; see `tongguan users list`", 404, "not_found")


def scope_of(user: dict) -> Scope:
    return Scope(home=user["home_adcode"].strip(), roles=frozenset(user["roles"] or ()),
                 username=user["username"], user_id=user["id"])


def authenticate(engine, username: str, password: str, *, ip: str | None = None,
                 channel: str = "web") -> tuple[Scope, dict]:
    """Check a log-in; audited either way. Raises AccessError(401) on bad credentials, (423) when
    locked. Failures count towards the lock-out; success resets the count."""
    from apps import audit

    user = get_user(engine, username or "")
    now = _now()
    if user is None:
        from argon2.exceptions import VerificationError

        try:  # the same work as for a real user, so timing does not tell which names exist
            hasher().verify(_dummy_hash(), password or "")
        except VerificationError:
            pass
        audit.record(engine, actor=(username or "")[:64], action="login_failed", outcome="failed",
                     channel=channel, ip=ip, detail={"reason": "unknown user"})
        raise AccessError("wrong user name or password / 用户名或密码错误", 401, "unauthorized")
    region = user["home_adcode"].strip()
    if not user["active"]:
        audit.record(engine, actor=user["username"], user_id=user["id"], action="login_failed", region=region,
                     outcome="failed", channel=channel, ip=ip, detail={"reason": "disabled"})
        raise AccessError("wrong user name or password / 用户名或密码错误", 401, "unauthorized")
    if user["locked_until"] and user["locked_until"] > now:
        audit.record(engine, actor=user["username"], user_id=user["id"], action="login_failed", region=region,
                     outcome="denied", channel=channel, ip=ip, detail={"reason": "locked"})
        minutes = max(1, int((user["locked_until"] - now).total_seconds() // 60) + 1)
        raise AccessError(f"account locked after {MAX_FAILURES} failed log-ins; try again in {minutes} min "
                          f"or ask an admin to reset the password / 账号已锁定", 423, "locked")
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        hasher().verify(user["password_hash"], password or "")
    except (VerificationError, InvalidHashError):
        with unscoped(), engine.begin() as conn:
            failures = conn.execute(sa.text(
                "UPDATE users SET failed_logins = failed_logins + 1, locked_until = CASE WHEN "
                "failed_logins + 1 >= :max THEN now() + make_interval(mins => :mins) ELSE locked_until END "
                "WHERE id = :id RETURNING failed_logins"),
                {"max": MAX_FAILURES, "mins": LOCK_MINUTES, "id": user["id"]}).scalar_one()
        audit.record(engine, actor=user["username"], user_id=user["id"], action="login_failed", region=region,
                     outcome="failed", channel=channel, ip=ip,
                     detail={"reason": "bad password", "failures": failures, "locked": failures >= MAX_FAILURES})
        raise AccessError("wrong user name or password / 用户名或密码错误", 401, "unauthorized") from None
    new_hash = hasher().hash(password) if hasher().check_needs_rehash(user["password_hash"]) else None
    with unscoped(), engine.begin() as conn:
        conn.execute(sa.text(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = now(), "
            "password_hash = coalesce(:h, password_hash) WHERE id = :id"), {"h": new_hash, "id": user["id"]})
    audit.record(engine, actor=user["username"], user_id=user["id"], action="login", region=region,
                 channel=channel, ip=ip)
    return scope_of(user), user


# --------------------------------------------------------------------------- API tokens
def _token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(engine, username: str, name: str, *, days: int | None = None) -> dict:
    """A new API token for the user (shown once); scoped exactly like the user."""
    user = get_user(engine, username)
    if user is None:
        raise AccessError(f"no user {username}; see `tongguan users list`", 404, "not_found")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = _now() + timedelta(days=days) if days else None
    with unscoped(), engine.begin() as conn:
        tid = conn.execute(sa.text(
            "INSERT INTO api_tokens (user_id, name, token_hash, prefix, expires_at) "
            "VALUES (:u, :n, :h, :p, :e) RETURNING id"),
            {"u": user["id"], "n": name or "token", "h": _token_hash(secret), "p": secret[:10],
             "e": expires}).scalar_one()
    return {"id": tid, "token": secret, "user": username, "name": name, "expires_at": expires}


def revoke_token(engine, token_id: int, *, username: str | None = None) -> dict:
    with unscoped(), engine.begin() as conn:
        row = conn.execute(sa.text(
            "UPDATE api_tokens t SET revoked_at = coalesce(revoked_at, now()) FROM users u "
            "WHERE t.id = :id AND u.id = t.user_id AND (CAST(:u AS text) IS NULL OR u.username = :u) "
            "RETURNING t.id, t.name, u.username, u.home_adcode"),
            {"id": int(token_id), "u": username}).first()
    if row is None:
        raise AccessError(f"no token {token_id}" + (f" of {username}" if username else ""), 404, "not_found")
    return {"id": row.id, "name": row.name, "user": row.username, "region": row.home_adcode.strip()}


def list_tokens(engine, username: str | None = None) -> list[dict]:
    with unscoped(), engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(
            "SELECT t.id, u.username, t.name, t.prefix, t.created_at, t.expires_at, t.last_used_at, t.revoked_at "
            "FROM api_tokens t JOIN users u ON u.id = t.user_id "
            "WHERE CAST(:u AS text) IS NULL OR u.username = :u ORDER BY t.id"), {"u": username})]


def scope_for_token(engine, secret: str) -> Scope:
    """The scope of a valid, unrevoked, unexpired token of an active user; 401 otherwise."""
    if not secret or not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        raise AccessError("invalid API token; create one with `tongguan tokens create`", 401, "unauthorized")
    with unscoped(), engine.begin() as conn:
        row = conn.execute(sa.text(
            "UPDATE api_tokens t SET last_used_at = now() FROM users u "
            "WHERE t.token_hash = :h AND u.id = t.user_id AND t.revoked_at IS NULL "
            "AND (t.expires_at IS NULL OR t.expires_at > now()) AND u.active "
            "RETURNING u.id, u.username, u.home_adcode, u.roles"), {"h": _token_hash(secret)}).first()
    if row is None:
        raise AccessError("invalid, expired or revoked API token", 401, "unauthorized")
    return scope_of(dict(row._mapping))


# --------------------------------------------------------------------------- demo users
DEMO_USERS = (
    ("gd-admin", "440000", ("admin", "viewer"), "广东省管理员 Guangdong admin"),
    ("gz-operator", "440100", ("operator", "viewer"), "广州市值班员 Guangzhou operator"),
    ("tianhe-operator", "440106", ("operator", "viewer"), "天河区值班员 Tianhe operator"),
)


def create_demo_users(engine, password: str | None = None) -> list[dict]:
    """The demo's three users — a Guangdong province admin (440000), a Guangzhou operator
    (440100) and a Tianhe District operator (440106) — created or given a fresh password.
    Returns their log-ins (user name, password, region, roles) for the demo to print."""
    out = []
    for username, home, roles, display in DEMO_USERS:
        pw = password or secrets.token_urlsafe(12)
        if get_user(engine, username) is None:
            add_user(engine, username, pw, home=home, roles=roles, display_name=display)
        else:
            reset_password(engine, username, pw)
            set_active(engine, username, True)
        out.append({"username": username, "password": pw, "home": home, "roles": list(roles),
                    "display_name": display})
    return out


def format_logins(logins: list[dict]) -> str:
    return "\n".join(f"  {u['username']:<16} {u['password']:<20} {u['home']}  {','.join(u['roles'])}  "
                     f"{u['display_name']}" for u in logins)


# --------------------------------------------------------------------------- Flask integration
STATIC_PREFIXES = ("/assets/", "/_dash-component-suites/", "/_favicon.ico", "/favicon.ico")
PUBLIC_PREFIXES = ("/login", "/api/", *STATIC_PREFIXES)


def install(app) -> None:
    """Put log-in, sessions, scoping, the page guard, CSRF, rate limits, the audit page and the
    JSON API on the Dash app's Flask server. Called once by ``apps.app.create_app``."""
    import flask
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    from apps import api, governance
    from apps import audit as audit_mod
    from apps import scope as scope_mod
    from tongguan.db import engine_for
    from tongguan.settings import get_settings

    server = app.server if hasattr(app, "server") else app
    settings = get_settings()
    config = server.config["TONGGUAN"]
    engine = scope_mod.install(engine_for(config.database_url))
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
            flask.g.tongguan_scope_token = scope_mod._current.set(Scope.nobody())
            return None
        user = current_user(engine)
        scope = scope_of(user) if user else Scope.nobody()
        flask.g.tongguan_user = user
        flask.g.tongguan_scope = scope
        flask.g.tongguan_scope_token = scope_mod._current.set(scope)
        if any(path.startswith(p) for p in PUBLIC_PREFIXES):
            return None
        if user is not None and path == "/":  # home: the user's own region, not the province
            return flask.redirect(_home_path(engine, scope) + (
                "?" + flask.request.query_string.decode() if flask.request.query_string else ""))
        if user is None:
            if flask.request.method == "GET" and not path.startswith("/_dash"):
                return flask.redirect(flask.url_for("tongguan_auth.login", next=flask.request.full_path.rstrip("?")))
            return flask.jsonify({"error": {"status": 401, "code": "unauthorized",
                                            "message": "log in first / 请先登录"}}), 401
        if flask.request.method not in ("GET", "HEAD", "OPTIONS") and not _same_origin():
            return flask.jsonify({"error": {"status": 403, "code": "csrf",
                                            "message": "cross-origin request refused"}}), 403
        return _guard_regions(engine, scope, path)

    @server.teardown_request
    def _unscope(_exc=None):
        token = flask.g.pop("tongguan_scope_token", None)
        if token is not None:
            scope_mod._current.reset(token)

    @server.after_request
    def _headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        return resp

    bp = flask.Blueprint("tongguan_auth", __name__)

    @bp.route("/login", methods=["GET", "POST"])
    @limiter.limit(lambda: flask.current_app.config["TONGGUAN_LOGIN_RATE"], methods=["POST"])
    def login():
        from flask_wtf.csrf import CSRFError, validate_csrf
        from wtforms import ValidationError

        error, status = None, 200
        nxt = _safe_next(flask.request.values.get("next"))
        if flask.request.method == "POST":
            try:
                validate_csrf(flask.request.form.get("csrf_token"))
            except (CSRFError, ValidationError):
                error, status = "表单已过期，请重试 / the form expired, please try again", 400
            else:
                try:
                    with unscoped():
                        scope, user = authenticate(engine, flask.request.form.get("username", "").strip(),
                                                   flask.request.form.get("password", ""),
                                                   ip=flask.request.remote_addr)
                except AccessError as exc:
                    error, status = str(exc), exc.status
                else:
                    flask.session.clear()
                    flask.session.permanent = True
                    flask.session["uid"] = user["id"]
                    flask.session["pwd"] = user["password_changed_at"].isoformat()
                    return flask.redirect(nxt or _home_path(engine, scope))
        return flask.render_template_string(LOGIN_HTML, error=error, next=nxt), status

    @bp.route("/logout", methods=["GET", "POST"])
    def logout():
        from flask_wtf.csrf import CSRFError, validate_csrf
        from wtforms import ValidationError

        user = getattr(flask.g, "tongguan_user", None)
        if flask.request.method == "POST":
            try:
                validate_csrf(flask.request.form.get("csrf_token"))
            except (CSRFError, ValidationError):
                return flask.render_template_string(LOGOUT_HTML, user=user), 400
            if user:
                audit_mod.record(engine, actor=user["username"], user_id=user["id"], action="logout",
                                 region=user["home_adcode"].strip(), ip=flask.request.remote_addr)
            flask.session.clear()
            return flask.redirect(flask.url_for("tongguan_auth.login"))
        return flask.render_template_string(LOGOUT_HTML, user=user)

    @bp.route("/audit")
    def audit_page():
        scope = flask.g.tongguan_scope
        args = flask.request.args
        page = max(1, _int(args.get("page"), 1))
        try:
            rows, total = audit_mod.query(engine, scope=scope, region=args.get("region") or None,
                                          actor=args.get("actor") or None, action=args.get("action") or None,
                                          limit=100, offset=(page - 1) * 100)
        except AccessError as exc:
            return flask.render_template_string(FORBIDDEN_HTML, message=str(exc)), exc.status
        return flask.render_template_string(AUDIT_HTML, rows=rows, total=total, page=page, args=args,
                                            scope=scope, pages=max(1, (total + 99) // 100))

    server.register_blueprint(bp)
    _register_badge()
    api.install(server, engine, limiter)
    governance.install(server, engine)


_BADGE_STYLE = {"position": "fixed", "top": "8px", "right": "16px", "zIndex": 1000, "fontSize": "13px",
                "display": "flex", "gap": "12px", "alignItems": "center", "color": "#c9d6e3"}


def _user_badge(layout):
    """Dash layout hook: who is signed in, their region, and links to the catalogue, the audit
    log (admins) and log-out, on every page (text nodes only: names are never HTML)."""
    import flask
    from dash import html

    if not flask.has_request_context():
        return layout
    user = getattr(flask.g, "tongguan_user", None)
    if not user:
        return layout
    home = user["home_adcode"].strip()
    try:
        region = tree_for(flask.current_app.config["TONGGUAN_ENGINE"]).name(home)
    except Exception:  # noqa: BLE001 - a badge must never break the page
        region = home
    links = [html.Span(f"{user['username']} · {region}", id="access-user-name"),
             html.A("数据目录 Catalogue", href="/catalogue"), html.A("数据质量 Quality", href=f"/quality/{home}")]
    if "admin" in (user["roles"] or ()):
        links.append(html.A("审计 Audit", href="/audit"))
    links.append(html.A("退出 Log out", href="/logout", id="access-logout"))
    return html.Div([layout, html.Div(links, id="access-user", style=_BADGE_STYLE)],
                    style={"display": "contents"})


def _register_badge() -> None:
    import dash

    if not getattr(_register_badge, "done", False):
        dash.hooks.layout()(_user_badge)
        _register_badge.done = True


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _same_origin() -> bool:
    import flask

    origin = flask.request.headers.get("Origin") or flask.request.headers.get("Referer")
    if not origin:
        return True  # non-browser clients; browsers send Origin on every cross-site POST
    return urlparse(origin).netloc == flask.request.host


def _safe_next(nxt: str | None) -> str | None:
    """Only local paths: an open redirect after log-in is a phishing aid."""
    if not nxt or not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        return None
    return nxt


def _home_path(engine, scope: Scope) -> str:
    level = tree_for(engine).level(scope.home)
    return f"/{level}/{scope.home}"


def current_user(engine) -> dict | None:
    """The signed-in user of this request (None: anonymous, disabled, or password changed)."""
    import flask

    uid = flask.session.get("uid")
    if not uid:
        return None
    with unscoped(), engine.connect() as conn:
        row = conn.execute(sa.text("SELECT id, username, display_name, home_adcode, roles, active, "
                                   "password_changed_at FROM users WHERE id = :id"), {"id": int(uid)}).first()
    if row is None or not row.active or row.password_changed_at.isoformat() != flask.session.get("pwd"):
        flask.session.clear()
        return None
    return dict(row._mapping)


def current_scope() -> Scope:
    """The scope of the current request (``Scope.nobody()`` outside one or when anonymous)."""
    import flask

    if flask.has_request_context():
        return getattr(flask.g, "tongguan_scope", None) or Scope.nobody()
    return Scope.nobody()


def _guard_regions(engine, scope: Scope, path: str):
    """403 for a region page, or a Dash navigation to one, outside the caller's scope; the
    views of regions are audited."""
    import flask

    from apps import audit

    targets: list[str] = []
    navigation = False
    m = REGION_PATH.match(path)
    if m and flask.request.method == "GET":
        targets.append(m.group(2))
        navigation = True
    elif path.endswith("/_dash-update-component") and flask.request.method == "POST":
        body = flask.request.get_json(silent=True)
        if body is None:
            return flask.jsonify({"error": {"status": 400, "code": "invalid", "message": "JSON body expected"}}), 400
        for item in _flatten(body.get("inputs", [])) + _flatten(body.get("state", [])):
            if isinstance(item, dict) and item.get("property") in ("pathname", "href") and isinstance(item.get("value"), str):
                mm = REGION_PATH.match(urlparse(item["value"]).path)
                if mm:
                    targets.append(mm.group(2))
        navigation = "_pages_content" in str(body.get("output", ""))
    for code in dict.fromkeys(targets):
        tree = tree_for(engine)
        allowed = scope.within(tree, code)
        if navigation or not allowed:
            audit.record(engine, actor=scope.username, user_id=scope.user_id, action="view_region",
                         region=code if code in tree else None, target=path, ip=flask.request.remote_addr,
                         outcome="ok" if allowed else "denied")
        if not allowed:
            msg = f"区域 {code} 不在您的权限范围内 / region {code} is outside your region {scope.home}"
            if path.endswith("/_dash-update-component"):
                return flask.jsonify({"error": {"status": 403, "code": "forbidden", "message": msg}}), 403
            return flask.render_template_string(FORBIDDEN_HTML, message=msg), 403
    return None


def _flatten(items) -> list:
    out = []
    for it in items or []:
        out.extend(_flatten(it) if isinstance(it, list) else [it])
    return out


_STYLE = """<style>body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;background:#0b1726;color:#e6edf5;margin:0}
main{max-width:1100px;margin:40px auto;padding:0 16px}.card{background:#13243a;border-radius:8px;padding:24px;max-width:380px;margin:60px auto}
label{display:block;margin:12px 0 4px}input{width:100%;padding:8px;box-sizing:border-box;border-radius:4px;border:1px solid #2c4766;background:#0b1726;color:#e6edf5}
button{margin-top:16px;padding:8px 16px;background:#1f6feb;color:#fff;border:0;border-radius:4px;cursor:pointer}
.err{background:#5a1e1e;padding:8px;border-radius:4px}table{border-collapse:collapse;width:100%;font-size:13px}
td,th{border-bottom:1px solid #2c4766;padding:4px 6px;text-align:left}a{color:#79b8ff}.muted{color:#8aa0b8}</style>"""

LOGIN_HTML = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>登录 Log in · 统管</title>""" + _STYLE + """</head>
<body><div class="card"><h2>统管 · 登录 <span class="muted">Log in</span></h2>
{% if error %}<p class="err" id="login-error">{{ error }}</p>{% endif %}
<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
<input type="hidden" name="next" value="{{ next or '' }}">
<label for="username">用户名 User name</label><input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">密码 Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="login-submit">登录 Log in</button></form></div></body></html>"""

LOGOUT_HTML = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>退出 Log out · 统管</title>""" + _STYLE + """</head>
<body><div class="card"><h2>退出登录 <span class="muted">Log out</span></h2>
{% if user %}<p>{{ user.username }}</p>{% endif %}
<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
<button type="submit" id="logout-submit">退出 Log out</button></form></div></body></html>"""

FORBIDDEN_HTML = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>无权访问 Forbidden · 统管</title>""" + _STYLE + """</head>
<body><div class="card"><h2>无权访问 <span class="muted">Forbidden</span></h2><p id="forbidden-message">{{ message }}</p>
<p><a href="/">返回 Home</a> · <a href="/logout">退出 Log out</a></p></div></body></html>"""

AUDIT_HTML = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>审计日志 Audit log · 统管</title>""" + _STYLE + """</head>
<body><main><h2>审计日志 <span class="muted">Audit log</span> · {{ scope.home }}</h2>
<form method="get" action="/audit">
区域 Region <input name="region" value="{{ args.get('region','') }}" style="width:90px">
用户 User <input name="actor" value="{{ args.get('actor','') }}" style="width:140px">
操作 Action <input name="action" value="{{ args.get('action','') }}" placeholder="alert_*" style="width:140px">
<button type="submit">查询 Search</button></form>
<p class="muted">共 {{ total }} 条 entries · 第 {{ page }}/{{ pages }} 页 page</p>
<table id="audit-table"><thead><tr><th>时间 Time</th><th>用户 User</th><th>操作 Action</th><th>区域 Region</th>
<th>对象 Target</th><th>结果 Outcome</th><th>渠道 Channel</th><th>IP</th></tr></thead><tbody>
{% for r in rows %}<tr><td>{{ r.ts[:19] }}</td><td>{{ r.actor }}</td><td>{{ r.action }}</td><td>{{ r.region or '' }}</td>
<td>{{ r.target or '' }}</td><td>{{ r.outcome }}</td><td>{{ r.channel }}</td><td>{{ r.ip or '' }}</td></tr>{% endfor %}
</tbody></table>
{% if page > 1 %}<a href="?page={{ page - 1 }}&region={{ args.get('region','') }}&actor={{ args.get('actor','') }}&action={{ args.get('action','') }}">上一页 Previous</a>{% endif %}
{% if page < pages %}<a href="?page={{ page + 1 }}&region={{ args.get('region','') }}&actor={{ args.get('actor','') }}&action={{ args.get('action','') }}">下一页 Next</a>{% endif %}
</main></body></html>"""
