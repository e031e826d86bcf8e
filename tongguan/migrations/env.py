"""Alembic environment: runs against the URL the caller configured (see tongguan.db.upgrade)."""

from alembic import context
from sqlalchemy import create_engine, pool

from tongguan.db import metadata
import tongguan.models  # noqa: F401  (registers every domain table on the metadata)

config = context.config


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata,
                          include_object=_skip_postgis_tables)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def _skip_postgis_tables(obj, name, type_, reflected, compare_to):
    # PostGIS and tiger own these; autogenerate must not try to drop them.
    return not (type_ == "table" and reflected and compare_to is None
                and name in {"spatial_ref_sys", "layer", "topology"})


run_migrations_online()
