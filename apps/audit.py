"""The audit log (过程全记录): who viewed which region, who changed which alert or subscription,
log-ins and failed log-ins, token and user changes.

Append-only in the database (a trigger refuses UPDATE, DELETE and TRUNCATE, migration 0006), so
the application cannot rewrite it either. Each entry names the region it concerns; admins read
the entries of their own subtree (``query``), on the ``/audit`` page, through the API and with
``tongguan audit``. Writing an entry never breaks the action it records: a failure to write is
logged loudly instead (the action itself has already been checked and done).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

import sqlalchemy as sa

from apps.errors import AccessError
from apps.policy import require_region, tree_for

log = logging.getLogger(__name__)


def record(engine, *, actor: str, action: str, region: str | None = None, target: str | None = None,
           outcome: str = "ok", channel: str = "web", ip: str | None = None, user_id: int | None = None,
           detail: dict | None = None) -> None:
    """Append one entry (its own short transaction, so a rolled-back action is still recorded)."""
    if outcome != "ok":
        _mark_request_audited()
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO audit_log (actor, user_id, action, region, target, outcome, channel, ip, detail) "
                "VALUES (:actor, :user_id, :action, :region, :target, :outcome, :channel, :ip, CAST(:detail AS jsonb))"),
                {"actor": actor or "(anonymous)", "user_id": user_id, "action": action,
                 "region": (region or None), "target": target, "outcome": outcome, "channel": channel,
                 "ip": ip, "detail": json.dumps(detail or {}, ensure_ascii=False, default=str)})
    except Exception:
        log.error("AUDIT WRITE FAILED: actor=%s action=%s region=%s target=%s outcome=%s",
                  actor, action, region, target, outcome, exc_info=True)


def record_web(action: str, *, region: str | None = None, target: str | None = None, outcome: str = "ok",
               **detail) -> None:
    """An entry for the signed-in caller of the current web request (actor, address and engine
    from the request): the views' reads of single objects (an alert, an incident) and their
    refusals, which no region guard sees because the object's id, not a region, is in the path."""
    import flask

    from apps.context import current_scope, engine

    scope = current_scope()
    record(engine(), actor=scope.username, user_id=scope.user_id, action=action, region=region, target=target,
           outcome=outcome, channel="web", ip=flask.request.remote_addr if flask.has_request_context() else None,
           detail=detail)


def _mark_request_audited() -> None:
    """The web's catch-all (``apps.web``) records every refused request that nothing else did."""
    try:
        import flask

        if flask.has_request_context():
            flask.g.tongguan_denial_audited = True
    except ImportError:  # pragma: no cover - flask is a dependency of apps
        pass


def query(engine, *, scope=None, region: str | None = None, actor: str | None = None,
          action: str | None = None, since: datetime | None = None, limit: int = 100,
          offset: int = 0) -> tuple[list[dict], int]:
    """Entries newest first, and the total. With ``scope`` (an admin's), only entries whose region
    lies in the admin's subtree (entries without a region only for province admins)."""
    where, params = ["true"], {}
    if scope is not None:
        if not scope.is_admin:
            raise AccessError("reading the audit log needs the admin role", 403, "forbidden")
        tree = tree_for(engine)
        codes = tree.subtree(scope.home)
        where.append("(region = ANY(:codes)" + (" OR region IS NULL" if tree.level(scope.home) == "province"
                                                 else "") + ")")
        params["codes"] = codes
        if region:
            region = require_region(engine, scope, region)
    if region:
        where.append("region = ANY(:sub)")
        params["sub"] = tree_for(engine).subtree(region)
    if actor:
        where.append("actor = :actor")
        params["actor"] = actor
    if action:
        where.append("action LIKE :action")
        params["action"] = (action.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
                            .replace("*", "%"))
    if since:
        where.append("ts >= :since")
        params["since"] = since
    sql_where = " AND ".join(where)
    with engine.connect() as conn:
        total = conn.execute(sa.text(f"SELECT count(*) FROM audit_log WHERE {sql_where}"), params).scalar_one()
        rows = conn.execute(sa.text(
            "SELECT id, ts, actor, user_id, action, region, target, outcome, channel, ip, detail "
            f"FROM audit_log WHERE {sql_where} ORDER BY ts DESC, id DESC LIMIT :limit OFFSET :offset"),
            {**params, "limit": int(limit), "offset": int(offset)}).all()
    out = []
    for r in rows:
        d = dict(r._mapping)
        d["ts"] = d["ts"].isoformat()
        d["region"] = (d["region"] or "").strip() or None
        out.append(d)
    return out, int(total)
