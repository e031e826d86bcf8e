"""What the current request is: the app's configuration and engine, the signed-in user and
their scope. Pages and the server's hooks read these instead of importing ``apps.app``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

import sqlalchemy as sa

from apps.scope import Scope, unscoped


@dataclass(frozen=True)
class AppConfig:
    """What the pages read at request time (through ``flask.current_app``)."""

    database_url: str
    kafka_bootstrap: str


def current_config() -> AppConfig:
    import flask

    return flask.current_app.config["TONGGUAN"]


def engine() -> sa.Engine:
    """The app's database engine (made once by ``apps.web.install``; row-level security applies to
    its connections inside a request)."""
    import flask

    return flask.current_app.config["TONGGUAN_ENGINE"]


def current_user(engine) -> dict | None:
    """The signed-in user of this request (None: anonymous, disabled, password changed, or
    logged out: the session version in the cookie is no longer the user's)."""
    import flask

    uid = flask.session.get("uid")
    if not uid:
        return None
    with unscoped(), engine.connect() as conn:
        row = conn.execute(sa.text("SELECT id, username, display_name, home_adcode, roles, active, "
                                   "password_changed_at, session_version FROM users WHERE id = :id"),
                           {"id": int(uid)}).first()
    if (row is None or not row.active or row.password_changed_at.isoformat() != flask.session.get("pwd")
            or row.session_version != flask.session.get("sv") or not flask.session.get("nonce")):
        flask.session.clear()
        return None
    return dict(row._mapping)


def current_scope() -> Scope:
    """The scope of the current request (``Scope.nobody()`` outside one or when anonymous)."""
    import flask

    if flask.has_request_context():
        return getattr(flask.g, "tongguan_scope", None) or Scope.nobody()
    return Scope.nobody()


def same_origin() -> bool:
    """Whether a state-changing request comes from our own pages (CSRF defence for Dash's JSON
    callbacks and the API's session-cookie callers)."""
    import flask

    origin = flask.request.headers.get("Origin") or flask.request.headers.get("Referer")
    if not origin:
        return True  # non-browser clients; browsers send Origin on every cross-site POST
    return urlparse(origin).netloc == flask.request.host
