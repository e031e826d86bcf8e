"""Region scope: what a caller may see and handle, enforced by PostgreSQL itself.

Choice: **PostgreSQL row-level security**, with this module as the one place that turns a caller
into a database scope (and the one place the finer handling rule lives).

Why RLS rather than only a scoped query layer: the views' queries (``apps/data.py``), the alert
lifecycle (``analytics``) and this package's API are written by different people and keep
growing; a WHERE clause that one of them forgets would leak another county's data. With RLS,
every connection the web server takes from the pool during a request is switched to the NOLOGIN
role ``tongguan_scoped`` (``SET ROLE``) with the caller's region in ``tongguan.scope``; the
policies of migration 0006 then keep every row of readings, video events, sensors, cameras,
rollups, alerts, alert history, subscriptions and the audit log inside that region's subtree, for
any query, including ones written later. No scope set means no rows (fail closed). Workers and
the command line are not in a request and stay the table owner (they need everything).

Why SET ROLE and not policies for the login role: the deployments connect as the database owner
(a superuser in the managed cluster and in docker/), and owners and superusers bypass RLS.

The functions below still put the scope in their WHERE clauses (it makes the plans use the
region indexes, and it is a second line if RLS were ever disabled), and they tell "not in your
region" (403) apart from "does not exist" (404) for the API's error bodies — an alert outside the
caller's region is answered 404, so its existence does not leak.

Handling an alert (``can_handle``): the operator role in the region that handles it
(``alert_handling.owner_region``: the county by default, the region it was dispatched down to, or
the ancestor that took it over). An operator of the city or province may take it over; where the
alert has been escalated to that level, acting on it takes it over implicitly (recorded).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import event

from tongguan import TongguanError

log = logging.getLogger(__name__)

ROLE = "tongguan_scoped"


class AccessError(TongguanError):
    """A caller asked for something outside their scope or role. ``status`` is the HTTP status
    the API answers with (401, 403, 404, 409, 422, 429)."""

    def __init__(self, message: str, status: int = 403, code: str = "forbidden"):
        super().__init__(message)
        self.status = status
        self.code = code


def not_found(what: str) -> AccessError:
    return AccessError(f"{what} not found (or not in your region)", 404, "not_found")


@dataclass(frozen=True)
class Scope:
    """Who is asking: a user's home region and roles. ``home`` is an adcode; the user sees its
    subtree. ``nobody()`` is the scope of an anonymous request: it sees nothing."""

    home: str
    roles: frozenset = field(default_factory=frozenset)
    username: str = ""
    user_id: int | None = None

    @classmethod
    def nobody(cls) -> Scope:
        return cls(home="", roles=frozenset(), username="")

    @property
    def is_operator(self) -> bool:
        return "operator" in self.roles

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def within(self, tree, adcode: str) -> bool:
        """True when ``adcode`` (region or grid id) lies in this scope's subtree."""
        return bool(self.home) and tree.is_within(str(adcode).strip(), self.home)


# --------------------------------------------------------------------------- database scoping
_current: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("tongguan_scope", default=None)
_installed: set[int] = set()


def current() -> Scope | None:
    """The scope database connections taken now are switched to (None: the owner, unscoped)."""
    return _current.get()


@contextlib.contextmanager
def scoped(scope: Scope | None) -> Iterator[None]:
    """Connections checked out inside this block run under ``scope`` (None: unscoped).

    The web server enters it per request (``apps.identity``); the command line uses it for
    ``--as USER``. Connections must be checked out inside the block: a connection already held
    keeps the scope it was checked out with.
    """
    token = _current.set(scope)
    try:
        yield
    finally:
        _current.reset(token)


def unscoped():
    """The owner's view, for the few reads that must happen before anybody is known (looking
    up the user at log-in, checking an API token) — never for regional data."""
    return scoped(None)


