"""A process that logs in as a service role (a worker or the web, as docker/ runs them with their
own TONGGUAN_DATABASE_URL) starts on a migrated database without trying to migrate or grant."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration


def test_service_roles_start_on_a_migrated_database(worker_db_url, app_db_url, db_url):
    from tongguan.db import current_revision, upgrade

    head = current_revision(db_url)
    upgrade(worker_db_url)  # was: permission denied for function tongguan_grant_service_roles
    upgrade(app_db_url)
    assert current_revision(worker_db_url) == head


def test_a_service_role_on_an_old_schema_is_told_to_migrate_as_the_owner(worker_db_url, db_url):
    from tongguan import TongguanError
    from tongguan.db import current_revision, upgrade

    head = current_revision(db_url)
    with sa.create_engine(db_url, poolclass=sa.pool.NullPool).begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        with pytest.raises(TongguanError, match="tongguan db upgrade"):
            upgrade(worker_db_url)
    finally:
        with sa.create_engine(db_url, poolclass=sa.pool.NullPool).begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :h"), {"h": head})
