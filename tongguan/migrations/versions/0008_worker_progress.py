"""worker progress: lag, last commit, last error and state beside each worker's heartbeat

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

A worker is healthy when it makes progress, not when its process answers: every consumer
(store, detect, notify) records with its heartbeat its lag (from the fetch responses' high
watermark), when it last committed offsets, its last error and its own verdict (ok, idle,
stalled, wedged, waiting_for_database), so `tongguan status` and `/status` can mark a worker red
when it has lag but has not committed for ``stall_after_s``.
"""
from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

def _columns() -> tuple:
    return (
        sa.Column("lag", sa.BigInteger, nullable=True, comment="messages behind the log end of its partitions"),
        sa.Column("last_commit_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.Text, nullable=True, comment="starting|ok|idle|stalled|wedged|waiting_for_database"),
        sa.Column("stall_after_s", sa.Float, nullable=True, comment="lag without a commit for this long is red"),
    )


def upgrade() -> None:
    for column in _columns():
        op.add_column("worker_heartbeats", column)


def downgrade() -> None:
    for column in reversed(_columns()):
        op.drop_column("worker_heartbeats", column.name)