def _checkout(dbapi_conn, record, proxy):
    scope = _current.get()
    if scope is None:
        return
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"SET ROLE {ROLE}")
        cur.execute("SELECT set_config('tongguan.scope', %s, false), "
                    "set_config('tongguan.operator', %s, false), set_config('tongguan.username', %s, false)",
                    (scope.home or "", "on" if scope.is_operator else "off", scope.username or ""))
        # Committed, so the settings are the session's: a rollback by the code using the
        # connection cannot silently drop back to the owner role half-way.
        dbapi_conn.commit()
    finally:
        cur.close()
    record.info["tongguan_scoped"] = True


def _checkin(dbapi_conn, record):
    if not record.info.pop("tongguan_scoped", False) or dbapi_conn is None:
        return
    try:
        dbapi_conn.rollback()
        cur = dbapi_conn.cursor()
        cur.execute("RESET ROLE")
        cur.execute("RESET tongguan.scope")
        cur.execute("RESET tongguan.operator")
        cur.execute("RESET tongguan.username")
        cur.close()
        dbapi_conn.commit()
    except Exception:  # never hand a scoped connection to the next (maybe unscoped) user
        log.warning("could not reset a scoped connection; discarding it", exc_info=True)
        record.invalidate()


def install(engine: sa.Engine | None = None) -> sa.Engine | None:
    """Make every connection pool of the process honour :func:`scoped` (idempotent; called by
    the web server at start). Listening on the Pool class, not one engine, means an engine made
    elsewhere in a request is scoped too: nothing in a request reads as the owner by accident."""
    if not _installed:
        event.listen(sa.pool.Pool, "checkout", _checkout)
        event.listen(sa.pool.Pool, "checkin", _checkin)
        _installed.add(1)
    return engine


# --------------------------------------------------------------------------- regions
def tree_for(engine):
    from geo import RegionTree

    return RegionTree.from_db(engine)


def require_region(engine, scope: Scope, adcode: str) -> str:
    """The adcode when it is a known region inside the scope; 404 when unknown, 403 outside."""
    tree = tree_for(engine)
    code = str(adcode or "").strip()
    if code not in tree:
        raise AccessError(f"region {code or '(none)'} not found", 404, "not_found")
    if not scope.within(tree, code):
        raise AccessError(f"region {code} ({tree.name(code, lang='en')}) is outside your region "
                          f"{scope.home or '(none)'}", 403, "forbidden")
    return code


def regions(engine, scope: Scope, *, level: str | None = None, parent: str | None = None) -> list[dict]:
    """The regions of the caller's subtree (optionally one level, or the children of one)."""
    tree = tree_for(engine)
    if not scope.home:
        return []
    if parent:
        codes = list(tree.children(require_region(engine, scope, parent)))
    else:
        codes = tree.subtree(scope.home)
    out = []
    for code in codes:
        lv = tree.level(code)
        if level and lv != level:
            continue
        out.append({"adcode": code, "name": tree.name(code), "name_en": tree.name(code, lang="en"),
                    "level": lv, "parent": tree.parent(code)})
    return out


def region_feature(engine, scope: Scope, adcode: str) -> dict:
    """The region as a GeoJSON Feature (display geometry)."""
    import json

    code = require_region(engine, scope, adcode)
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT adcode, name, name_en, level, parent, area_km2, "
            "ST_AsGeoJSON(coalesce(geom_display, geom), 5) AS g, "
            "ST_X(centroid) AS lon, ST_Y(centroid) AS lat FROM regions WHERE adcode = :a"), {"a": code}).one()
    return {"type": "Feature", "id": code, "geometry": json.loads(row.g) if row.g else None,
            "properties": {"adcode": code, "name": row.name, "name_en": row.name_en, "level": row.level,
                           "parent": (row.parent or "").strip() or None,
                           "area_km2": float(row.area_km2) if row.area_km2 is not None else None,
                           "centroid": [row.lon, row.lat] if row.lon is not None else None}}


