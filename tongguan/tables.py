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
    # Progress (migration 0008, see tongguan.consumer): what `status` and /status judge health by.
    sa.Column("lag", sa.BigInteger, comment="messages behind the log end of its partitions"),
    sa.Column("last_commit_at", sa.DateTime(timezone=True)),
    sa.Column("last_error", sa.Text),
    sa.Column("last_error_at", sa.DateTime(timezone=True)),
    sa.Column("state", sa.Text, comment="starting|ok|idle|stalled|wedged|waiting_for_database"),
    sa.Column("stall_after_s", sa.Float, comment="lag without a commit for this long is red"),
)
