"""ingest: readings (daily partitions), video events, sensors, cameras, rollups, sim incidents

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _regions():
    return [
        sa.Column("county", sa.CHAR(6), nullable=False),
        sa.Column("city", sa.CHAR(6), nullable=False),
        sa.Column("province", sa.CHAR(6), nullable=False),
        sa.Column("grid_id", sa.Text, nullable=True),
    ]


def _provenance():
    return [
        sa.Column("src_topic", sa.Text, nullable=False),
        sa.Column("src_partition", sa.Integer, nullable=False),
        sa.Column("src_offset", sa.BigInteger, nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _point():
    return Geometry("POINT", srid=4326, spatial_index=False)


# Daily (UTC) partitions of readings, created ahead by the worker. An advisory lock serialises
# concurrent workers so two of them never race on the same CREATE TABLE.
ENSURE_PARTITIONS = """
CREATE OR REPLACE FUNCTION ingest_ensure_readings_partitions(from_day date, to_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d date;
    created integer := 0;
    part text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('tongguan.readings.partitions'));
    FOR d IN SELECT generate_series(from_day, to_day, interval '1 day')::date LOOP
        part := 'readings_p' || to_char(d, 'YYYYMMDD');
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF readings FOR VALUES FROM (%L) TO (%L)',
                           part, (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END $$;
"""


def _reading_rollup(name: str) -> None:
    op.create_table(
        name,
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
    )
    op.create_index(f"ix_{name}_bucket", name, ["bucket"])


def _video_rollup(name: str) -> None:
    op.create_table(
        name,
        sa.Column("adcode", sa.CHAR(6), nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("count_sum", sa.BigInteger, nullable=False, comment="sum of the events' count field"),
        sa.Column("max_confidence", sa.Float(53), nullable=False),
        sa.Column("last_ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("adcode", "type", "bucket", name=f"pk_{name}"),
    )
    op.create_index(f"ix_{name}_bucket", name, ["bucket"])


def upgrade() -> None:
    op.execute("""
        CREATE TABLE readings (
            ts timestamptz NOT NULL,
            event_id text NOT NULL,
            sensor_id text NOT NULL,
            metric text NOT NULL,
            value double precision NOT NULL,
            quality text,
            county char(6) NOT NULL,
            city char(6) NOT NULL,
            province char(6) NOT NULL,
            grid_id text,
            geom geometry(POINT, 4326) NOT NULL,
            gateway_id text,
            src_topic text NOT NULL,
            src_partition integer NOT NULL,
            src_offset bigint NOT NULL,
            ingested_at timestamptz NOT NULL,
            CONSTRAINT pk_readings PRIMARY KEY (event_id, ts)
        ) PARTITION BY RANGE (ts)
    """)
    op.execute("CREATE INDEX ix_readings_sensor_id_ts ON readings (sensor_id, ts)")
    op.execute("CREATE INDEX ix_readings_ts_brin ON readings USING brin (ts)")
    # No GiST index on readings.geom: a reading's place is its sensor's (sensors.geom has one) and
    # its regions and grid cell are assigned on ingest; a GiST insert per reading would cost a
    # large share of the write throughput for queries nobody runs on raw rows.
    op.execute(ENSURE_PARTITIONS)
    op.execute("SELECT ingest_ensure_readings_partitions(current_date - 1, current_date + 7)")

    op.create_table(
        "video_events",
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("camera_id", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("theme", sa.Text, nullable=False),
        sa.Column("confidence", sa.Float(53), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer, nullable=True),
        sa.Column("attributes", JSONB, nullable=True, comment="personal data replaced by keyed HMAC"),
        sa.Column("snapshot_uri", sa.Text, nullable=True),
        *_regions(),
        sa.Column("geom", _point(), nullable=False),
        *_provenance(),
        sa.PrimaryKeyConstraint("event_id", name="pk_video_events"),
    )
    op.create_index("ix_video_events_ts", "video_events", ["ts"])
    op.create_index("ix_video_events_county_ts", "video_events", ["county", "ts"])
    op.create_index("ix_video_events_type_ts", "video_events", ["type", "ts"])
    op.create_index("ix_video_events_geom", "video_events", ["geom"], postgresql_using="gist")

    op.create_table(
        "sensors",
        sa.Column("sensor_id", sa.Text, nullable=False),
        sa.Column("metric", sa.Text, nullable=False),
        sa.Column("theme", sa.Text, nullable=False),
        sa.Column("gateway_id", sa.Text, nullable=True),
        sa.Column("geom", _point(), nullable=False),
        *_regions(),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_value", sa.Float(53), nullable=True),
        sa.PrimaryKeyConstraint("sensor_id", name="pk_sensors"),
    )
    op.create_index("ix_sensors_county", "sensors", ["county"])
    op.create_index("ix_sensors_geom", "sensors", ["geom"], postgresql_using="gist")

    op.create_table(
        "cameras",
        sa.Column("camera_id", sa.Text, nullable=False),
        sa.Column("geom", _point(), nullable=False),
        *_regions(),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("camera_id", name="pk_cameras"),
    )
    op.create_index("ix_cameras_county", "cameras", ["county"])
    op.create_index("ix_cameras_geom", "cameras", ["geom"], postgresql_using="gist")

    _reading_rollup("reading_rollups_minute")
    _reading_rollup("reading_rollups_hour")
    _video_rollup("video_rollups_minute")
    _video_rollup("video_rollups_hour")

    op.create_table(
        "sim_incidents",
        sa.Column("incident_id", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False, comment="rainstorm | gas_leak | traffic_jam | crowd"),
        sa.Column("theme", sa.Text, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("counties", sa.ARRAY(sa.Text), nullable=False),
        sa.Column("start_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sensor_ids", sa.ARRAY(sa.Text), nullable=False),
        sa.Column("camera_ids", sa.ARRAY(sa.Text), nullable=False),
        sa.Column("detail", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.PrimaryKeyConstraint("incident_id", name="pk_sim_incidents"),
    )


def downgrade() -> None:
    for table in ("sim_incidents", "video_rollups_hour", "video_rollups_minute", "reading_rollups_hour",
                  "reading_rollups_minute", "cameras", "sensors", "video_events"):
        op.drop_table(table)
    op.execute("DROP TABLE readings")  # drops its partitions
    op.execute("DROP FUNCTION ingest_ensure_readings_partitions(date, date)")
