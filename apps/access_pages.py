"""The server-rendered pages beside the Dash views: log-in and log-out, the audit log (admins),
the data catalogue and the data-quality panel of a region. Autoescaped Jinja templates; their
look matches the views' dark theme.
"""

from __future__ import annotations

import posixpath
import secrets
from urllib.parse import unquote, urlsplit

from apps import audit, governance
from apps.context import current_scope
from apps.errors import AccessError
from apps.identity import authenticate, bump_session_version
from apps.policy import tree_for
from apps.scope import Scope, unscoped


def install(server, engine, limiter) -> None:
    """Register the log-in, log-out, audit, catalogue and quality pages (called by
    ``apps.web.install``)."""
    import flask

    bp = flask.Blueprint("tongguan_auth", __name__)

    @bp.route("/login", methods=["GET", "POST"])
    @limiter.limit(lambda: flask.current_app.config["TONGGUAN_LOGIN_RATE"], methods=["POST"])
    def login():
        from flask_wtf.csrf import CSRFError, validate_csrf
        from wtforms import ValidationError

        error, status = None, 200
        nxt = safe_next(flask.request.values.get("next"))
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
                    # The version the database holds for the user (log-out bumps it) and a random
                    # nonce: a cookie cannot be re-made from what is known about the user.
                    flask.session["sv"] = user["session_version"]
                    flask.session["nonce"] = secrets.token_urlsafe(18)
                    return flask.redirect(nxt or home_path(engine, scope))
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
                bump_session_version(engine, user["id"])
                audit.record(engine, actor=user["username"], user_id=user["id"], action="logout",
                             region=user["home_adcode"].strip(), ip=flask.request.remote_addr)
            flask.session.clear()
            return flask.redirect(flask.url_for("tongguan_auth.login"))
        return flask.render_template_string(LOGOUT_HTML, user=user)

    @bp.route("/audit")
    def audit_page():
        scope = flask.g.tongguan_scope
        args = flask.request.args
        page = min(MAX_PAGE, max(1, _int(args.get("page"), 1)))
        try:
            rows, total = audit.query(engine, scope=scope, region=args.get("region") or None,
                                      actor=args.get("actor") or None, action=args.get("action") or None,
                                      limit=100, offset=(page - 1) * 100)
        except AccessError as exc:
            return flask.render_template_string(FORBIDDEN_HTML, message=str(exc)), exc.status
        return flask.render_template_string(AUDIT_HTML, rows=rows, total=total, page=page, args=args,
                                            scope=scope, pages=max(1, (total + 99) // 100), who=who(engine))

    server.register_blueprint(bp)

    gov = flask.Blueprint("tongguan_governance", __name__)

    @gov.route("/catalogue")
    def catalogue_page():
        scope = current_scope()
        return flask.render_template_string(STYLE_HEAD + CATALOGUE_HTML, style=STYLE,
                                            datasets=governance.visible_catalogue(scope), scope=scope,
                                            who=who(engine))

    @gov.route("/quality/<adcode>")
    def quality_page(adcode: str):
        scope = current_scope()
        try:
            hours = max(1, min(168, int(flask.request.args.get("hours", 1))))
            q = governance.quality(engine, scope, adcode, hours=hours)
        except (AccessError, ValueError) as exc:
            status = getattr(exc, "status", 400)
            return flask.render_template_string(FORBIDDEN_HTML, message=str(exc)), status
        return flask.render_template_string(STYLE_HEAD + QUALITY_HTML, style=STYLE, q=q, who=who(engine))

    server.register_blueprint(gov)
    server.add_template_filter(china_time, "china")


def china_time(ts) -> str:
    """An ISO time as China Standard Time, like every time on the screens.

    >>> china_time("2026-12-02T04:30:05.123+00:00"), china_time(None)
    ('2026-12-02 12:30:05', '')
    """
    from datetime import datetime
    from zoneinfo import ZoneInfo

    if not ts:
        return ""
    when = ts if isinstance(ts, datetime) else datetime.fromisoformat(str(ts))
    return when.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")


def who(engine) -> dict | None:
    """The signed-in user as every page's user bar shows them (name, home region and its name,
    admin or not), None outside a signed-in request."""
    import flask

    user = getattr(flask.g, "tongguan_user", None) if flask.has_request_context() else None
    if not user:
        return None
    home = user["home_adcode"].strip()
    try:
        region = tree_for(engine).name(home)
    except Exception:  # noqa: BLE001 - a user bar must never break the page
        region = home
    return {"username": user["username"], "home": home, "region": region,
            "admin": "admin" in (user["roles"] or ())}


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


MAX_PAGE = 100_000


def _odd(text: str) -> bool:
    return any(ord(c) <= 0x20 or ord(c) == 0x7F for c in text) or "\\" in text


def safe_next(nxt: str | None) -> str | None:
    """Only a path of this site: an open redirect after log-in is a phishing aid. Nothing at or
    below 0x20 (browsers drop TAB/CR/LF, so ``/\t/host`` is ``//host``), no backslash, no scheme or
    host, before or after percent-decoding; the path is normalised.

    >>> [safe_next(x) for x in ("/city/440100?theme=flood", "/\t/evil", "/%2F/evil", "//evil", "/a/../b")]
    ['/city/440100?theme=flood', None, None, None, '/b']
    """
    if not nxt or len(nxt) > 2048 or _odd(nxt) or _odd(unquote(nxt)):
        return None
    parts = urlsplit(nxt)
    if parts.scheme or parts.netloc or not nxt.startswith("/") or unquote(nxt).startswith("//"):
        return None
    path = posixpath.normpath(parts.path)
    if path.startswith("//") or unquote(path).startswith("//"):
        return None
    return path + (f"?{parts.query}" if parts.query else "")


def home_path(engine, scope: Scope) -> str:
    level = tree_for(engine).level(scope.home)
    return f"/{level}/{scope.home}"


# The views' stylesheet (font, colours, the top bar and the user bar), then what these pages add.
STYLE = """<link rel="stylesheet" href="/assets/base.css"><style>body{color:#e6edf5}
main{max-width:1100px;margin:40px auto;padding:0 16px}.card{background:#13243a;border-radius:8px;padding:24px;max-width:380px;margin:60px auto}
label{display:block;margin:12px 0 4px}input{width:100%;padding:8px;box-sizing:border-box;border-radius:4px;border:1px solid #2c4766;background:#0b1726;color:#e6edf5}
button{margin-top:16px;padding:8px 16px;background:#1f6feb;color:#fff;border:0;border-radius:4px;cursor:pointer}
.err{background:#5a1e1e;padding:8px;border-radius:4px}table{border-collapse:collapse;width:100%;font-size:13px}
td,th{border-bottom:1px solid #2c4766;padding:4px 6px;text-align:left}a{color:#79b8ff}.muted{color:#8aa0b8}</style>"""

LOGIN_HTML = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>登录 Log in · 统管</title>""" + STYLE + """</head>
<body><div class="card"><h2>统管 · 登录 <span class="muted">Log in</span></h2>
{% if error %}<p class="err" id="login-error">{{ error }}</p>{% endif %}
<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
<input type="hidden" name="next" value="{{ next or '' }}">
<label for="username">用户名 User name</label><input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">密码 Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="login-submit">登录 Log in</button></form></div></body></html>"""

LOGOUT_HTML = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>退出 Log out · 统管</title>""" + STYLE + """</head>
<body><div class="card"><h2>退出登录 <span class="muted">Log out</span></h2>
{% if user %}<p>{{ user.username }}</p>{% endif %}
<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
<button type="submit" id="logout-submit">退出 Log out</button></form></div></body></html>"""

FORBIDDEN_HTML = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>无权访问 Forbidden · 统管</title>""" + STYLE + """</head>
<body><div class="card"><h2>无权访问 <span class="muted">Forbidden</span></h2><p id="forbidden-message">{{ message }}</p>
<p><a href="/">返回 Home</a> · <a href="/logout">退出 Log out</a></p></div></body></html>"""

NOT_FOUND_HTML = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>未找到 Not found · 统管</title>""" + STYLE + """</head>
<body><div class="card"><h2>未找到 <span class="muted">Not found</span></h2><p id="not-found-message">{{ message }}</p>
<p><a href="/">返回 Home</a> · <a href="/logout">退出 Log out</a></p></div></body></html>"""

# The app's header and user bar, as on the views (apps.app's top bar, apps.web's user bar).
TOP = """<header class="topbar" id="topbar"><a class="brand" href="/" id="brand">统管 tongguan</a></header>
{% if who %}<div id="access-user" class="user-bar"><span id="access-user-name">{{ who.username }} · {{ who.region }}</span>
{% if who.admin %}<a href="/catalogue">数据目录 Catalogue</a><a href="/quality/{{ who.home }}">数据质量 Quality</a>
<a href="/audit">审计 Audit</a>{% endif %}<a href="/logout" id="access-logout">退出 Log out</a></div>{% endif %}"""

AUDIT_HTML = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>审计日志 Audit log · 统管</title>""" + STYLE + """</head>
<body>""" + TOP + """<main><h2>审计日志 <span class="muted">Audit log</span> · {{ scope.home }}</h2>
<form method="get" action="/audit">
区域 Region <input name="region" value="{{ args.get('region','') }}" style="width:90px">
用户 User <input name="actor" value="{{ args.get('actor','') }}" style="width:140px">
操作 Action <input name="action" value="{{ args.get('action','') }}" placeholder="alert_*" style="width:140px">
<button type="submit">查询 Search</button></form>
<p class="muted">共 {{ total }} 条 entries · 第 {{ page }}/{{ pages }} 页 page · 北京时间 China Standard Time</p>
<table id="audit-table"><thead><tr><th>时间 Time</th><th>用户 User</th><th>操作 Action</th><th>区域 Region</th>
<th>对象 Target</th><th>结果 Outcome</th><th>渠道 Channel</th><th>IP</th></tr></thead><tbody>
{% for r in rows %}<tr><td>{{ r.ts|china }}</td><td>{{ r.actor }}</td><td>{{ r.action }}</td><td>{{ r.region or '' }}</td>
<td>{{ r.target or '' }}</td><td>{{ r.outcome }}</td><td>{{ r.channel }}</td><td>{{ r.ip or '' }}</td></tr>{% endfor %}
</tbody></table>
{% if page > 1 %}<a href="?page={{ page - 1 }}&region={{ args.get('region','') }}&actor={{ args.get('actor','') }}&action={{ args.get('action','') }}">上一页 Previous</a>{% endif %}
{% if page < pages %}<a href="?page={{ page + 1 }}&region={{ args.get('region','') }}&actor={{ args.get('actor','') }}&action={{ args.get('action','') }}">下一页 Next</a>{% endif %}
</main></body></html>"""

STYLE_HEAD = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>统管 · 数据治理 Data governance</title>
{{ style|safe }}</head>"""

CATALOGUE_HTML = """<body>""" + TOP + """<main><h2>数据目录 <span class="muted">Data catalogue</span></h2>
<table id="catalogue-table"><thead><tr><th>数据集 Dataset</th><th>名称 Name</th><th>责任部门 Owner</th>
<th>分级 Classification</th><th>更新频率 Update</th><th>字段 Fields</th></tr></thead><tbody>
{% for d in datasets %}<tr><td>{{ d.id }}</td><td>{{ d.name_zh }} <span class="muted">{{ d.name_en }}</span></td>
<td>{{ d.owner.zh }} <span class="muted">{{ d.owner.en }}</span></td>
<td>{{ d.classification }}{% if not d.accessible %} 🔒{% endif %}</td><td>{{ d['update'] }}</td>
<td class="muted">{{ d.fields|join(', ') }}</td></tr>{% endfor %}</tbody></table></main></body></html>"""

QUALITY_HTML = """<body>""" + TOP + """<main><h2>数据质量 <span class="muted">Data quality</span> · {{ q.adcode }}</h2>
<table id="quality-table"><tbody>
<tr><th>完整性 Completeness</th><td>{{ q.completeness.reporting }} / {{ q.completeness.sensors }} 传感器在报 sensors reporting</td></tr>
<tr><th>及时性 Timeliness</th><td>p50 {{ q.timeliness.lag_p50_s }} s · p95 {{ q.timeliness.lag_p95_s }} s · {{ q.timeliness.readings }} 条 readings</td></tr>
<tr><th>超范围 Out of range</th><td>{{ q.out_of_range.stored }} 存储 stored · {{ q.out_of_range.dead_lettered }} 死信 dead-lettered</td></tr>
<tr><th>死信 Dead letters (全平台 platform)</th><td>{{ q.dead_letters.dead_lettered }} / {{ q.dead_letters.messages_consumed }}
{% for k, v in q.dead_letters.by_reason.items() %}<br>{{ k }}: {{ v.count }}{% endfor %}</td></tr>
</tbody></table></main></body></html>"""
