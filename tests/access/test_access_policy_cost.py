"""Row-level security verifies the signed scope claim once per statement, not once per row
(migration 0014). Before it, every policy called a claim reader per row and a province user's
count of a few thousand sensors took half a second; the semantics tests of the scope live in
test_access_db_roles.py and test_access_review.py, this file pins where the check runs."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from apps.scope import Scope, scoped
from tongguan.db import engine_for

pytestmark = pytest.mark.integration

PROVINCE = Scope(home="440000", roles=frozenset({"operator"}), username="gd-admin")
TIANHE = Scope(home="440106", roles=frozenset({"operator"}), username="tianhe-operator")
# A claim reader called other than as the whole of a sub-select runs per row.
READERS = ("tongguan_scope", "tongguan_operator", "tongguan_username", "tongguan_unscoped", "tongguan_claims")
PER_ROW_WRAPPERS = ("tongguan_in_scope(", "tongguan_region_in_scope(")


def test_no_scoped_policy_reads_the_claim_per_row(engine):
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT tablename, policyname, qual, with_check FROM pg_policies "
            "WHERE 'tongguan_scoped' = ANY(roles)")).all()
    assert len(rows) >= 20
    for table, name, *exprs in rows:
        for expr in filter(None, exprs):
            assert not any(w in expr for w in PER_ROW_WRAPPERS), (table, name, expr)
            for reader in READERS:
                for m in re.finditer(rf"\b{reader}\(\)", expr):
                    assert expr[:m.start()].endswith("SELECT "), (table, name, expr)


def _plan(conn, sql: str) -> str:
    return "\n".join(r[0] for r in conn.execute(sa.text("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + sql)))


def test_a_scoped_count_checks_the_claim_in_one_initplan(access, app_db_url):
    engine, _, _ = access
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO sensors (sensor_id, metric, theme, geom, county, city, province, first_seen, last_seen) "
            "SELECT 'cost-' || i, 'water_level', 'flood', ST_SetSRID(ST_MakePoint(113.3, 23.1), 4326), "
            "CASE WHEN i % 2 = 0 THEN '440106' ELSE '440304' END, "
            "CASE WHEN i % 2 = 0 THEN '440100' ELSE '440300' END, '440000', now(), now() "
            "FROM generate_series(1, 400) i"))
        total = conn.execute(sa.text("SELECT count(*) FROM sensors")).scalar()
        tianhe = conn.execute(sa.text("SELECT count(*) FROM sensors WHERE county = '440106'")).scalar()
    app_engine = engine_for(app_db_url)
    with scoped(PROVINCE), app_engine.connect() as conn:
        plan = _plan(conn, "SELECT count(*) FROM sensors")
        assert conn.execute(sa.text("SELECT count(*) FROM sensors")).scalar() == total
    assert "InitPlan" in plan and "tongguan_in_scope(" not in plan, plan
    with scoped(TIANHE), app_engine.connect() as conn:  # the same policy still narrows the rows
        assert conn.execute(sa.text("SELECT count(*) FROM sensors")).scalar() == tianhe < total


def test_the_web_engine_survives_a_dropped_connection_without_pre_ping(access, app_db_url, services):
    """The web's engine does not pre-ping (the scope switch at checkout is its ping): a pooled
    connection the database dropped is replaced at checkout, and the request gets its rows."""
    from tests.conftest import role_url

    from apps.scope import install

    app_engine = install(engine_for(app_db_url, pre_ping=False))
    assert app_engine.pool._pre_ping is False
    with scoped(TIANHE), app_engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        before = conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar()
    su = sa.create_engine(role_url(services, "superuser", app_db_url), poolclass=sa.pool.NullPool)
    with su.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    su.dispose()
    with scoped(TIANHE), app_engine.connect() as conn:  # the dead one is discarded, not handed out
        assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() != pid
        assert conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar() == before > 0
