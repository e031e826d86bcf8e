"""Tables of the ingest package (schema: migration 0003).

``readings`` is natively partitioned by day (UTC) on ``ts``; partitions are created ahead by
``ingest_ensure_readings_partitions(from, to)`` (called by the worker). Its primary key is
``(event_id, ts)``: a unique key of a partitioned table must contain the partition key, and a
replay carries the same ``ts`` as the original, so ``ON CONFLICT DO NOTHING`` on it makes replays
insert nothing twice. The rollup tables are what the views read: they never scan ``readings``.
"""

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import JSONB

from tongguan.db import metadata


def _region_columns():
    return [
        sa.Column("county", sa.CHAR(6), nullable=False),
        sa.Column("city", sa.CHAR(6), nullable=False),
        sa.Column("province", sa.CHAR(6), nullable=False),
        sa.Column("grid_id", sa.Text, nullable=True),
    ]


def _provenance_columns():
    return [
        sa.Column("src_topic", sa.Text, nullable=False),
        sa.Column("src_partition", sa.Integer, nullable=False),
        sa.Column("src_offset", sa.BigInteger, nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
    ]


readings = sa.Table(
    "readings", metadata,
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("sensor_id", sa.Text, nullable=False),
    sa.Column("metric", sa.Text, nullable=False),
    sa.Column("value", sa.Float(53), nullable=False),
    sa.Column("quality", sa.Text, nullable=True),
    *_region_columns(),
    sa.Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
    sa.Column("gateway_id", sa.Text, nullable=True),
    *_provenance_columns(),
    sa.PrimaryKeyConstraint("event_id", "ts", name="pk_readings"),
    sa.Index("ix_readings_sensor_id_ts", "sensor_id", "ts"),
    sa.Index("ix_readings_ts_brin", "ts", postgresql_using="brin"),
    postgresql_partition_by="RANGE (ts)",
)

video_events = sa.Table(
    "video_events", metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("camera_id", sa.Text, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("theme", sa.Text, nullable=False),
    sa.Column("confidence", sa.Float(53), nullable=False),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("count", sa.Integer, nullable=True),
    sa.Column("attributes", JSONB, nullable=True, comment="personal data replaced by keyed HMAC"),
    sa.Column("snapshot_uri", sa.Text, nullable=True),
    *_region_columns(),
    sa.Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
    *_provenance_columns(),
    sa.Index("ix_video_events_ts", "ts"),
    sa.Index("ix_video_events_county_ts", "county", "ts"),
    sa.Index("ix_video_events_type_ts", "type", "ts"),
    sa.Index("ix_video_events_geom", "geom", postgresql_using="gist"),
)

sensors = sa.Table(
    "sensors", metadata,
    sa.Column("sensor_id", sa.Text, primary_key=True),
    sa.Column("metric", sa.Text, nullable=False),
    sa.Column("theme", sa.Text, nullable=False),
    sa.Column("gateway_id", sa.Text, nullable=True),
    sa.Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
    *_region_columns(),
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_value", sa.Float(53), nullable=True),
    sa.Index("ix_sensors_county", "county"),
    sa.Index("ix_sensors_geom", "geom", postgresql_using="gist"),
)

cameras = sa.Table(
    "cameras", metadata,
    sa.Column("camera_id", sa.Text, primary_key=True),
    sa.Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
    *_region_columns(),
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_cameras_county", "county"),
    sa.Index("ix_cameras_geom", "geom", postgresql_using="gist"),
)


def _reading_rollup(name: str) -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("adcode", sa.CHAR(6), nullable=False, comment="county, city or province"),
        sa.Column("metric", sa.Text, nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("vmin", sa.Float(53), nullable=False),
        sa.Column("vmax", sa.Float(53), nullable=False),
        sa.Column("vsum", sa.Float(53), nullable=False),
        sa.Column("mean", sa.Float(53), sa.Computed("vsum / NULLIF(n, 0)", persisted=True)),
        sa.Column("last_value", sa.Float(53), nullable=False),
        sa.Column("last_ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("adcode", "metric", "bucket", name=f"pk_{name}"),
        sa.Index(f"ix_{name}_bucket", "bucket"),
    )


def _video_rollup(name: str) -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("adcode", sa.CHAR(6), nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("count_sum", sa.BigInteger, nullable=False, comment="sum of the events' count field"),
        sa.Column("max_confidence", sa.Float(53), nullable=False),
        sa.Column("last_ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("adcode", "type", "bucket", name=f"pk_{name}"),
        sa.Index(f"ix_{name}_bucket", "bucket"),
    )


reading_rollups_minute = _reading_rollup("reading_rollups_minute")
reading_rollups_hour = _reading_rollup("reading_rollups_hour")
video_rollups_minute = _video_rollup("video_rollups_minute")
video_rollups_hour = _video_rollup("video_rollups_hour")

# Ground truth of the simulator's incidents, read by the analytics evaluation.
sim_incidents = sa.Table(
    "sim_incidents", metadata,
    sa.Column("incident_id", sa.Text, primary_key=True),
    sa.Column("type", sa.Text, nullable=False, comment="rainstorm | gas_leak | traffic_jam | crowd"),
    sa.Column("theme", sa.Text, nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("counties", sa.ARRAY(sa.Text), nullable=False),
    sa.Column("start_ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("end_ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sensor_ids", sa.ARRAY(sa.Text), nullable=False),
    sa.Column("camera_ids", sa.ARRAY(sa.Text), nullable=False),
    sa.Column("detail", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
)
