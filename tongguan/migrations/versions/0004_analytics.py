"""analytics: model registry, alerts, append-only alert history

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False, comment="anomaly | forecast"),
        sa.Column("metric", sa.Text, nullable=False),
        sa.Column("sensor_id", sa.Text, nullable=False, server_default="", comment="'' = the metric's model"),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("path", sa.Text, nullable=False, comment="joblib file, relative to settings.home"),
        sa.Column("metrics", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("n_train", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("kind", "metric", "sensor_id", "version",
                            name="uq_models_kind_metric_sensor_id_version"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("dedupe_key", sa.Text, nullable=False, comment="one active alert per ongoing condition"),
        sa.Column("source", sa.Text, nullable=False, comment="rule:<id> | model:<kind>/<metric>@v<n> | video:surge"),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("theme", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("detail", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("subject", sa.Text, nullable=False, comment="sensor:<id> | grid:<id> | camera:<id>"),
        sa.Column("confidence", sa.Float(53), nullable=False, server_default="0.5"),
        sa.Column("adcode", sa.CHAR(6), nullable=False, comment="county-level region"),
        sa.Column("city", sa.CHAR(6), nullable=False),
        sa.Column("province", sa.CHAR(6), nullable=False),
        sa.Column("grid_id", sa.Text, nullable=True),
        sa.Column("geom", Geometry("GEOMETRY", srid=4326, spatial_index=False), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer, nullable=False, server_default="1"),
        sa.Column("status", sa.Text, nullable=False, server_default="open"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("level IN ('blue','yellow','orange','red')", name="ck_alerts_level"),
        sa.CheckConstraint("status IN ('open','acknowledged','dispatched','resolved','closed')",
                           name="ck_alerts_status"),
    )
    op.create_index("ix_alerts_adcode_status", "alerts", ["adcode", "status"])
    op.create_index("ix_alerts_city_status", "alerts", ["city", "status"])
    op.create_index("ix_alerts_last_seen", "alerts", ["last_seen"])
    op.create_index("ix_alerts_geom", "alerts", ["geom"], postgresql_using="gist")
    op.create_index("uq_alerts_active_dedupe_key", "alerts", ["dedupe_key"], unique=True,
                    postgresql_where=sa.text("status IN ('open','acknowledged','dispatched')"))
    op.create_table(
        "alert_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("alert_id", sa.Text, sa.ForeignKey("alerts.id", name="fk_alert_history_alert_id_alerts"), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("action", sa.Text, nullable=False,
                  comment="opened | escalated | downgraded | updated | corroborated | acknowledged | "
                          "dispatched | resolved | closed"),
        sa.Column("actor", sa.Text, nullable=False, comment="system:<worker> or a user name"),
        sa.Column("level", sa.Text, nullable=True),
        sa.Column("status", sa.Text, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
    )
    op.create_index("ix_alert_history_alert_id_ts", "alert_history", ["alert_id", "ts"])
    # History is append-only: the record of who did what to an alert cannot be rewritten.
    op.execute("""
        CREATE FUNCTION alert_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'alert_history is append-only (% refused)', TG_OP;
        END $$;
    """)
    op.execute("""
        CREATE TRIGGER alert_history_append_only BEFORE UPDATE OR DELETE ON alert_history
        FOR EACH ROW EXECUTE FUNCTION alert_history_append_only();
    """)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS alert_history_append_only ON alert_history")
    op.execute("DROP FUNCTION IF EXISTS alert_history_append_only()")
    op.drop_table("alert_history")
    op.drop_table("alerts")
    op.drop_table("models")
