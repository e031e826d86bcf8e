"""alerting: alert handling, live roll-up per region, silences, subscriptions, deliveries, inbox

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ACTIVE = "('open','acknowledged','dispatched')"

# The roll-up is kept by deltas: every statement on `alerts` turns its old and new rows into
# +1/-1 per (region at each level, theme, level, status), applied in sorted order (so concurrent
# writers lock rows in the same order), then refreshes the few status rows it touched from the
# small roll-up table. No statement ever scans the alerts. SECURITY DEFINER: a scoped web role
# that may change an alert's status need not be allowed to write the roll-up itself.
APPLY = """
CREATE FUNCTION alerting_rollup_apply(deltas jsonb) RETURNS void LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF deltas IS NULL OR jsonb_array_length(deltas) = 0 THEN
        RETURN;
    END IF;
    WITH d AS (
        SELECT x->>'adcode' AS adcode, x->>'city' AS city, x->>'province' AS province,
               x->>'theme' AS theme, x->>'level' AS level, x->>'status' AS status,
               (x->>'delta')::int AS delta
        FROM jsonb_array_elements(deltas) AS x
    ), e AS (
        SELECT adcode AS region, 'county' AS region_level, city AS parent, theme, level, status, delta FROM d
        UNION ALL
        SELECT city, 'city', province, theme, level, status, delta FROM d WHERE city <> adcode
        UNION ALL
        SELECT province, 'province', NULL, theme, level, status, delta FROM d WHERE province <> city
    ), agg AS (
        SELECT region, min(region_level) AS region_level, min(parent) AS parent, theme, level, status,
               sum(delta)::int AS n
        FROM e GROUP BY region, theme, level, status HAVING sum(delta) <> 0
    )
    INSERT INTO alert_rollup AS r (adcode, region_level, parent, theme, level, status, n, updated_at)
    SELECT region, region_level, parent, theme, level, status, n, now() FROM agg
    ORDER BY region, theme, level, status
    ON CONFLICT (adcode, theme, level, status)
    DO UPDATE SET n = r.n + EXCLUDED.n, updated_at = now();

    WITH d AS (
        SELECT x->>'adcode' AS adcode, x->>'city' AS city, x->>'province' AS province
        FROM jsonb_array_elements(deltas) AS x
    ), regions AS (
        SELECT adcode AS region FROM d UNION SELECT city FROM d UNION SELECT province FROM d
    )
    INSERT INTO region_alert_status AS s
        (adcode, region_level, parent, open_total, unacknowledged, worst_level, updated_at)
    SELECT r.adcode, min(r.region_level), min(r.parent),
           coalesce(sum(r.n), 0)::int,
           coalesce(sum(r.n) FILTER (WHERE r.status = 'open'), 0)::int,
           (array_agg(r.level ORDER BY CASE r.level WHEN 'red' THEN 4 WHEN 'orange' THEN 3
                                                    WHEN 'yellow' THEN 2 ELSE 1 END DESC)
               FILTER (WHERE r.n > 0))[1],
           now()
    FROM alert_rollup r WHERE r.adcode IN (SELECT region FROM regions)
    GROUP BY r.adcode
    ORDER BY r.adcode
    ON CONFLICT (adcode) DO UPDATE SET open_total = EXCLUDED.open_total,
        unacknowledged = EXCLUDED.unacknowledged, worst_level = EXCLUDED.worst_level,
        updated_at = now();
