"""detect: restart-safe detection (persisted input offsets, alert outbox)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

The live detector writes alert changes and then commits its Kafka offsets. A kill between the
two made the restarted detector process the same records again against a state rebuilt from the
table, and raise copies of alerts it had already resolved. Now the detector stores, in the SAME
transaction as the alert changes, the next offset of every input partition it has processed
(``detect_offsets``): on restart it skips what the table already reflects and rebuilds its state
from stored history up to there.

A kill between the database commit and the publication on ``city.alerts`` lost the publication
(the notifier never heard of those changes). ``alert_outbox`` holds each change's message, written
in that same transaction and deleted once the broker has acknowledged it; a restarted detector
publishes what is left first.
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "detect_offsets",
        sa.Column("group_id", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("next_offset", sa.BigInteger, nullable=False,
                  comment="every record before this offset is reflected in alerts"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("group_id", "topic", "partition", name="pk_detect_offsets"),
    )
    op.create_table(
        "alert_outbox",
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("alert_id", sa.Text, nullable=False),
        sa.Column("dedupe_key", sa.Text, nullable=False, comment="the Kafka message key"),
        sa.Column("message", sa.LargeBinary, nullable=False, comment="the alert/1 message (JSON bytes) for city.alerts"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("alert_outbox")
    op.drop_table("detect_offsets")
