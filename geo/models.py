"""Tables of the geo package: administrative regions and grid cells (schema: migration 0002)."""

import sqlalchemy as sa
from geoalchemy2 import Geometry

from tongguan.db import metadata

LEVELS = ("province", "city", "county", "grid")

regions = sa.Table(
    "regions", metadata,
    sa.Column("adcode", sa.CHAR(6), primary_key=True, comment="six-digit administrative code"),
    sa.Column("name", sa.Text, nullable=False, comment="Chinese name"),
    sa.Column("name_en", sa.Text, nullable=True, comment="English (pinyin) name"),
    sa.Column("level", sa.Text, nullable=False),
    sa.Column("parent", sa.CHAR(6), nullable=True, index=True),
    sa.Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False),
    sa.Column("area_km2", sa.Float, nullable=False),
    sa.Column("centroid", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
    # Simplified for the map of the level above (province map of cities, city map of counties),
    # topology-preserving so neighbours still share their borders.
    sa.Column("geom_display", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=True),
    sa.Column("source", sa.Text, nullable=True, comment="data source and version"),
    sa.Column("checksum", sa.Text, nullable=True, comment="hash of the source geometry (idempotent loads)"),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("level IN ('province', 'city', 'county', 'grid')", name="level"),
    sa.CheckConstraint("adcode ~ '^[0-9]{6}$'", name="adcode_digits"),
    sa.Index("ix_regions_geom", "geom", postgresql_using="gist"),
    sa.Index("ix_regions_level", "level"),
)

grid_cells = sa.Table(
    "grid_cells", metadata,
    sa.Column("grid_id", sa.Text, primary_key=True, comment="county-size-column-row, e.g. 440106-1000-0123-0456"),
    sa.Column("county", sa.CHAR(6), sa.ForeignKey("regions.adcode", ondelete="CASCADE"), nullable=False),
    sa.Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False,
              comment="the lattice square clipped to the county; clipping can split it, hence multi"),
    sa.Column("size_m", sa.Integer, nullable=False),
    sa.Column("col", sa.Integer, nullable=False),
    sa.Column("row", sa.Integer, nullable=False),
    sa.Column("centroid", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
    sa.Index("ix_grid_cells_geom", "geom", postgresql_using="gist"),
    sa.Index("ix_grid_cells_county_size", "county", "size_m"),
)