def children_features(engine, scope: Scope, adcode: str) -> dict:
    """The region's children as a GeoJSON FeatureCollection (geo's simplified display boundaries)."""
    from geo import display_geojson

    return display_geojson(engine, require_region(engine, scope, adcode))


# --------------------------------------------------------------------------- alerts
_ALERT_SQL = """
    SELECT a.id, a.source, a.level, a.theme, a.title, a.detail, a.subject, a.confidence,
           trim(a.adcode) AS adcode, trim(a.city) AS city, trim(a.province) AS province, a.grid_id,
           ST_AsGeoJSON(a.geom, 6) AS geometry, a.first_seen, a.last_seen, a.count, a.status, a.updated_at,
           coalesce(h.owner_region, trim(a.adcode)) AS handling_region,
           coalesce(h.visible_at, trim(a.adcode)) AS visible_at,
           h.assigned_unit, h.assigned_region, h.due_at, h.overdue_at, h.escalated_at, h.escalation_reason
    FROM alerts a LEFT JOIN alert_handling h ON h.alert_id = a.id
"""


def _alert_dict(row) -> dict:
    import json

    d = dict(row._mapping)
    d["geometry"] = json.loads(d["geometry"]) if d.get("geometry") else None
    for k, v in list(d.items()):
        if isinstance(v, datetime):
            d[k] = v.isoformat()
    return d


def _scope_where(scope: Scope, params: dict) -> str:
    params["scope"] = scope.home or "-"
    return "(a.province = :scope OR a.city = :scope OR a.adcode = :scope)"


def alerts(engine, scope: Scope, *, region: str | None = None, status: list[str] | None = None,
           level: list[str] | None = None, theme: str | None = None, limit: int = 50,
           offset: int = 0) -> tuple[list[dict], int]:
    """Alerts of the caller's subtree (or of one region inside it), newest change first, and the
    total matching (for pagination)."""
    params: dict = {}
    where = [_scope_where(scope, params)]
    if region:
        code = require_region(engine, scope, region)
        where.append("(a.province = :region OR a.city = :region OR a.adcode = :region)")
        params["region"] = code
    if status:
        where.append("a.status = ANY(:status)")
        params["status"] = list(status)
    if level:
        where.append("a.level = ANY(:level)")
        params["level"] = list(level)
    if theme:
        where.append("a.theme = :theme")
        params["theme"] = theme
    sql_where = " AND ".join(where)
    with engine.connect() as conn:
        total = conn.execute(sa.text(f"SELECT count(*) FROM alerts a WHERE {sql_where}"), params).scalar_one()
        rows = conn.execute(sa.text(
            f"{_ALERT_SQL} WHERE {sql_where} ORDER BY a.updated_at DESC, a.id LIMIT :limit OFFSET :offset"),
            {**params, "limit": int(limit), "offset": int(offset)}).all()
    return [_alert_dict(r) for r in rows], int(total)


def alert(engine, scope: Scope, alert_id: str, *, history: bool = True) -> dict:
    """One alert of the caller's subtree, with its history; 404 when absent or outside."""
    params = {"id": str(alert_id)}
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"{_ALERT_SQL} WHERE a.id = :id AND {_scope_where(scope, params)}"),
                           params).first()
        if row is None:
            raise not_found(f"alert {alert_id}")
        out = _alert_dict(row)
        if history:
            out["history"] = [
                {**dict(h._mapping), "ts": h.ts.isoformat()} for h in conn.execute(sa.text(
                    "SELECT ts, action, actor, level, status, note FROM alert_history "
                    "WHERE alert_id = :id ORDER BY ts, id"), {"id": str(alert_id)})]
    return out


def _rank(alert_row: dict, region: str) -> int:
    """0 county, 1 city, 2 province on the alert's path; -1 when not on it."""
    path: list[str] = []
    for k in ("adcode", "city", "province"):
        code = str(alert_row.get(k) or "").strip()
        if code and code not in path:
            path.append(code)
    return path.index(region) if region in path else -1


