"""Tables of the analytics package (schema: migration 0004): the model registry, alerts and
their append-only history."""

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import JSONB

from analytics.levels import LEVELS
from analytics.statuses import ACTIVE_SQL, FINISHED_SQL, STATUSES_SQL, sql_list
from tongguan.db import metadata

models = sa.Table(
    "models", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("kind", sa.Text, nullable=False, comment="anomaly | forecast"),
    sa.Column("metric", sa.Text, nullable=False),
    sa.Column("sensor_id", sa.Text, nullable=False, server_default="", comment="'' = the metric's model"),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("path", sa.Text, nullable=False, comment="joblib file, relative to settings.home"),
    sa.Column("metrics", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("n_train", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("kind", "metric", "sensor_id", "version"),
)

alerts = sa.Table(
    "alerts", metadata,
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
    sa.CheckConstraint(f"level IN {sql_list(LEVELS)}", name="level"),
    sa.CheckConstraint(f"status IN {STATUSES_SQL}", name="status"),
    sa.Index("ix_alerts_adcode_status", "adcode", "status"),
    sa.Index("ix_alerts_city_status", "city", "status"),
    sa.Index("ix_alerts_last_seen", "last_seen"),
    sa.Index("ix_alerts_geom", "geom", postgresql_using="gist"),
    sa.Index("uq_alerts_active_dedupe_key", "dedupe_key", unique=True,
             postgresql_where=sa.text(f"status IN {ACTIVE_SQL}")),
    # migration 0007: the finished alerts of a condition, looked up when it returns (continuity)
    sa.Index("ix_alerts_dedupe_key_finished", "dedupe_key", postgresql_where=sa.text(f"status IN {FINISHED_SQL}")),
)

alert_history = sa.Table(
    "alert_history", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("alert_id", sa.Text, sa.ForeignKey("alerts.id"), nullable=False),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("action", sa.Text, nullable=False,
              comment="opened | escalated | downgraded | updated | corroborated | acknowledged | "
                      "dispatched | resolved | closed"),
    sa.Column("actor", sa.Text, nullable=False, comment="system:<worker> or a user name"),
    sa.Column("level", sa.Text, nullable=True),
    sa.Column("status", sa.Text, nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Index("ix_alert_history_alert_id_ts", "alert_id", "ts"),
)
