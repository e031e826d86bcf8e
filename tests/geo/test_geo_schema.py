"""Migration 0002 creates exactly the tables geo/models.py declares."""

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration


def test_migration_matches_models(schema_drift):
    assert schema_drift({"regions", "grid_cells"}) == []


def test_geometry_srid(engine):
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT f_table_name, f_geometry_column, srid, type FROM geometry_columns "
            "WHERE f_table_name IN ('regions', 'grid_cells') ORDER BY 1, 2")).all()
    assert {(r[0], r[1]): (r[2], r[3]) for r in rows} == {
        ("grid_cells", "centroid"): (4326, "POINT"),
        ("grid_cells", "geom"): (4326, "MULTIPOLYGON"),
        ("regions", "centroid"): (4326, "POINT"),
        ("regions", "geom"): (4326, "MULTIPOLYGON"),
        ("regions", "geom_display"): (4326, "MULTIPOLYGON"),
    }
