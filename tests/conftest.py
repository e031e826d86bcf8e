"""Real services for the test session: a throw-away PostgreSQL+PostGIS cluster and a Tansu
broker on free ports, a migrated template database, and a clean database per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tongguan.db import engine_for, upgrade
from tongguan.services import LocalServices, free_port
from tongguan.settings import Settings

TEMPLATE_DB = "tg_template"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (make test): one worker per core, at least two, at most four. The suite mostly
    waits on the services, so two workers pay even on one core; each worker starts a PostgreSQL
    cluster and a broker of its own, so more than four cost more memory than they save time."""
    return max(2, min(4, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def services():
    """Managed services of their own for this test session, stopped and removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix="tongguan-test-"))
    home.chmod(0o755)  # the unprivileged PostgreSQL user must reach its data directory
    settings = Settings(home=home, pg_port=free_port(), kafka_port=free_port(), partitions=2,
                        database_url=None, kafka_bootstrap=None)
    svc = LocalServices(settings)
    svc.up()
    try:
        yield svc
    finally:
        svc.down()
        shutil.rmtree(home, ignore_errors=True)


def _admin_engine(services) -> sa.Engine:
    """The owner role (CREATEDB, not a superuser) on the maintenance database."""
    url = sa.make_url(services.database_url).set(database="postgres")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def role_url(services, purpose: str, url: str) -> str:
    """``url``'s database as one of the service roles (``app``, ``worker``) or ``superuser``."""
    role = sa.make_url(services.postgres.url_for(purpose))
    return sa.make_url(url).set(username=role.username, password=role.password).render_as_string(
        hide_password=False)


def _url_for(services, database: str) -> str:
    return sa.make_url(services.database_url).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def template_db(services) -> str:
    """A database migrated to head once; every test gets a copy of it (CREATE DATABASE … TEMPLATE)."""
    admin = _admin_engine(services)
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {TEMPLATE_DB}"))
    url = _url_for(services, TEMPLATE_DB)
    upgrade(url)
    for seed in TEMPLATE_SEEDERS:
        seed(url)
    engine_for(url).dispose()  # a template must have no open connections
    return url


# Functions (url) -> None that put shared read-only data in the template once per session.
TEMPLATE_SEEDERS: list = []

# Central Guangzhou districts that get a 1 km grid in every test database:
# 越秀 Yuexiu, 海珠 Haizhu (Canton Tower), 荔湾 Liwan, 天河 Tianhe.
GEO_GRID_COUNTIES = ("440103", "440104", "440105", "440106")


def _seed_geo(url: str) -> None:
    """Real regions of Guangdong and Fujian (province, cities, counties) and a small grid."""
    from geo import generate_grid, load_regions

    eng = engine_for(url)
    load_regions(eng, ("440000", "350000"), progress=False)
    generate_grid(eng, 1000, counties=GEO_GRID_COUNTIES)


TEMPLATE_SEEDERS.append(_seed_geo)


@pytest.fixture
def db_url(services, template_db) -> str:
    """A clean, migrated database of its own for this test; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(services)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}"))
    url = _url_for(services, name)
    try:
        yield url
    finally:
        engine_for(url).dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def engine(db_url) -> sa.Engine:
    """The owner's engine (seeding, migrations' view of the data)."""
    return engine_for(db_url)


@pytest.fixture
def app_db_url(services, db_url) -> str:
    """This test's database as the web's role ``tongguan_app`` (what `tongguan serve` uses)."""
    url = role_url(services, "app", db_url)
    yield url
    engine_for(url).dispose()


@pytest.fixture
def worker_db_url(services, db_url) -> str:
    """This test's database as the workers' role ``tongguan_worker``."""
    url = role_url(services, "worker", db_url)
    yield url
    engine_for(url).dispose()


@pytest.fixture
def settings_factory(services, db_url):
    """Settings for this test: its own database and its own topic names on the session broker."""
    prefix = f"t{uuid.uuid4().hex[:8]}."

    def make(**overrides) -> Settings:
        values = dict(database_url=db_url, kafka_bootstrap=services.kafka_bootstrap,
                      home=services.settings.home, partitions=2, topic_prefix=prefix)
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(settings_factory, services) -> Settings:
    from tongguan.services import delete_topics, ensure_topics
    from tongguan.settings import TOPICS

    s = settings_factory()
    ensure_topics(s.kafka_bootstrap, s.partitions, tuple(s.topic(t) for t in TOPICS))
    yield s
    # Every test has topics of its own on the session broker, which frees their messages only when
    # they are deleted: without this the broker held every test's stream until the session ended.
    delete_topics(s.kafka_bootstrap, prefix=s.topic_prefix)


@pytest.fixture(autouse=True)
def _no_ambient_tongguan_env(monkeypatch):
    """Tests never pick up a developer's TONGGUAN_* variables by accident."""
    for key in list(os.environ):
        if key.startswith("TONGGUAN_"):
            monkeypatch.delenv(key)


@pytest.fixture
def loopback_webhooks_allowed(monkeypatch):
    """The tests' webhook receivers listen on 127.0.0.1 ports of their own: allow-list loopback,
    as an operator would with TONGGUAN_WEBHOOK_ALLOW (tests of the URL guard do not use this)."""
    from tongguan import netguard

    monkeypatch.setattr(netguard, "default_allow", lambda: netguard.parse_allow("127.0.0.0/8"))


@pytest.fixture
def schema_drift(engine):
    """``schema_drift(tables)``: alembic's autogenerate differences between the declared table
    models (tongguan.models) and the migrated database, for those tables (an empty list: they agree)."""
    def drift(tables) -> list:
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        import tongguan.models  # noqa: F401  (every table module)
        from tongguan.db import metadata

        tables = set(tables)

        def ours(obj, name, type_, reflected, compare_to):
            table = obj if type_ == "table" else getattr(obj, "table", None)
            return table is None or table.name in tables

        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={
                "include_name": lambda name, type_, parent: type_ != "table" or name in tables,
                "include_object": ours,
                "compare_type": True,
            })
            return compare_metadata(ctx, metadata)
    return drift
