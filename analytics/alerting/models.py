"""Tables of alert handling, linkage and notification (schema: migrations 0005, 0007, 0009, 0010).

The ``alerts`` and ``alert_history`` tables belong to ``analytics.models`` (migration 0004); these
tables sit beside them:

- ``alert_incidents`` (0010): repeated alerts of one sensor, place and theme grouped into one
  incident, by a trigger on ``alerts`` (see that migration for the rule).
- ``alert_handling``: one row per alert (created by a trigger when the alert is inserted): who
  owns it now, where it is visible (escalation up), to whom it is dispatched and by when, the
  overdue flag (督办), the resolution, the false-alarm mark, reopen count, inhibition.
- ``alert_rollup``: open alerts per region at every level (county, city, province) by theme,
  level and status, kept by a statement-level trigger on ``alerts`` (deltas only, never a scan).
- ``region_alert_status``: one row per region: open total, unacknowledged, open alerts per level
  and the worst level, and "N of M sensors offline".
- ``alert_silences``, ``subscriptions``, ``notification_items`` (one row per subscription, alert
  and event: the idempotency key), ``notification_deliveries`` (one message to one channel, with
  its retry state), ``delivery_attempts`` (every attempt and its outcome), ``inbox_messages`` (one
  item per recipient and alert, updated by the alert's later events).
"""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

import analytics.models  # noqa: F401  (alerts must be on the metadata first: foreign keys)
from tongguan.db import metadata

alert_incidents = sa.Table(
    "alert_incidents", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("incident_key", sa.Text, nullable=False, comment="subject|county|theme"),
    sa.Column("subject", sa.Text, nullable=False, comment="sensor:<id> or camera:<id>"),
    sa.Column("adcode", sa.Text, nullable=False),
    sa.Column("city", sa.Text, nullable=False),
    sa.Column("province", sa.Text, nullable=False),
    sa.Column("theme", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False, comment="the first alert's title"),
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("ix_alert_incidents_key", "incident_key"),
    sa.Index("ix_alert_incidents_adcode", "adcode"),
)

