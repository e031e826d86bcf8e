"""alert incidents: repeated alerts of one sensor, place and theme grouped into one incident

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

A Baiyun storm raised five identical red "河道水位快速上涨" alerts: the same sensor's condition
came and went, and each return was a new alert. An incident (事件) groups them: alerts with the
same subject (sensor or camera), county and theme belong to one incident while it is live — one of
its alerts is still active, or the newest ended less than ``incident_window`` (6 h) before the new
alert began. Later, the same key opens a new incident.

The grouping is a statement-level trigger on ``alerts`` (after the handling trigger, which
creates the ``alert_handling`` rows: triggers of one kind fire in name order), so every writer —
the live detector's upsert, the CLI, tests — groups the same way; an advisory lock per key keeps
two concurrent writers from opening two incidents. Counts, worst level, status and times are
read from the alerts (never kept twice). Existing alerts are grouped by the same rule.
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ROLE = "tongguan_scoped"
WINDOW = "6 hours"

GROUP_FN = f"""
CREATE OR REPLACE FUNCTION alerting_group_incident(aid text) RETURNS bigint LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = public AS $$
DECLARE
    a record;
    k text;
    inc bigint;
BEGIN
    SELECT id, subject, trim(adcode) AS adcode, trim(city) AS city, trim(province) AS province, theme, title,
           first_seen INTO a FROM alerts WHERE id = aid;
    IF a.id IS NULL OR a.subject IS NULL OR a.subject = '' THEN
        RETURN NULL;
    END IF;
    k := a.subject || '|' || a.adcode || '|' || a.theme;
    PERFORM pg_advisory_xact_lock(hashtext('alert_incident:' || k));
    SELECT i.id INTO inc FROM alert_incidents i
    JOIN alert_handling h ON h.incident_id = i.id JOIN alerts x ON x.id = h.alert_id
    WHERE i.incident_key = k AND x.id <> aid
    GROUP BY i.id
    HAVING bool_or(x.status IN ('open', 'acknowledged', 'dispatched'))
        OR max(x.last_seen) >= a.first_seen - interval '{WINDOW}'
    ORDER BY max(x.last_seen) DESC LIMIT 1;
    IF inc IS NULL THEN
        INSERT INTO alert_incidents (incident_key, subject, adcode, city, province, theme, title, first_seen)
        VALUES (k, a.subject, a.adcode, a.city, a.province, a.theme, a.title, a.first_seen) RETURNING id INTO inc;
    ELSE
        UPDATE alert_incidents SET first_seen = least(first_seen, a.first_seen) WHERE id = inc;
    END IF;
    UPDATE alert_handling SET incident_id = inc WHERE alert_id = aid;
    RETURN inc;
END $$
"""

TRIGGER_FN = """
CREATE OR REPLACE FUNCTION alerting_alerts_grouped() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = public AS $$
BEGIN
    PERFORM alerting_group_incident(n.id) FROM (SELECT id, first_seen FROM new_rows ORDER BY first_seen, id) n;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "alert_incidents",
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
    )
    op.create_index("ix_alert_incidents_key", "alert_incidents", ["incident_key"])
    op.create_index("ix_alert_incidents_adcode", "alert_incidents", ["adcode"])
    op.add_column("alert_handling", sa.Column("incident_id", sa.BigInteger, sa.ForeignKey(
        "alert_incidents.id", ondelete="SET NULL", name="fk_alert_handling_incident_id_alert_incidents"),
        nullable=True))
    op.create_index("ix_alert_handling_incident_id", "alert_handling", ["incident_id"])
    op.execute(GROUP_FN)
    op.execute(TRIGGER_FN)
    # Named to fire after alerting_alerts_insert (0005), which creates the handling rows.
    op.execute("CREATE TRIGGER alerts_incidents_insert AFTER INSERT ON alerts REFERENCING NEW TABLE AS new_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION alerting_alerts_grouped()")
    op.execute("SELECT alerting_group_incident(id) FROM (SELECT id FROM alerts ORDER BY first_seen, id) a")
    op.execute(f"GRANT SELECT ON alert_incidents TO {ROLE}")
    op.execute("ALTER TABLE alert_incidents ENABLE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY scope_read ON alert_incidents FOR SELECT TO {ROLE} "
               "USING (tongguan_in_scope(province, city, adcode))")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS alerts_incidents_insert ON alerts")
    op.execute("DROP FUNCTION IF EXISTS alerting_alerts_grouped()")
    op.execute("DROP FUNCTION IF EXISTS alerting_group_incident(text)")
    op.drop_index("ix_alert_handling_incident_id", table_name="alert_handling")
    op.drop_column("alert_handling", "incident_id")
    op.drop_table("alert_incidents")