END $$;
"""

ROW = "jsonb_build_object('adcode', trim({t}.adcode), 'city', trim({t}.city), " \
      "'province', trim({t}.province), 'theme', {t}.theme, 'level', {t}.level, 'status', {t}.status, " \
      "'delta', {d})"

TRIGGER_FN = f"""
CREATE FUNCTION alerting_alerts_changed() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = public AS $$
DECLARE
    deltas jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO alert_handling (alert_id, owner_region, visible_at)
        SELECT id, trim(adcode), trim(adcode) FROM new_rows ORDER BY id
        ON CONFLICT (alert_id) DO NOTHING;
        SELECT jsonb_agg({ROW.format(t='n', d='1')}) INTO deltas
        FROM new_rows n WHERE n.status IN {ACTIVE};
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT jsonb_agg(x) INTO deltas FROM (
            SELECT {ROW.format(t='n', d='1')} AS x FROM new_rows n WHERE n.status IN {ACTIVE}
            UNION ALL
            SELECT {ROW.format(t='o', d='-1')} FROM old_rows o WHERE o.status IN {ACTIVE}
        ) q;
    ELSE
        SELECT jsonb_agg({ROW.format(t='o', d='-1')}) INTO deltas
        FROM old_rows o WHERE o.status IN {ACTIVE};
    END IF;
    PERFORM alerting_rollup_apply(deltas);
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.create_table(
        "alert_handling",
        sa.Column("alert_id", sa.Text, sa.ForeignKey("alerts.id", ondelete="CASCADE",
                                                     name="fk_alert_handling_alert_id_alerts"),
                  primary_key=True),
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
    )
    op.create_index("ix_alert_handling_visible_at", "alert_handling", ["visible_at"])
    op.create_index("ix_alert_handling_owner_region", "alert_handling", ["owner_region"])
    op.create_index("ix_alert_handling_assigned_region", "alert_handling", ["assigned_region"])
    op.create_index("ix_alert_handling_due_at", "alert_handling", ["due_at"],
                    postgresql_where=sa.text("overdue_at IS NULL"))

    op.create_table(
        "alert_rollup",
        sa.Column("adcode", sa.Text, nullable=False),
        sa.Column("region_level", sa.Text, nullable=False, comment="county | city | province"),
        sa.Column("parent", sa.Text, nullable=True),
        sa.Column("theme", sa.Text, nullable=False),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, comment="open | acknowledged | dispatched"),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("adcode", "theme", "level", "status", name="pk_alert_rollup"),
    )
    op.create_index("ix_alert_rollup_parent", "alert_rollup", ["parent"])

    op.create_table(
        "region_alert_status",
        sa.Column("adcode", sa.Text, primary_key=True),
        sa.Column("region_level", sa.Text, nullable=False),
        sa.Column("parent", sa.Text, nullable=True),
        sa.Column("open_total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("unacknowledged", sa.Integer, nullable=False, server_default="0"),
        sa.Column("worst_level", sa.Text, nullable=True),
        sa.Column("sensors_total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("sensors_offline", sa.Integer, nullable=False, server_default="0"),
        sa.Column("sensors_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_region_alert_status_parent", "region_alert_status", ["parent"])

    op.create_table(
        "alert_silences",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("adcode", sa.Text, nullable=False, comment="the region whose whole subtree is silenced"),
        sa.Column("themes", ARRAY(sa.Text), nullable=False, server_default="{}", comment="empty = all"),
        sa.Column("metrics", ARRAY(sa.Text), nullable=False, server_default="{}", comment="empty = all"),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("ends_at > starts_at", name="ck_alert_silences_window"),
    )
    op.create_index("ix_alert_silences_ends_at", "alert_silences", ["ends_at"])

    op.create_table(
        "subscriptions",
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
        sa.CheckConstraint("min_level IN ('blue','yellow','orange','red')", name="ck_subscriptions_min_level"),
    )

    op.create_table(
        "notification_items",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("subscription_id", sa.BigInteger,
                  sa.ForeignKey("subscriptions.id", ondelete="CASCADE",
                                name="fk_notification_items_subscription_id_subscriptions"), nullable=False),
        sa.Column("alert_id", sa.Text, sa.ForeignKey("alerts.id", ondelete="CASCADE",
                                                     name="fk_notification_items_alert_id_alerts"),
                  nullable=False),
        sa.Column("event", sa.Text, nullable=False, comment="level:<lv> | escalated:<adcode> | reopened:<n>"),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False, comment="pending | grouped | silenced | inhibited"),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("delivery_group", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("subscription_id", "alert_id", "event", name="pk_notification_items"),
        sa.UniqueConstraint("id", name="uq_notification_items_id"),
    )
    op.create_index("ix_notification_items_pending", "notification_items", ["subscription_id"],
                    postgresql_where=sa.text("state = 'pending'"))

    op.create_table(
        "notification_deliveries",
        sa.Column("key", sa.Text, primary_key=True, comment="delivery key: idempotency across restarts"),
        sa.Column("subscription_id", sa.BigInteger,
                  sa.ForeignKey("subscriptions.id", ondelete="CASCADE",
                                name="fk_notification_deliveries_subscription_id_subscriptions"),
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
    )
    op.create_index("ix_notification_deliveries_due", "notification_deliveries", ["next_attempt_at"],
                    postgresql_where=sa.text("status IN ('pending','retrying','sending')"))
    op.create_index("ix_notification_deliveries_subscription_id", "notification_deliveries",
                    ["subscription_id", "created_at"])

    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("delivery_key", sa.Text,
                  sa.ForeignKey("notification_deliveries.key", ondelete="CASCADE",
                                name="fk_delivery_attempts_delivery_key_notification_deliveries"),
                  nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("duration_ms", sa.Float(53), nullable=False),
        sa.Column("outcome", sa.Text, nullable=False, comment="ok | error"),
        sa.Column("detail", sa.Text, nullable=True, comment="HTTP status, SMTP reply or the error"),
    )
    op.create_index("ix_delivery_attempts_delivery_key", "delivery_attempts", ["delivery_key"])

    op.create_table(
        "inbox_messages",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("delivery_key", sa.Text, nullable=False),
        sa.Column("subscription_id", sa.BigInteger,
                  sa.ForeignKey("subscriptions.id", ondelete="CASCADE",
                                name="fk_inbox_messages_subscription_id_subscriptions"), nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("alert_ids", ARRAY(sa.Text), nullable=False),
        sa.Column("top_level", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("delivery_key", name="uq_inbox_messages_delivery_key"),
    )
    op.create_index("ix_inbox_messages_recipient", "inbox_messages", ["recipient", "created_at"])

    op.execute(APPLY)
    op.execute(TRIGGER_FN)
    for event, refs in (("INSERT", "NEW TABLE AS new_rows"),
                        ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
                        ("DELETE", "OLD TABLE AS old_rows")):
        op.execute(f"CREATE TRIGGER alerting_alerts_{event.lower()} AFTER {event} ON alerts "
                   f"REFERENCING {refs} FOR EACH STATEMENT EXECUTE FUNCTION alerting_alerts_changed()")
    # Alerts that existed before this migration get their handling rows and roll-up now.
    op.execute("INSERT INTO alert_handling (alert_id, owner_region, visible_at) "
               "SELECT id, trim(adcode), trim(adcode) FROM alerts ON CONFLICT DO NOTHING")
    op.execute(f"SELECT alerting_rollup_apply((SELECT jsonb_agg({ROW.format(t='a', d='1')}) "
               f"FROM alerts a WHERE a.status IN {ACTIVE}))")


def downgrade() -> None:
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS alerting_alerts_{event} ON alerts")
    op.execute("DROP FUNCTION IF EXISTS alerting_alerts_changed()")
    op.execute("DROP FUNCTION IF EXISTS alerting_rollup_apply(jsonb)")
    for table in ("inbox_messages", "delivery_attempts", "notification_deliveries", "notification_items",
                  "subscriptions", "alert_silences", "region_alert_status", "alert_rollup", "alert_handling"):
        op.drop_table(table)