alert_handling = sa.Table(
    "alert_handling", metadata,
    sa.Column("alert_id", sa.Text, sa.ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("owner_region", sa.Text, nullable=False, comment="the region handling it (county by default)"),
    sa.Column("visible_at", sa.Text, nullable=False, comment="highest region it is escalated to"),
    sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("escalation_reason", sa.Text, nullable=True),
    sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("acknowledged_by", sa.Text, nullable=True),
    sa.Column("assigned_unit", sa.Text, nullable=True),
    sa.Column("assigned_region", sa.Text, nullable=True, comment="county adcode or grid id"),
    sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("dispatched_by", sa.Text, nullable=True),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True, comment="督办: flagged overdue"),
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("resolution", sa.Text, nullable=True),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("false_alarm", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("reopened", sa.Integer, nullable=False, server_default="0"),
    sa.Column("inhibited_by", sa.Text, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # 0007: the resolved alert of the same condition this one continues (reopen window).
    sa.Column("continues", sa.Text, nullable=True),
    sa.Column("continuity_checked", sa.Boolean, nullable=False, server_default=sa.false()),
    # 0010: the incident grouping this alert with the other alerts of its sensor, place and theme.
    sa.Column("incident_id", sa.BigInteger, sa.ForeignKey("alert_incidents.id", ondelete="SET NULL"), nullable=True),
    sa.Index("ix_alert_handling_incident_id", "incident_id"),
    sa.Index("ix_alert_handling_visible_at", "visible_at"),
    sa.Index("ix_alert_handling_owner_region", "owner_region"),
    sa.Index("ix_alert_handling_assigned_region", "assigned_region"),
    sa.Index("ix_alert_handling_due_at", "due_at", postgresql_where=sa.text("overdue_at IS NULL")),
)

alert_rollup = sa.Table(
    "alert_rollup", metadata,
    sa.Column("adcode", sa.Text, nullable=False),
    sa.Column("region_level", sa.Text, nullable=False, comment="county | city | province"),
    sa.Column("parent", sa.Text, nullable=True),
    sa.Column("theme", sa.Text, nullable=False),
    sa.Column("level", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, comment="open | acknowledged | dispatched"),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.PrimaryKeyConstraint("adcode", "theme", "level", "status", name="pk_alert_rollup"),
    sa.Index("ix_alert_rollup_parent", "parent"),
)

region_alert_status = sa.Table(
    "region_alert_status", metadata,
    sa.Column("adcode", sa.Text, primary_key=True),
    sa.Column("region_level", sa.Text, nullable=False),
    sa.Column("parent", sa.Text, nullable=True),
    sa.Column("open_total", sa.Integer, nullable=False, server_default="0"),
    sa.Column("unacknowledged", sa.Integer, nullable=False, server_default="0"),
    # Counters of open alerts by level, each kept by increments (migration 0007), so concurrent
    # writers never leave a stale total; the worst level is derived from them.
    sa.Column("n_blue", sa.Integer, nullable=False, server_default="0"),
    sa.Column("n_yellow", sa.Integer, nullable=False, server_default="0"),
    sa.Column("n_orange", sa.Integer, nullable=False, server_default="0"),
    sa.Column("n_red", sa.Integer, nullable=False, server_default="0"),
    sa.Column("worst_level", sa.Text, sa.Computed(
        "CASE WHEN n_red > 0 THEN 'red' WHEN n_orange > 0 THEN 'orange' WHEN n_yellow > 0 THEN 'yellow' "
        "WHEN n_blue > 0 THEN 'blue' END", persisted=True)),
    sa.Column("sensors_total", sa.Integer, nullable=False, server_default="0"),
    sa.Column("sensors_offline", sa.Integer, nullable=False, server_default="0"),
    sa.Column("sensors_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("ix_region_alert_status_parent", "parent"),
)

alert_silences = sa.Table(
    "alert_silences", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("adcode", sa.Text, nullable=False, comment="the region whose whole subtree is silenced"),
    sa.Column("themes", ARRAY(sa.Text), nullable=False, server_default="{}", comment="empty = all"),
    sa.Column("metrics", ARRAY(sa.Text), nullable=False, server_default="{}", comment="empty = all"),
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("ends_at > starts_at", name="window"),
    sa.Index("ix_alert_silences_ends_at", "ends_at"),
)

subscriptions = sa.Table(
    "subscriptions", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("owner", sa.Text, nullable=False, comment="user name (inbox recipient)"),
    sa.Column("adcode", sa.Text, nullable=False, comment="region: its whole subtree"),
    sa.Column("themes", ARRAY(sa.Text), nullable=False, server_default="{}", comment="empty = all"),
    sa.Column("min_level", sa.Text, nullable=False, server_default="blue"),
    sa.Column("escalated_only", sa.Boolean, nullable=False, server_default=sa.false(),
              comment="only alerts escalated to this region (a duty desk), not its whole subtree"),
    sa.Column("channels", ARRAY(sa.Text), nullable=False),
    sa.Column("webhook_url", sa.Text, nullable=True),
    sa.Column("secret", sa.Text, nullable=True, comment="HMAC-SHA256 key of the webhook"),
    sa.Column("email", sa.Text, nullable=True),
    sa.Column("quiet_start", sa.Time, nullable=True),
    sa.Column("quiet_end", sa.Time, nullable=True),
    sa.Column("timezone", sa.Text, nullable=False, server_default="Asia/Shanghai"),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("min_level IN ('blue','yellow','orange','red')", name="min_level"),
)

notification_items = sa.Table(
    "notification_items", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
    sa.Column("subscription_id", sa.BigInteger, sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("alert_id", sa.Text, sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("event", sa.Text, nullable=False, comment="level:<lv> | escalated:<adcode> | reopened:<n>"),
    sa.Column("level", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False,
              comment="pending | grouped | silenced | inhibited"),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("delivery_group", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.PrimaryKeyConstraint("subscription_id", "alert_id", "event", name="pk_notification_items"),
    sa.Index("ix_notification_items_pending", "subscription_id", postgresql_where=sa.text("state = 'pending'")),
)

notification_deliveries = sa.Table(
    "notification_deliveries", metadata,
    sa.Column("key", sa.Text, primary_key=True, comment="delivery key: idempotency across restarts"),
    sa.Column("subscription_id", sa.BigInteger, sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("alert_ids", ARRAY(sa.Text), nullable=False),
    sa.Column("payload", JSONB, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="pending",
              comment="pending | sending | retrying | sent | failed"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index("ix_notification_deliveries_due", "next_attempt_at",
             postgresql_where=sa.text("status IN ('pending','retrying','sending')")),
    sa.Index("ix_notification_deliveries_subscription_id", "subscription_id", "created_at"),
)

delivery_attempts = sa.Table(
    "delivery_attempts", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("delivery_key", sa.Text, sa.ForeignKey("notification_deliveries.key", ondelete="CASCADE"),
              nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("duration_ms", sa.Float(53), nullable=False),
    sa.Column("outcome", sa.Text, nullable=False, comment="ok | error"),
    sa.Column("detail", sa.Text, nullable=True, comment="HTTP status, SMTP reply or the error"),
    sa.Index("ix_delivery_attempts_delivery_key", "delivery_key"),
)

inbox_messages = sa.Table(
    "inbox_messages", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("delivery_key", sa.Text, nullable=False, unique=True),
    sa.Column("subscription_id", sa.BigInteger, sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("alert_ids", ARRAY(sa.Text), nullable=False),
    sa.Column("top_level", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
    # 0009: one item per recipient and alert; later events of the alert update it.
    sa.Column("alert_id", sa.Text, nullable=True, comment="the alert this item is about (NULL: a test message)"),
    sa.Column("events", ARRAY(sa.Text), nullable=False, server_default="{}",
              comment="level:<lv> | escalated:<adcode> | reopened:<n>"),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("ix_inbox_messages_recipient", "recipient", "updated_at"),
    sa.Index("uq_inbox_messages_recipient_alert", "recipient", "alert_id", unique=True,
             postgresql_where=sa.text("alert_id IS NOT NULL")),
)
