"""geo: administrative regions and grid cells

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa
from geoalchemy2 import Geometry

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "regions",
        sa.Column("adcode", sa.CHAR(6), primary_key=True, comment="six-digit administrative code"),
        sa.Column("name", sa.Text, nullable=False, comment="Chinese name"),
        sa.Column("name_en", sa.Text, nullable=True, comment="English (pinyin) name"),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("parent", sa.CHAR(6), nullable=True),
        sa.Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False),
        sa.Column("area_km2", sa.Float, nullable=False),
        sa.Column("centroid", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("geom_display", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=True),
        sa.Column("source", sa.Text, nullable=True, comment="data source and version"),
        sa.Column("checksum", sa.Text, nullable=True, comment="hash of the source geometry (idempotent loads)"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("level IN ('province', 'city', 'county', 'grid')", name="ck_regions_level"),
        sa.CheckConstraint("adcode ~ '^[0-9]{6}$'", name="ck_regions_adcode_digits"),
        sa.PrimaryKeyConstraint("adcode", name="pk_regions"),
    )
    op.create_index("ix_regions_parent", "regions", ["parent"])
    op.create_index("ix_regions_level", "regions", ["level"])
    op.create_index("ix_regions_geom", "regions", ["geom"], postgresql_using="gist")

    op.create_table(
        "grid_cells",
        sa.Column("grid_id", sa.Text, comment="county-size-column-row, e.g. 440106-1000-0123-0456"),
        sa.Column("county", sa.CHAR(6), nullable=False),
        sa.Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False,
                  comment="the lattice square clipped to the county; clipping can split it, hence multi"),
        sa.Column("size_m", sa.Integer, nullable=False),
        sa.Column("col", sa.Integer, nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("centroid", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
        sa.PrimaryKeyConstraint("grid_id", name="pk_grid_cells"),
        sa.ForeignKeyConstraint(["county"], ["regions.adcode"], ondelete="CASCADE",
                                name="fk_grid_cells_county_regions"),
    )
    op.create_index("ix_grid_cells_geom", "grid_cells", ["geom"], postgresql_using="gist")
    op.create_index("ix_grid_cells_county_size", "grid_cells", ["county", "size_m"])


def downgrade() -> None:
    op.drop_table("grid_cells")
    op.drop_table("regions")
