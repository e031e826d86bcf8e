"""Foundation tables: worker heartbeats, so the status page shows which workers are alive."""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from tongguan.db import metadata

worker_heartbeats = sa.Table(
    "worker_heartbeats", metadata,
    sa.Column("worker", sa.Text, primary_key=True, comment="role:host:pid"),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("stats", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
)
