"""Database engine, metadata shared by the domain packages, and migrations (Alembic)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tongguan import TongguanError

log = logging.getLogger(__name__)

# One MetaData for the whole product; domain packages add their tables to it and the
# migrations are written against it.
metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

MIGRATIONS = Path(__file__).with_name("migrations")


class DatabaseError(TongguanError):
    """The database could not be reached or migrated."""


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


@lru_cache(maxsize=8)
def engine_for(url: str, *, pre_ping: bool = True) -> Engine:
    """The process's engine for ``url``. ``pre_ping``: a round trip at every checkout finds a
    connection the database dropped (a restart); the web's scoped engine passes False because
    switching the scope at checkout is already such a statement (``apps.scope``)."""
    return sa.create_engine(normalise_url(url), pool_pre_ping=pre_ping, pool_size=5, max_overflow=10)


def wait_for_db(url: str, *, timeout: float = 30.0) -> Engine:
    """Return an engine once ``SELECT 1`` answers (the pre-start step)."""
    eng = engine_for(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with eng.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return eng
        except sa.exc.OperationalError as exc:
            if time.monotonic() > deadline:
                raise DatabaseError(f"database at {eng.url.render_as_string(hide_password=True)} "
                                    f"does not answer: {exc.orig}") from exc
            time.sleep(0.5)


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (the schema belongs to migrations, never create_all),
    then give the service roles their privileges on every table and store the claims key."""
    from alembic import command

    wait_for_db(url)
    if not _may_migrate(url):
        # A service role (a worker, the web) with an external URL, as docker/ runs them: it
        # cannot migrate or grant, and need not, once the owner has (`tongguan db upgrade`).
        _require_head(url)
        return
    command.upgrade(alembic_config(url), revision)
    with engine_for(url).begin() as conn:
        if conn.execute(sa.text("SELECT to_regproc('tongguan_grant_service_roles') IS NOT NULL")).scalar():
            # Workers starting together all come here: concurrent GRANTs on one table fail
            # ("tuple concurrently updated"), so one at a time.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('tongguan.grant_service_roles'))"))
            conn.execute(sa.text("SELECT tongguan_grant_service_roles()"))
            inner, outer = _claims_pads()
            conn.execute(sa.text(
                "INSERT INTO tongguan_keys (name, inner_pad, outer_pad) VALUES ('claims', :i, :o) "
                "ON CONFLICT (name) DO UPDATE SET inner_pad = EXCLUDED.inner_pad, outer_pad = EXCLUDED.outer_pad"),
                {"i": inner, "o": outer})


# --------------------------------------------------------------------------- signed claims
# What a connection may see travels in ``tongguan.claims``, signed with a key derived from
# TONGGUAN_SECRET_KEY; the database checks it (migration 0012, ``tongguan_claims()``), so SQL run
# on the connection cannot change its own scope.
def _claims_key() -> bytes:
    from tongguan.settings import get_settings

    secret = get_settings().secret_key.get_secret_value().encode()
    return hmac.new(secret, b"tongguan/claims/1", hashlib.sha256).digest()


def _claims_pads() -> tuple[bytes, bytes]:
    """HMAC's two padded keys (RFC 2104), so the database computes HMAC-SHA256 with sha256()."""
    key = _claims_key().ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def sign_claims(pid: int, kind: str, home: str = "", operator: bool = False, username: str = "") -> str:
    """The value of ``tongguan.claims`` for backend ``pid``: ``kind`` is ``scoped`` (a user's
    region) or ``unscoped`` (the web's own log-in and token reads)."""
    if "|" in home or "|" in username:
        raise ValueError("claims fields cannot contain '|'")
    body = f"1|{pid}|{kind}|{home}|{'on' if operator else 'off'}|{username}"
    return body + "|" + hmac.new(_claims_key(), body.encode(), hashlib.sha256).hexdigest()


def _may_migrate(url: str) -> bool:
    """False for the service roles: the schema exists and they may not run its grants."""
    with engine_for(url).connect() as conn:
        return bool(conn.execute(sa.text(
            "SELECT to_regproc('tongguan_grant_service_roles') IS NULL "
            "OR has_function_privilege('tongguan_grant_service_roles()', 'EXECUTE')")).scalar())


def _require_head(url: str) -> None:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    current = current_revision(url)
    if current != head:
        raise TongguanError(f"the database schema is at {current or 'nothing'}, not {head}, and this role "
                            "may not migrate it: run `tongguan db upgrade` as the owner (tongguan_owner)")


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine_for(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