def can_handle(engine, scope: Scope, alert_row: dict, action: str) -> tuple[bool, str]:
    """Whether the caller may apply ``action`` to the alert, and why not.

    - only operators handle alerts, and only inside their subtree;
    - ``take_over``: an operator of a region above the one handling it (its city or province);
    - any other action: an operator of the region handling it (the county by default, the region
      it was dispatched down to, or the ancestor that took it over). An operator of an ancestor
      the alert has been escalated to may act too: the action then takes it over first (recorded).
    """
    tree = tree_for(engine)
    if not scope.is_operator:
        return False, "handling alerts needs the operator role / 处置预警需要值班员角色"
    if not scope.within(tree, alert_row["adcode"]):
        return False, "the alert is outside your region"
    owner = str(alert_row.get("handling_region") or alert_row["adcode"]).strip()
    mine, theirs = _rank(alert_row, scope.home), _rank(alert_row, owner)
    if action == "take_over":
        if mine < 1:
            return False, "only the alert's city or province can take it over"
        if mine <= theirs:
            return False, f"the alert is already handled by {owner}"
        return True, ""
    if scope.home == owner:
        return True, ""
    visible = _rank(alert_row, str(alert_row.get("visible_at") or "").strip())
    if mine >= 1 and mine > theirs and visible >= mine:
        return True, "take_over"
    return False, (f"the alert is handled by region {owner}; an operator of a region above it may take it "
                   "over (it must be escalated to that region to be handled there without taking over)")


ACTIONS = ("acknowledge", "dispatch", "resolve", "close", "false_alarm", "reopen", "take_over")


def act(engine, scope: Scope, alert_id: str, action: str, *, note: str | None = None,
        channel: str = "web", ip: str | None = None, **kwargs) -> dict:
    """Apply one handling action through the analytics lifecycle after the scope and role check;
    audited either way (ok, denied, failed). Returns the alert as it is afterwards."""
    from apps import audit

    if action not in ACTIONS:
        raise AccessError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}", 422, "invalid")
    row = alert(engine, scope, alert_id, history=False)
    ok, how = can_handle(engine, scope, row, action)
    base = dict(actor=scope.username, user_id=scope.user_id, region=row["adcode"], target=str(alert_id),
                channel=channel, ip=ip)
    if not ok:
        audit.record(engine, action=f"alert_{action}", outcome="denied", detail={"reason": how}, **base)
        raise AccessError(how, 403, "forbidden")
    from analytics.lifecycle import transition

    kw = {k: v for k, v in kwargs.items() if v is not None}
    if action == "take_over":
        kw["region"] = scope.home
    try:
        if how == "take_over":  # an ancestor the alert escalated to: take it over, then act
            transition(engine, alert_id=str(alert_id), action="take_over", actor=scope.username,
                       note=None, region=scope.home)
            audit.record(engine, action="alert_take_over", detail={"implicit": True}, **base)
        transition(engine, alert_id=str(alert_id), action=action, actor=scope.username, note=note, **kw)
    except TongguanError as exc:
        audit.record(engine, action=f"alert_{action}", outcome="failed", detail={"error": str(exc)}, **base)
        raise AccessError(str(exc), 409, "conflict") from None
    except TypeError as exc:  # a keyword this action does not take
        raise AccessError(f"bad arguments for {action}: {exc}", 422, "invalid") from None
    audit.record(engine, action=f"alert_{action}", detail={"note": note, **{k: str(v) for k, v in kw.items()}},
                 **base)
    return alert(engine, scope, alert_id)


