"""Region scope plumbing: which region's rows the database connections of this moment may see,
enforced by PostgreSQL itself.

Choice: **PostgreSQL row-level security**, with this module as the one place that turns a caller
into a database scope. Who may *do* what (handling rules, region checks) is ``apps.policy``.

Why RLS rather than only a scoped query layer: the views' queries (``apps/queries/``), the alert
lifecycle (``analytics``) and this package's API are written by different people and keep
growing; a WHERE clause that one of them forgets would leak another county's data. With RLS,
every connection the web server takes from the pool during a request is switched to the NOLOGIN
role ``tongguan_scoped`` (``SET ROLE``) with the caller's region in ``tongguan.claims``, signed
with a key only the database owner reads and bound to the connection's backend pid (migration
0012), so SQL run on the connection cannot widen its own scope; the policies of migration 0006
then keep every row of readings, video events, sensors, cameras, rollups, alerts, alert history,
subscriptions and the audit log inside that region's subtree, for any query, including ones
written later. No valid claim means no rows (fail closed). Outside a request the web's login role
``tongguan_app`` carries an *unscoped* claim (log-in, token checks); ``RESET ROLE`` inside a
request drops to that role with a scoped claim, which opens nothing. Workers log in as
``tongguan_worker``, the command line as the owner.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import sqlalchemy as sa
from sqlalchemy import event

log = logging.getLogger(__name__)

ROLE = "tongguan_scoped"


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

    The command line uses it for ``--as USER`` (the web server, whose requests start and end in
    two hooks, uses :func:`enter` and :func:`leave`). Connections must be checked out inside the
    block: a connection already held keeps the scope it was checked out with.
    """
    token = _current.set(scope)
    try:
        yield
    finally:
        _current.reset(token)


def enter(scope: Scope | None) -> contextvars.Token:
    """Start running under ``scope`` until :func:`leave` with the returned token: for the web
    server's request hooks, whose start and end are two functions (a ``with`` block cannot span
    them)."""
    return _current.set(scope)


def leave(token: contextvars.Token) -> None:
    """End what :func:`enter` started."""
    _current.reset(token)


def unscoped():
    """The owner's view, for the few reads that must happen before anybody is known (looking
    up the user at log-in, checking an API token) — never for regional data."""
    return scoped(None)


# One round trip each way. The role and the claim are set together, at session level, outside
# any transaction (autocommit for that one statement: psycopg switches it locally, without a round
# trip, on an idle connection), so a rollback by the code using the connection cannot silently
# drop back to the app role half-way. ``set_config('role', …)`` is what SET ROLE does ('none' is
# RESET ROLE). Before, each checkout and checkin cost four or five round trips (BEGIN, SET, SET,
# COMMIT): on a busy server more than the queries themselves.
_SWITCH = "SELECT set_config('role', %s, false), set_config('tongguan.claims', %s, false)"


def _session_statement(dbapi_conn, sql: str, params) -> None:
    autocommit = dbapi_conn.autocommit  # an AUTOCOMMIT engine's connections keep theirs
    if not autocommit:
        dbapi_conn.rollback()  # nothing to roll back at checkout/checkin: no round trip when idle
        dbapi_conn.autocommit = True
    try:
        cur = dbapi_conn.cursor()
        try:
            cur.execute(sql, params)
        finally:
            cur.close()
    finally:
        dbapi_conn.autocommit = autocommit


def _checkout(dbapi_conn, record, proxy):
    from tongguan.db import sign_claims

    scope = _current.get()
    pid = dbapi_conn.info.backend_pid
    if scope is None:
        role, claims = "none", sign_claims(pid, "unscoped")
    else:
        role, claims = ROLE, sign_claims(pid, "scoped", scope.home or "", scope.is_operator, scope.username or "")
    try:
        _session_statement(dbapi_conn, _SWITCH, (role, claims))
    except psycopg.OperationalError as exc:
        # The database dropped this pooled connection (a restart): the pool discards it and
        # checks out a fresh one, as its pre-ping would have (the web's engine does not pre-ping).
        raise sa.exc.DisconnectionError(str(exc)) from exc
    record.info["tongguan_scoped"] = True


def _checkin(dbapi_conn, record):
    if not record.info.pop("tongguan_scoped", False) or dbapi_conn is None:
        return
    try:
        _session_statement(dbapi_conn, _SWITCH, ("none", ""))
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
