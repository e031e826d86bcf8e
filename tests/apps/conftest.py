"""A database with sample view data (regions from the template + apps.sample), shared by the
apps tests: seeding once keeps the suite fast; tests that change existing rows use their own."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from tongguan.db import engine_for


def _admin(services):
    url = sa.make_url(services.database_url).set(database="postgres")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def make_seeded_db(services, template_db, **spec_overrides):
    from apps.sample import SampleSpec, seed

    name = f"apps_{uuid.uuid4().hex[:10]}"
    with _admin(services).connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name} TEMPLATE tg_template"))
    url = sa.make_url(services.database_url).set(database=name).render_as_string(hide_password=False)
    spec = dict(sensors_per_county=4, cameras_per_county=3, events_per_county=8, minute_hours=1,
                series_every_min=60, alerts=40)
    spec.update(spec_overrides)
    counts = seed(engine_for(url), SampleSpec(**spec))
    return name, url, counts


def drop_db(services, name, url):
    engine_for(url).dispose()
    from apps import queries

    queries.clear_caches()
    with _admin(services).connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="session")
def seeded(services, template_db):
    """(url, counts) of a database with sample data shared by the apps tests; tests only add
    alerts of their own to it (unique ids), and compare against live SQL, never fixed totals."""
    name, url, counts = make_seeded_db(services, template_db)
    try:
        yield url, counts
    finally:
        drop_db(services, name, url)


@pytest.fixture
def seeded_rw(services, template_db):
    """A seeded database of the test's own (for tests that add alerts)."""
    name, url, counts = make_seeded_db(services, template_db, sensors_per_county=2, cameras_per_county=1,
                                       events_per_county=2, hours=6, series_every_min=120, alerts=20)
    try:
        yield url, counts
    finally:
        drop_db(services, name, url)
