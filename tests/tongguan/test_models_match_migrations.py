"""The table modules (``*/models.py``, ``tongguan/tables.py``, ``apps/access_models.py``) and the
migrations describe the same schema: every table the models declare is in the migrated database
with the same columns, types, nullability, keys and indexes (alembic's autogenerate comparison),
so the models cannot drift from the one source the database is built from."""

import pytest

pytestmark = pytest.mark.integration


def test_every_declared_table_matches_the_migrated_database(schema_drift):
    import tongguan.models  # noqa: F401  (every table module)
    from tongguan.db import metadata

    declared = set(metadata.tables)
    assert {"alerts", "alert_handling", "alert_incidents", "subscriptions", "readings", "regions", "users"} <= declared
    assert schema_drift(declared) == []
