"""The table modules (``*/models.py``, ``tongguan/tables.py``, ``apps/access_models.py``) and the
migrations describe the same schema: every table the models declare is in the migrated database
with the same columns, types, nullability, keys and indexes (alembic's autogenerate comparison),
so the models cannot drift from the one source the database is built from."""

import pytest

pytestmark = pytest.mark.integration


def test_every_declared_table_matches_the_migrated_database(engine):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import tongguan.models  # noqa: F401  (every table module)
    from tongguan.db import metadata

    declared = set(metadata.tables)
    assert {"alerts", "alert_handling", "alert_incidents", "subscriptions", "readings", "regions", "users"} <= declared

    def ours(obj, name, type_, reflected, compare_to):
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.name in declared

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "include_name": lambda name, type_, parent: type_ != "table" or name in declared,
            "include_object": ours,
            "compare_type": True,
        })
        diff = compare_metadata(ctx, metadata)
    assert diff == []
