"""Database engine, metadata shared by the domain packages, and migrations (Alembic)."""

from __future__ import annotations

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
def engine_for(url: str) -> Engine:
    return sa.create_engine(normalise_url(url), pool_pre_ping=True, pool_size=5, max_overflow=10)


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
    """Apply migrations up to ``revision`` (the schema belongs to migrations, never create_all)."""
    from alembic import command

    wait_for_db(url)
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine_for(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
