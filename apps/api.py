"""The JSON API for other systems (the 12345 hotline, a city's own platform): ``/api/v1``.

- Authentication (接口鉴权): ``Authorization: Bearer tg_…`` with a per-user API token
  (``tongguan tokens create``; revocable), or the apps' session cookie (same origin only for
  writes). A token is scoped exactly like its user: same region subtree, same roles.
- Every request runs under the caller's scope (``apps.scope``): row-level security in the
  database, plus explicit checks that answer 403 for a region outside the scope and 404 for an
  alert or record outside it (its existence does not leak).
- Errors always have the body ``{"error": {"status", "code", "message"}}``.
- Lists are paginated: ``page`` (from 1) and ``per_page`` (1-500); the body carries ``items``,
  ``page``, ``per_page``, ``total``.
- Geometries are GeoJSON (Feature / FeatureCollection, EPSG:4326).
- The OpenAPI 3 document is served at ``/api/v1/openapi.json`` (no authentication).
- Rate limited per token (or client address): ``TONGGUAN_API_RATE`` in the Flask config.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

import sqlalchemy as sa

from analytics import LEVELS, STATUSES
from analytics.alerting.channels import channel_names, setting_fields
from apps import api_queries, audit, governance, handling, identity
from apps import scope as scope_mod
from apps.context import current_user, same_origin
from apps.errors import AccessError, not_found
from apps.policy import ACTIONS, require_region, tree_for
from apps.scope import Scope
from geo import REGION_LEVELS

PREFIX = "/api/v1"
ADCODE_RE = re.compile(r"^\d{6}$")
MAX_PAGE = 100_000
MAX_ID = 2**63 - 1


def _error(status: int, code: str, message: str):
    import flask

    resp = flask.jsonify({"error": {"status": status, "code": code, "message": message}})
    resp.status_code = status
    return resp


def _page_args() -> tuple[int, int, int]:
    import flask

    try:
        page = int(flask.request.args.get("page", 1))
        per_page = int(flask.request.args.get("per_page", 50))
    except ValueError:
        raise AccessError("page and per_page must be integers", 422, "invalid") from None
    if not 1 <= page <= MAX_PAGE or not 1 <= per_page <= 500:
        raise AccessError(f"page must be between 1 and {MAX_PAGE} and per_page between 1 and 500", 422, "invalid")
    return page, per_page, (page - 1) * per_page


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    import flask

    raw = flask.request.args.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise AccessError(f"{name} must be an integer", 422, "invalid") from None
    if not lo <= v <= hi:
        raise AccessError(f"{name} must be between {lo} and {hi}", 422, "invalid")
    return v


def _list_arg(name: str, allowed: tuple[str, ...]) -> list[str] | None:
    import flask

    values = [v for raw in flask.request.args.getlist(name) for v in raw.split(",") if v]
    bad = [v for v in values if v not in allowed]
    if bad:
        raise AccessError(f"{name} must be among {', '.join(allowed)}", 422, "invalid")
    return values or None


def _adcode(value: str) -> str:
    if not ADCODE_RE.match(value or ""):
        raise AccessError(f"region {value!r} not found (an adcode has six digits)", 404, "not_found")
    return value


def _paged(items, total, page, per_page) -> dict:
    return {"items": items, "page": page, "per_page": per_page, "total": total}


def install(server, engine, limiter) -> None:
    """Register the blueprint on the Flask server (called by ``apps.web.install``)."""
    import flask
    from flask_limiter.errors import RateLimitExceeded

    bp = flask.Blueprint("tongguan_api", __name__, url_prefix=PREFIX)

    def _key():
        # One bucket per token however the header is padded or cased, and never the raw secret.
        kind, _, secret = flask.request.headers.get("Authorization", "").strip().partition(" ")
        if secret.strip():
            return "t:" + hashlib.sha256(secret.strip().encode()).hexdigest()[:32]
        return "a:" + (flask.request.remote_addr or "-")

    limiter.limit(lambda: flask.current_app.config["TONGGUAN_API_RATE"], key_func=_key)(bp)

    @bp.before_request
    def _auth():
        flask.g.tongguan_scope_token = None
        if flask.request.path == PREFIX + "/openapi.json":
            return None
        # Who is asking comes first: an anonymous body is never read (MAX_CONTENT_LENGTH caps the rest).
        auth = flask.request.headers.get("Authorization", "")
        channel = "api"
        if auth:
            kind, _, secret = auth.partition(" ")
            if kind.lower() != "bearer" or not secret.strip():
                return _error(401, "unauthorized", "use the header 'Authorization: Bearer <token>'")
            try:
                scope = identity.scope_for_token(engine, secret.strip())
            except AccessError as exc:
                return _error(exc.status, exc.code, str(exc))
        else:
            user = current_user(engine)
            if user is None:
                return _error(401, "unauthorized",
                              "send 'Authorization: Bearer <token>' (create one with `tongguan tokens create`) "
                              "or log in at /login")
            if flask.request.method not in ("GET", "HEAD", "OPTIONS") and not same_origin():
                return _error(403, "csrf", "cross-origin request refused")
            scope = identity.scope_of(user)
            channel = "web"
        flask.g.tongguan_scope = scope
        flask.g.tongguan_channel = channel
        flask.g.tongguan_scope_token = scope_mod.enter(scope)
        # PostgreSQL text cannot hold NUL: refuse it here with a clear answer, not a server error.
        values = [*(flask.request.view_args or {}).values(), *flask.request.args.values(),
                  flask.request.get_data(as_text=True) or ""]
        if any(isinstance(v, str) and ("\x00" in v or "\\u0000" in v) for v in values):
            return _error(422, "invalid", "NUL characters are not allowed")
        if any(isinstance(v, int) and v > MAX_ID for v in (flask.request.view_args or {}).values()):
            return _error(404, "not_found", "no such id")
        return None

    @bp.errorhandler(AccessError)
    def _access_error(exc: AccessError):
        already = flask.request.path.endswith("/actions") or "/subscriptions" in flask.request.path
        if exc.status == 403 and not already and getattr(flask.g, "tongguan_scope", None) is not None:
            code = (flask.request.view_args or {}).get("adcode") or flask.request.args.get("region")
            if not (isinstance(code, str) and ADCODE_RE.match(code)):
                code = None
            _audit("denied", code, flask.request.path, outcome="denied", reason=str(exc))
        return _error(exc.status, exc.code, str(exc))

    @bp.errorhandler(sa.exc.DataError)
    def _data_error(exc):  # a value the database cannot take (out of range, bad encoding)
        return _error(422, "invalid", "a parameter has a value out of range or of the wrong form")

    @bp.errorhandler(RateLimitExceeded)
    def _rate(exc):
        return _error(429, "rate_limited", f"too many requests ({exc.description}); slow down")

    def me() -> Scope:
        return flask.g.tongguan_scope

    def _audit(action: str, region: str | None, target: str | None = None, outcome: str = "ok", **detail):
        audit.record(engine, actor=me().username, user_id=me().user_id, action=action, region=region,
                     target=target, outcome=outcome, channel=flask.g.tongguan_channel,
                     ip=flask.request.remote_addr, detail=detail)

    @bp.get("/openapi.json")
    def openapi():
        return flask.jsonify(openapi_document())

    @bp.get("/me")
    def get_me():
        s = me()
        return flask.jsonify({"username": s.username, "home": s.home, "roles": sorted(s.roles),
                              "classification_levels": sorted(governance.allowed_levels(s))})

    @bp.get("/regions")
    def list_regions():
        page, per_page, offset = _page_args()
        level = flask.request.args.get("level")
        if level and level not in REGION_LEVELS:
            raise AccessError(f"level must be {', '.join(REGION_LEVELS[:-1])} or {REGION_LEVELS[-1]}", 422,
                              "invalid")
        parent = flask.request.args.get("parent")
        items = api_queries.regions(engine, me(), level=level, parent=_adcode(parent) if parent else None)
        return flask.jsonify(_paged(items[offset:offset + per_page], len(items), page, per_page))

    @bp.get("/regions/<adcode>")
    def get_region(adcode):
        feature = api_queries.region_feature(engine, me(), _adcode(adcode))
        _audit("view_region", adcode, flask.request.path)
        return flask.jsonify(feature)

    @bp.get("/regions/<adcode>/children")
    def region_children(adcode):
        return flask.jsonify(api_queries.children_features(engine, me(), _adcode(adcode)))

    @bp.get("/regions/<adcode>/indicators")
    def region_indicators(adcode):
        page, per_page, offset = _page_args()
        resolution = flask.request.args.get("resolution", "hour")
        if resolution not in ("hour", "minute"):
            raise AccessError("resolution must be 'hour' or 'minute'", 422, "invalid")
        items, total = api_queries.indicators(engine, me(), _adcode(adcode),
                                            metric=flask.request.args.get("metric") or None,
                                            resolution=resolution, hours=_int_arg("hours", 24, 1, 24 * 31),
                                            limit=per_page, offset=offset)
        _audit("view_region", adcode, flask.request.path)
        return flask.jsonify(_paged(items, total, page, per_page))

    @bp.get("/regions/<adcode>/video")
    def region_video(adcode):
        items = api_queries.video_counts(engine, me(), _adcode(adcode), hours=_int_arg("hours", 24, 1, 24 * 31))
        return flask.jsonify({"items": items, "total": len(items)})

    @bp.get("/regions/<adcode>/quality")
    def region_quality(adcode):
        return flask.jsonify(governance.quality(engine, me(), _adcode(adcode), hours=_int_arg("hours", 1, 1, 168)))

    @bp.get("/alerts")
    def list_alerts():
        page, per_page, offset = _page_args()
        region = flask.request.args.get("region")
        items, total = api_queries.alerts(engine, me(), region=_adcode(region) if region else None,
                                        status=_list_arg("status", STATUSES),
                                        level=_list_arg("level", LEVELS),
                                        theme=flask.request.args.get("theme") or None,
                                        limit=per_page, offset=offset)
        _audit("view_alerts", region or me().home, flask.request.path, total=total,
               query=flask.request.query_string.decode()[:200])
        return flask.jsonify(_paged(items, total, page, per_page))

    @bp.get("/alerts/<alert_id>")
    def get_alert(alert_id):
        row = api_queries.alert(engine, me(), alert_id)
        _audit("view_alert", row.get("adcode"), str(alert_id))
        return flask.jsonify(row)

    def _due_time(value) -> datetime:
        try:
            due = datetime.fromisoformat(str(value))
        except ValueError:
            due = None
        if due is None or due.tzinfo is None:
            raise AccessError("due must be a date-time with a time-zone offset, e.g. 2026-06-01T18:00:00+08:00",
                              422, "invalid")
        return due

    @bp.post("/alerts/<alert_id>/actions")
    def act_on_alert(alert_id):
        body = flask.request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            raise AccessError('send a JSON object like {"action": "acknowledge", "note": "…"}', 422, "invalid")
        note = body.get("note")
        if note is not None and not isinstance(note, str):
            raise AccessError("note must be a string", 422, "invalid")
        extra = {k: body[k] for k in ("false_alarm",) if k in body}
        if "assignee" in body:  # the API's names for the lifecycle's dispatch fields
            if not isinstance(body["assignee"], str):
                raise AccessError("assignee must be a string (a unit or person)", 422, "invalid")
            extra["to_unit"] = body["assignee"]
        if "due" in body:
            extra["due_at"] = _due_time(body["due"])
        result = handling.act(engine, me(), alert_id, body["action"], note=note,
                               channel=flask.g.tongguan_channel, ip=flask.request.remote_addr, **extra)
        return flask.jsonify(result)

    @bp.get("/records/<kind>/<event_id>")
    def get_record(kind, event_id):
        if kind not in ("reading", "video_event"):
            raise AccessError("kind must be 'reading' or 'video_event'", 404, "not_found")
        rec = api_queries.record(engine, me(), kind, event_id)
        table = "readings" if kind == "reading" else "video_events"
        out = governance.desensitise(me(), table, rec)
        _audit("view_record", rec.get("county"), f"{kind}:{event_id}")
        return flask.jsonify(out)

    @bp.get("/catalogue")
    def get_catalogue():
        items = governance.visible_catalogue(me())
        return flask.jsonify({"items": items, "total": len(items)})

    @bp.get("/audit")
    def get_audit():
        page, per_page, offset = _page_args()
        region = flask.request.args.get("region")
        items, total = audit.query(engine, scope=me(), region=_adcode(region) if region else None,
                                   actor=flask.request.args.get("actor") or None,
                                   action=flask.request.args.get("action") or None,
                                   limit=per_page, offset=offset)
        return flask.jsonify(_paged(items, total, page, per_page))

    _install_users(bp, engine, me, _audit)
    _install_subscriptions(bp, engine, me, _audit)

    @bp.route("/<path:_unknown>", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
    def not_an_endpoint(_unknown):
        # Else Dash's catch-all page route answers an unknown API path with its HTML page (200).
        return _error(404, "not_found", f"no such endpoint: {flask.request.path[:200]} (see {PREFIX}/openapi.json)")

    server.register_blueprint(bp)

    @server.errorhandler(404)
    def _not_found(exc):
        if flask.request.path.startswith(PREFIX):
            return _error(404, "not_found", f"no such endpoint {flask.request.path}; see {PREFIX}/openapi.json")
        return exc

    @server.errorhandler(405)
    def _not_allowed(exc):
        if flask.request.path.startswith(PREFIX):
            return _error(405, "method_not_allowed", f"{flask.request.method} is not allowed here")
        return exc

    @server.errorhandler(429)
    def _too_many(exc):
        if flask.request.path.startswith(PREFIX):
            return _error(429, "rate_limited", "too many requests; slow down")
        return exc

    @server.errorhandler(500)
    def _server_error(exc):
        if flask.request.path.startswith(PREFIX):
            return _error(500, "internal", "internal error; it has been logged")
        return exc


def _user_out(row: dict) -> dict:
    keep = ("id", "username", "display_name", "home_adcode", "roles", "active", "locked_until", "last_login_at",
            "created_at")
    return {k: (row[k].isoformat() if hasattr(row.get(k), "isoformat") else row.get(k)) for k in keep}


def _install_users(bp, engine, me, _audit) -> None:
    """Users of an admin's subtree (list, add, disable, enable), and every user's own API tokens."""
    import flask

    def _admin_of(home: str) -> None:
        if not me().is_admin:
            raise AccessError("managing users needs the admin role", 403, "forbidden")
        require_region(engine, me(), home)

    def _target(username: str) -> dict:
        user = identity.get_user(engine, username)
        if user is None or not me().within(tree_for(engine), user["home_adcode"].strip()):
            raise not_found(f"user {username}")
        return user

    @bp.get("/users")
    def list_users():
        if not me().is_admin:
            raise AccessError("listing users needs the admin role", 403, "forbidden")
        page, per_page, offset = _page_args()
        rows = identity.list_users(engine, within=me().home)
        return flask.jsonify(_paged([_user_out(r) for r in rows[offset:offset + per_page]], len(rows), page, per_page))

    @bp.post("/users")
    def add_user():
        body = flask.request.get_json(silent=True)
        if not isinstance(body, dict):
            raise AccessError("send a JSON object (username, password, home, roles)", 422, "invalid")
        fields = {k: body.get(k) for k in ("username", "password", "home", "display_name")}
        if not all(isinstance(fields[k], str) for k in ("username", "password", "home")) or not isinstance(
                fields["display_name"] or "", str):
            raise AccessError("username, password and home are strings", 422, "invalid")
        roles = body.get("roles", ["viewer"])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AccessError("roles is a list of strings", 422, "invalid")
        home = _adcode(fields["home"])
        _admin_of(home)
        user = identity.add_user(engine, fields["username"], fields["password"], home=home, roles=roles,
                             display_name=fields["display_name"] or "")
        _audit("user_add", home, user["username"], roles=user["roles"])
        return flask.jsonify(_user_out({**identity.get_user(engine, user["username"])})), 201

    def _set_active(username: str, active: bool):
        user = _target(username)
        _admin_of(user["home_adcode"].strip())
        if user["username"] == me().username:
            raise AccessError("you cannot disable or enable yourself", 422, "invalid")
        identity.set_active(engine, username, active)
        _audit("user_enable" if active else "user_disable", user["home_adcode"].strip(), username)
        return flask.jsonify(_user_out(identity.get_user(engine, username)))

    @bp.post("/users/<username>/disable")
    def disable_user(username):
        return _set_active(username, False)

    @bp.post("/users/<username>/enable")
    def enable_user(username):
        return _set_active(username, True)

    @bp.get("/tokens")
    def list_tokens():
        rows = identity.list_tokens(engine, me().username)
        items = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in rows]
        return flask.jsonify({"items": items, "total": len(items)})

    @bp.post("/tokens")
    def create_token():
        body = flask.request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("name", ""), str):
            raise AccessError('send a JSON object like {"name": "12345-hotline", "days": 90}', 422, "invalid")
        days = body.get("days")
        if days is not None and (not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650):
            raise AccessError("days is an integer from 1 to 3650", 422, "invalid")
        t = identity.create_token(engine, me().username, body.get("name") or "api", days=days)
        _audit("token_create", me().home, f"{me().username}#{t['id']}", name=t["name"])
        return flask.jsonify({"id": t["id"], "token": t["token"], "name": t["name"],
                              "expires_at": t["expires_at"].isoformat() if t["expires_at"] else None}), 201

    @bp.delete("/tokens/<token_id>")
    def revoke_token(token_id):
        if not re.fullmatch(r"\d{1,18}", token_id or ""):
            raise not_found(f"token {token_id}")
        t = identity.revoke_token(engine, int(token_id), username=me().username)
        _audit("token_revoke", me().home, f"{t['user']}#{t['id']}")
        return flask.jsonify({"id": t["id"], "revoked": True})


def _sub_out(row: dict, *, full: bool = True) -> dict:
    """A subscription for the API. Its webhook URL (keys often ride in it) and e-mail address are
    for its owner and admins only (``full``); others see that the channel exists."""
    out = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items() if k != "secret"}
    out["adcode"] = str(out.get("adcode") or "").strip()
    if not full:
        out["webhook_url"] = None
        out["email"] = None
    return out


def _require_owner_in_region(engine, owner: str, adcode: str) -> None:
    """An admin's subscription for someone else: that user exists, is active, and the region lies
    in their scope too (it already lies in the admin's)."""
    from apps.scope import unscoped

    with unscoped():
        user = identity.get_user(engine, owner)
    if user is None or not user["active"] or not identity.scope_of(user).within(tree_for(engine), adcode):
        raise AccessError(f"owner {owner} is not an active user whose region holds {adcode}", 422, "invalid")


def _install_subscriptions(bp, engine, me, _audit) -> None:
    """Subscriptions (analytics' functions; the queries run under row-level security): anyone
    lists those of their subtree; a user creates and removes their own, an admin any of the
    subtree. Webhook secrets are shown once, at creation."""
    import flask

    from analytics.alerting import subscriptions as subs
    from tongguan import TongguanError

    settings = tuple(f.name for f in setting_fields())  # each channel's (the channel registry)

    @bp.get("/subscriptions")
    def list_subscriptions():
        page, per_page, offset = _page_args()
        tree = tree_for(engine)
        rows = [r for r in subs.list_subscriptions(engine) if me().within(tree, str(r["adcode"]).strip())]
        return flask.jsonify(_paged([_sub_out(r, full=r["owner"] == me().username or me().is_admin)
                                     for r in rows[offset:offset + per_page]], len(rows), page, per_page))

    @bp.post("/subscriptions")
    def create_subscription():
        body = flask.request.get_json(silent=True)
        if not isinstance(body, dict):
            raise AccessError("send a JSON object (name, adcode, channels, themes, min_level, …)", 422, "invalid")
        adcode = _adcode(str(body.get("adcode", "")))
        require_region(engine, me(), adcode)
        owner = body.get("owner") or me().username
        if owner != me().username and not me().is_admin:
            raise AccessError("only an admin creates subscriptions for others", 403, "forbidden")
        allowed = ("name", "channels", "themes", "min_level", *settings, "quiet_start", "quiet_end",
                   "timezone", "escalated_only")
        kw = {k: body[k] for k in allowed if k in body}
        for k in ("channels", "themes"):
            if k in kw and not (isinstance(kw[k], list) and all(isinstance(x, str) for x in kw[k])):
                raise AccessError(f"{k} must be a list of strings", 422, "invalid")
        for k in ("name", "min_level", *settings, "quiet_start", "quiet_end", "timezone"):
            if k in kw and not isinstance(kw[k], str):
                raise AccessError(f"{k} must be a string", 422, "invalid")
        if not isinstance(owner, str):
            raise AccessError("owner must be a string", 422, "invalid")
        if owner != me().username:
            _require_owner_in_region(engine, owner, adcode)
        try:
            row = subs.add_subscription(engine, owner=owner, adcode=adcode, name=kw.pop("name", ""),
                                        channels=kw.pop("channels", []), **kw)
        except TongguanError as exc:
            raise AccessError(str(exc), 422, "invalid") from None
        _audit("subscription_create", adcode, str(row["id"]), owner=owner)
        out = _sub_out(row)
        if row.get("secret"):
            out["secret"] = row["secret"]
        return flask.jsonify(out), 201

    @bp.delete("/subscriptions/<sub_id>")
    def delete_subscription(sub_id: str):
        if not re.fullmatch(r"\d{1,18}", sub_id or ""):
            raise not_found(f"subscription {sub_id}")
        sub_id = int(sub_id)
        try:
            row = subs.get_subscription(engine, sub_id)
        except TongguanError:
            raise not_found(f"subscription {sub_id}") from None
        adcode = str(row["adcode"]).strip()
        if not me().within(tree_for(engine), adcode):
            raise not_found(f"subscription {sub_id}")
        if row["owner"] != me().username and not me().is_admin:
            _audit("subscription_remove", adcode, str(sub_id), outcome="denied")
            raise AccessError("only its owner or an admin removes a subscription", 403, "forbidden")
        try:
            subs.remove_subscription(engine, sub_id)
        except TongguanError as exc:
            raise AccessError(str(exc), 409, "conflict") from None
        _audit("subscription_remove", adcode, str(sub_id))
        return flask.jsonify({"id": sub_id, "active": False})


# --------------------------------------------------------------------------- OpenAPI
def _err_ref(*codes):
    return {str(c): {"$ref": "#/components/responses/Error"} for c in codes}


def _ok(schema_ref: str, desc: str = "OK", media: str = "application/json"):
    return {"200": {"description": desc, "content": {media: {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}}}


def _param(name, where="query", schema=None, required=False, desc=""):
    return {"name": name, "in": where, "required": required or where == "path", "description": desc,
            "schema": schema or {"type": "string"}}


ADCODE_PARAM = _param("adcode", "path", {"type": "string", "pattern": r"^\d{6}$"}, desc="six-digit region code")
PAGE_PARAMS = [_param("page", schema={"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}),
               _param("per_page", schema={"type": "integer", "minimum": 1, "maximum": 500, "default": 50})]


def openapi_document() -> dict:
    """The OpenAPI 3.0 description of this API (what ``/api/v1/openapi.json`` serves)."""
    std_errors = _err_ref(401, 403, 404, 422, 429)
    paged = lambda item: {"type": "object", "required": ["items", "page", "per_page", "total"],
                          "properties": {"items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
                                         "page": {"type": "integer"}, "per_page": {"type": "integer"},
                                         "total": {"type": "integer"}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "tongguan 统管 API", "version": "1.0.0",
                 "description": "Region-scoped access to regions, indicators, alerts, records and the data "
                                "catalogue. Every answer is limited to the caller's region subtree."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            f"{PREFIX}/me": {"get": {"summary": "The caller: user, home region, roles",
                                     "responses": {**_ok("Me"), **_err_ref(401, 429)}}},
            f"{PREFIX}/regions": {"get": {
                "summary": "Regions of the caller's subtree",
                "parameters": [_param("level", schema={"type": "string", "enum": list(REGION_LEVELS)}),
                               _param("parent", schema={"type": "string", "pattern": r"^\d{6}$"}), *PAGE_PARAMS],
                "responses": {**_ok("RegionPage"), **std_errors}}},
            f"{PREFIX}/regions/{{adcode}}": {"get": {
                "summary": "One region as a GeoJSON Feature", "parameters": [ADCODE_PARAM],
                "responses": {**_ok("Feature", media="application/json"), **std_errors}}},
            f"{PREFIX}/regions/{{adcode}}/children": {"get": {
                "summary": "The region's children as a GeoJSON FeatureCollection (display boundaries)",
                "parameters": [ADCODE_PARAM], "responses": {**_ok("FeatureCollection"), **std_errors}}},
            f"{PREFIX}/regions/{{adcode}}/indicators": {"get": {
                "summary": "Reading rollups (per metric and bucket) of the region",
                "parameters": [ADCODE_PARAM, _param("metric"),
                               _param("resolution", schema={"type": "string", "enum": ["hour", "minute"]}),
                               _param("hours", schema={"type": "integer", "minimum": 1, "maximum": 744}),
                               *PAGE_PARAMS],
                "responses": {**_ok("IndicatorPage"), **std_errors}}},
            f"{PREFIX}/regions/{{adcode}}/video": {"get": {
                "summary": "Video events per type and hour of the region",
                "parameters": [ADCODE_PARAM, _param("hours", schema={"type": "integer", "minimum": 1, "maximum": 744})],
                "responses": {**_ok("VideoCounts"), **std_errors}}},
            f"{PREFIX}/regions/{{adcode}}/quality": {"get": {
                "summary": "Data quality of the region: completeness, timeliness, out-of-range, dead letters",
                "parameters": [ADCODE_PARAM, _param("hours", schema={"type": "integer", "minimum": 1, "maximum": 168})],
                "responses": {**_ok("Quality"), **std_errors}}},
            f"{PREFIX}/alerts": {"get": {
                "summary": "Alerts of the caller's subtree, newest change first",
                "parameters": [_param("region", schema={"type": "string", "pattern": r"^\d{6}$"}),
                               _param("status", schema={"type": "string", "enum": list(STATUSES)}),
                               _param("level", schema={"type": "string", "enum": list(LEVELS)}),
                               _param("theme"), *PAGE_PARAMS],
                "responses": {**_ok("AlertPage"), **std_errors}}},
            f"{PREFIX}/alerts/{{alert_id}}": {"get": {
                "summary": "One alert with its history", "parameters": [_param("alert_id", "path")],
                "responses": {**_ok("Alert"), **std_errors}}},
            f"{PREFIX}/alerts/{{alert_id}}/actions": {"post": {
                "summary": "Handle an alert (operator of its handling region, or take it over from an ancestor)",
                "parameters": [_param("alert_id", "path")],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/AlertAction"}}}},
                "responses": {**_ok("Alert"), **_err_ref(401, 403, 404, 409, 422, 429, 501)}}},
            f"{PREFIX}/records/{{kind}}/{{event_id}}": {"get": {
                "summary": "One stored reading or video event with its provenance (topic, partition, offset); "
                           "fields above the caller's clearance are removed",
                "parameters": [_param("kind", "path", {"type": "string", "enum": ["reading", "video_event"]}),
                               _param("event_id", "path")],
                "responses": {**_ok("Record"), **std_errors}}},
            f"{PREFIX}/catalogue": {"get": {"summary": "The data catalogue (datasets, owners, classification)",
                                            "responses": {**_ok("Catalogue"), **_err_ref(401, 429)}}},
            f"{PREFIX}/subscriptions": {
                "get": {"summary": "Subscriptions of the caller's subtree (secrets never shown)",
                        "parameters": [*PAGE_PARAMS], "responses": {**_ok("SubscriptionPage"), **std_errors}},
                "post": {"summary": "Subscribe a region's subtree (own, or anyone's as an admin)",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {
                             "$ref": "#/components/schemas/SubscriptionNew"}}}},
                         "responses": {"201": {"description": "created", "content": {"application/json": {
                             "schema": {"$ref": "#/components/schemas/Subscription"}}}},
                             **_err_ref(401, 403, 404, 422, 429)}}},
            f"{PREFIX}/subscriptions/{{sub_id}}": {"delete": {
                "summary": "Remove (deactivate) a subscription",
                "parameters": [_param("sub_id", "path", {"type": "integer"})],
                "responses": {**_ok("Subscription"), **_err_ref(401, 403, 404, 409, 429)}}},
            f"{PREFIX}/users": {
                "get": {"summary": "Users of the admin's subtree", "parameters": [*PAGE_PARAMS],
                        "responses": {**_ok("UserPage"), **std_errors}},
                "post": {"summary": "Add a user with a home region inside the admin's subtree",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {
                             "$ref": "#/components/schemas/UserNew"}}}},
                         "responses": {"201": {"description": "created", "content": {"application/json": {
                             "schema": {"$ref": "#/components/schemas/User"}}}}, **_err_ref(401, 403, 404, 409, 422, 429)}}},
            f"{PREFIX}/users/{{username}}/disable": {"post": {
                "summary": "Disable a user of the admin's subtree (ends sessions, tokens stop working)",
                "parameters": [_param("username", "path")], "responses": {**_ok("User"), **std_errors}}},
            f"{PREFIX}/users/{{username}}/enable": {"post": {
                "summary": "Enable a user of the admin's subtree",
                "parameters": [_param("username", "path")], "responses": {**_ok("User"), **std_errors}}},
            f"{PREFIX}/tokens": {
                "get": {"summary": "The caller's API tokens (never their secrets)",
                        "responses": {**_ok("TokenList"), **_err_ref(401, 429)}},
                "post": {"summary": "Create an API token for the caller (its secret is shown once)",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {
                             "$ref": "#/components/schemas/TokenNew"}}}},
                         "responses": {"201": {"description": "created", "content": {"application/json": {
                             "schema": {"$ref": "#/components/schemas/TokenCreated"}}}}, **_err_ref(401, 422, 429)}}},
            f"{PREFIX}/tokens/{{token_id}}": {"delete": {
                "summary": "Revoke one of the caller's tokens",
                "parameters": [_param("token_id", "path", {"type": "integer", "minimum": 1})],
                "responses": {**_ok("TokenRevoked"), **_err_ref(401, 404, 429)}}},
            f"{PREFIX}/audit": {"get": {
                "summary": "Audit log entries of the caller's subtree (admins)",
                "parameters": [_param("region", schema={"type": "string", "pattern": r"^\d{6}$"}),
                               _param("actor"), _param("action"), *PAGE_PARAMS],
                "responses": {**_ok("AuditPage"), **std_errors}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "a per-user API token (tongguan tokens create)"}},
            "responses": {"Error": {"description": "an error", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["status", "code", "message"],
                    "properties": {"status": {"type": "integer"}, "code": {"type": "string"},
                                   "message": {"type": "string"}}}}},
                "Me": {"type": "object", "required": ["username", "home", "roles"],
                       "properties": {"username": {"type": "string"}, "home": {"type": "string"},
                                      "roles": {"type": "array", "items": {"type": "string"}},
                                      "classification_levels": {"type": "array", "items": {"type": "string"}}}},
                "Region": {"type": "object", "required": ["adcode", "name", "level"],
                           "properties": {"adcode": {"type": "string"}, "name": {"type": "string"},
                                          "name_en": {"type": "string", "nullable": True},
                                          "level": {"type": "string"},
                                          "parent": {"type": "string", "nullable": True}}},
                "RegionPage": paged("Region"),
                "Feature": {"type": "object", "required": ["type", "properties"],
                            "properties": {"type": {"type": "string", "enum": ["Feature"]},
                                           "geometry": {"type": "object", "nullable": True},
                                           "properties": {"type": "object"}}},
                "FeatureCollection": {"type": "object", "required": ["type", "features"],
                                      "properties": {"type": {"type": "string", "enum": ["FeatureCollection"]},
                                                     "features": {"type": "array",
                                                                  "items": {"$ref": "#/components/schemas/Feature"}}}},
                "Indicator": {"type": "object", "properties": {
                    "metric": {"type": "string"}, "bucket": {"type": "string", "format": "date-time"},
                    "n": {"type": "integer"}, "min": {"type": "number"}, "max": {"type": "number"},
                    "mean": {"type": "number", "nullable": True}, "last": {"type": "number"},
                    "last_ts": {"type": "string", "format": "date-time"}}},
                "IndicatorPage": paged("Indicator"),
                "VideoCounts": {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}},
                                                                "total": {"type": "integer"}}},
                "Quality": {"type": "object", "required": ["adcode", "completeness", "timeliness", "dead_letters"],
                            "properties": {"adcode": {"type": "string"}, "completeness": {"type": "object"},
                                           "timeliness": {"type": "object"}, "out_of_range": {"type": "object"},
                                           "dead_letters": {"type": "object"}}},
                "Alert": {"type": "object", "required": ["id", "level", "status", "adcode"], "properties": {
                    "id": {"type": "string"}, "source": {"type": "string"},
                    "level": {"type": "string", "enum": list(LEVELS)},
                    "theme": {"type": "string"}, "title": {"type": "string"}, "detail": {"type": "object"},
                    "subject": {"type": "string"}, "confidence": {"type": "number"},
                    "adcode": {"type": "string"}, "city": {"type": "string"}, "province": {"type": "string"},
                    "grid_id": {"type": "string", "nullable": True},
                    "geometry": {"type": "object", "nullable": True},
                    "first_seen": {"type": "string"}, "last_seen": {"type": "string"},
                    "count": {"type": "integer"}, "status": {"type": "string", "enum": list(STATUSES)},
                    "handling_region": {"type": "string"},
                    "history": {"type": "array", "items": {"type": "object"}}}},
                "AlertPage": paged("Alert"),
                "AlertAction": {"type": "object", "required": ["action"], "properties": {
                    "action": {"type": "string", "enum": list(ACTIONS)},
                    "note": {"type": "string"}, "assignee": {"type": "string"},
                    "due": {"type": "string", "format": "date-time"}, "false_alarm": {"type": "boolean"}}},
                "Record": {"type": "object", "required": ["event_id"], "properties": {
                    "event_id": {"type": "string"},
                    "provenance": {"type": "object", "properties": {
                        "topic": {"type": "string"}, "partition": {"type": "integer"},
                        "offset": {"type": "integer"}, "ingested_at": {"type": "string"}}},
                    "hidden_fields": {"type": "array", "items": {"type": "string"}}}},
                "Catalogue": {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}},
                                                              "total": {"type": "integer"}}},
                "AuditEntry": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "ts": {"type": "string"}, "actor": {"type": "string"},
                    "action": {"type": "string"}, "region": {"type": "string", "nullable": True},
                    "target": {"type": "string", "nullable": True}, "outcome": {"type": "string"},
                    "channel": {"type": "string"}}},
                "AuditPage": paged("AuditEntry"),
                "User": {"type": "object", "required": ["username", "home_adcode", "roles"], "properties": {
                    "id": {"type": "integer"}, "username": {"type": "string"}, "display_name": {"type": "string"},
                    "home_adcode": {"type": "string"}, "roles": {"type": "array", "items": {"type": "string"}},
                    "active": {"type": "boolean"}}},
                "UserPage": paged("User"),
                "UserNew": {"type": "object", "required": ["username", "password", "home"], "properties": {
                    "username": {"type": "string"}, "password": {"type": "string", "minLength": 10},
                    "home": {"type": "string"}, "display_name": {"type": "string"},
                    "roles": {"type": "array", "items": {"type": "string", "enum": ["viewer", "operator", "admin"]}}}},
                "TokenList": {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}},
                                                              "total": {"type": "integer"}}},
                "TokenNew": {"type": "object", "properties": {"name": {"type": "string"},
                                                             "days": {"type": "integer", "minimum": 1, "maximum": 3650}}},
                "TokenCreated": {"type": "object", "required": ["id", "token"], "properties": {
                    "id": {"type": "integer"}, "token": {"type": "string"}, "name": {"type": "string"},
                    "expires_at": {"type": "string", "nullable": True}}},
                "TokenRevoked": {"type": "object", "properties": {"id": {"type": "integer"},
                                                                 "revoked": {"type": "boolean"}}},
                "Subscription": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "adcode": {"type": "string"}, "active": {"type": "boolean"}}},
                "SubscriptionPage": paged("Subscription"),
                "SubscriptionNew": {"type": "object", "required": ["name", "adcode", "channels"], "properties": {
                    "name": {"type": "string"}, "adcode": {"type": "string"}, "owner": {"type": "string"},
                    "channels": {"type": "array", "items": {"type": "string", "enum": list(channel_names())}},
                    "themes": {"type": "array", "items": {"type": "string"}},
                    "min_level": {"type": "string", "enum": list(LEVELS)},
                    **{f.name: {"type": "string", "description": f.label_en}
                       for f in setting_fields()},
                    "quiet_start": {"type": "string"}, "quiet_end": {"type": "string"},
                    "timezone": {"type": "string"}, "escalated_only": {"type": "boolean"}}},
            },
        },
    }
