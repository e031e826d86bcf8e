"""inbox: one item per recipient and alert; video attributes stored as JSON objects

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

Inbox (issue 14): an alert reached the same inbox twice — once when it was new, again when it
was escalated — and the items did not say which alert they were about. Now an inbox item belongs
to one alert (``alert_id``): a later event of that alert (escalated, reopened, a higher level)
updates the same item (``events``, ``updated_at``, unread again) instead of adding one. Items of
before keep their text; the newest item of each recipient and single alert gets its alert id,
older duplicates stay as they were (read history is not rewritten).

Video attributes: the store wrote them as a JSON *string* inside jsonb, so
``attributes->>'phone'`` was NULL. The writer now stores the object; this repairs stored rows
whose string holds a JSON object (anything else is left untouched, and counted in the log).
"""
import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

TRY_JSONB = """
CREATE OR REPLACE FUNCTION tongguan_try_jsonb(t text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN t::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.add_column("inbox_messages", sa.Column("alert_id", sa.Text, nullable=True,
                                              comment="the alert this item is about (NULL: a test message)"))
    op.add_column("inbox_messages", sa.Column("events", ARRAY(sa.Text), nullable=False, server_default="{}",
                                              comment="level:<lv> | escalated:<adcode> | reopened:<n>"))
    op.add_column("inbox_messages", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE inbox_messages SET updated_at = created_at")
    op.alter_column("inbox_messages", "updated_at", nullable=False, server_default=sa.func.now())
    op.execute("""
        UPDATE inbox_messages m SET alert_id = m.alert_ids[1] FROM (
            SELECT DISTINCT ON (recipient, alert_ids[1]) id FROM inbox_messages
            WHERE cardinality(alert_ids) = 1 ORDER BY recipient, alert_ids[1], created_at DESC, id DESC
        ) newest WHERE m.id = newest.id""")
    op.create_index("uq_inbox_messages_recipient_alert", "inbox_messages", ["recipient", "alert_id"], unique=True,
                    postgresql_where=sa.text("alert_id IS NOT NULL"))
    op.execute("DROP INDEX IF EXISTS ix_inbox_messages_recipient")
    op.create_index("ix_inbox_messages_recipient", "inbox_messages", ["recipient", "updated_at"])

    op.execute(TRY_JSONB)
    bind = op.get_bind()
    fixed = bind.execute(sa.text(
        "UPDATE video_events SET attributes = tongguan_try_jsonb(attributes #>> '{}') "
        "WHERE jsonb_typeof(attributes) = 'string' "
        "AND jsonb_typeof(tongguan_try_jsonb(attributes #>> '{}')) = 'object'")).rowcount
    left = bind.execute(sa.text("SELECT count(*) FROM video_events WHERE jsonb_typeof(attributes) = 'string'")
                        ).scalar()
    log.info("video_events.attributes: %d JSON strings turned into objects, %d left as they were", fixed or 0,
             left or 0)
    op.execute("DROP FUNCTION tongguan_try_jsonb(text)")


def downgrade() -> None:
    op.drop_index("uq_inbox_messages_recipient_alert", table_name="inbox_messages")
    op.execute("DROP INDEX IF EXISTS ix_inbox_messages_recipient")
    op.create_index("ix_inbox_messages_recipient", "inbox_messages", ["recipient", "created_at"])
    for col in ("updated_at", "events", "alert_id"):
        op.drop_column("inbox_messages", col)