def check_action(engine, *, alert_id: str, action: str, actor: str) -> str:
    """For the views' handling buttons (``apps.handling``): inside a signed-in request, refuse an
    action the user may not take (AccessError, audited) and return the user's name as the actor;
    outside a request (CLI, workers, tests of the views) return ``actor`` unchanged."""
    scope = current()
    if scope is None:
        return actor
    from apps import audit

    row = alert(engine, scope, alert_id, history=False)
    ok, how = can_handle(engine, scope, row, action)
    if not ok or how == "take_over":
        why = how if not ok else "take the alert over first"
        audit.record(engine, actor=scope.username, user_id=scope.user_id, action=f"alert_{action}",
                     region=row["adcode"], target=str(alert_id), outcome="denied", detail={"reason": why})
        raise AccessError(why, 403, "forbidden")
    audit.record(engine, actor=scope.username, user_id=scope.user_id, action=f"alert_{action}",
                 region=row["adcode"], target=str(alert_id))
    return scope.username


# --------------------------------------------------------------------------- indicators, records
def indicators(engine, scope: Scope, adcode: str, *, metric: str | None = None, resolution: str = "hour",
               hours: int = 24, limit: int = 1000, offset: int = 0) -> tuple[list[dict], int]:
    """Reading rollups of one region of the caller's subtree (mean, min, max, n per bucket)."""
    code = require_region(engine, scope, adcode)
    table = {"hour": "reading_rollups_hour", "minute": "reading_rollups_minute"}.get(resolution)
    if table is None:
        raise AccessError("resolution must be 'hour' or 'minute'", 422, "invalid")
    params = {"a": code, "since": datetime.now(UTC) - timedelta(hours=int(hours))}
    where = "adcode = :a AND bucket >= :since"
    if metric:
        where += " AND metric = :metric"
        params["metric"] = metric
    with engine.connect() as conn:
        total = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}"), params).scalar_one()
        rows = conn.execute(sa.text(
            f"SELECT metric, bucket, n, vmin, vmax, mean, last_value, last_ts FROM {table} WHERE {where} "
            "ORDER BY metric, bucket LIMIT :limit OFFSET :offset"),
            {**params, "limit": int(limit), "offset": int(offset)}).all()
    return [{"metric": r.metric, "bucket": r.bucket.isoformat(), "n": int(r.n), "min": r.vmin, "max": r.vmax,
             "mean": r.mean, "last": r.last_value, "last_ts": r.last_ts.isoformat()} for r in rows], int(total)


def video_counts(engine, scope: Scope, adcode: str, *, hours: int = 24) -> list[dict]:
    """Video events per type and hour of one region of the caller's subtree."""
    code = require_region(engine, scope, adcode)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT type, bucket, n, count_sum FROM video_rollups_hour WHERE adcode = :a AND bucket >= :since "
            "ORDER BY type, bucket"),
            {"a": code, "since": datetime.now(UTC) - timedelta(hours=int(hours))}).all()
    return [{"type": r.type, "bucket": r.bucket.isoformat(), "n": int(r.n), "count_sum": int(r.count_sum)}
            for r in rows]


def record(engine, scope: Scope, kind: str, event_id: str) -> dict:
    """One stored reading or video event with its provenance (topic, partition, offset)."""
    table = {"reading": "readings", "video_event": "video_events"}.get(kind)
    if table is None:
        raise AccessError("kind must be 'reading' or 'video_event'", 422, "invalid")
    params = {"id": str(event_id)}
    where = "event_id = :id AND " + "(province = :scope OR city = :scope OR county = :scope)"
    params["scope"] = scope.home or "-"
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            f"SELECT *, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM {table} WHERE {where} LIMIT 1"), params).first()
    if row is None:
        raise not_found(f"{kind} {event_id}")
    d = {k: v for k, v in dict(row._mapping).items() if k != "geom"}
    for k, v in list(d.items()):
        if isinstance(v, datetime):
            d[k] = v.isoformat()
        elif isinstance(v, str):
            d[k] = v.strip() if k in ("county", "city", "province") else v
    d["provenance"] = {"topic": d.pop("src_topic", None), "partition": d.pop("src_partition", None),
                       "offset": d.pop("src_offset", None), "ingested_at": d.pop("ingested_at", None)}
    return d
