"""access: users, API tokens, append-only audit log; row-level security for the web's scope

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

Row-level security: the web server runs its queries as the NOLOGIN role ``tongguan_scoped``
(``SET ROLE`` on the pooled connection, see ``apps/scope.py``) with the caller's region in the
setting ``tongguan.scope``. The policies below keep every row of readings, events, sensors,
cameras, rollups, alerts and their history, subscriptions and the audit log inside that region's
subtree. Workers and the command line stay the table owner and see everything.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ROLE = "tongguan_scoped"

# Tables the web reads whole (no regional rows): names, boundaries, grid, worker status, models.
PUBLIC_READ = ("regions", "grid_cells", "worker_heartbeats", "models", "spatial_ref_sys", "alembic_version")
# table -> the policy expression keeping its rows inside the caller's subtree.
REGIONAL = {
    "readings": "tongguan_in_scope(province, city, county)",
    "video_events": "tongguan_in_scope(province, city, county)",
    "sensors": "tongguan_in_scope(province, city, county)",
    "cameras": "tongguan_in_scope(province, city, county)",
    "reading_rollups_minute": "tongguan_region_in_scope(adcode)",
    "reading_rollups_hour": "tongguan_region_in_scope(adcode)",
    "video_rollups_minute": "tongguan_region_in_scope(adcode)",
    "video_rollups_hour": "tongguan_region_in_scope(adcode)",
    "alerts": "tongguan_in_scope(province, city, adcode)",
    # migration 0005 (alert handling, roll-ups kept by SECURITY DEFINER triggers, subscriptions)
    "alert_rollup": "tongguan_region_in_scope(adcode)",
    "region_alert_status": "tongguan_region_in_scope(adcode)",
    "alert_silences": "tongguan_region_in_scope(adcode)",
    "subscriptions": "tongguan_region_in_scope(adcode)",
    "alert_handling": "EXISTS (SELECT 1 FROM alerts a WHERE a.id = alert_id)",
    "notification_items": "EXISTS (SELECT 1 FROM subscriptions s WHERE s.id = subscription_id)",
    "notification_deliveries": "EXISTS (SELECT 1 FROM subscriptions s WHERE s.id = subscription_id)",
    "delivery_attempts": "EXISTS (SELECT 1 FROM notification_deliveries d WHERE d.key = delivery_key)",
    "inbox_messages": "recipient = current_setting('tongguan.username', true)",
}


def _exists(name: str) -> bool:
    return op.get_bind().execute(sa.text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}).scalar()


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("display_name", sa.Text, nullable=False, server_default=""),
        sa.Column("home_adcode", sa.CHAR(6), sa.ForeignKey("regions.adcode", name="fk_users_home_adcode_regions"),
                  nullable=False, comment="the user sees and handles this region's subtree"),
        sa.Column("roles", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{viewer}'::text[]")),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("roles <@ ARRAY['viewer','operator','admin']::text[]", name="ck_users_roles"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    op.create_index("ix_users_home_adcode", "users", ["home_adcode"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", name="fk_api_tokens_user_id_users"),
                  nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("token_hash", sa.Text, nullable=False, comment="sha256 hex of the secret"),
        sa.Column("prefix", sa.Text, nullable=False, comment="first characters, to recognise a token"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("actor", sa.Text, nullable=False, comment="user name, or the name tried at a failed log-in"),
        sa.Column("user_id", sa.BigInteger, nullable=True),
        sa.Column("action", sa.Text, nullable=False,
                  comment="login | login_failed | logout | view_region | alert_<action> | subscription_<op> | "
                          "token_<op> | user_<op> | denied"),
        sa.Column("region", sa.CHAR(6), nullable=True, comment="the region concerned (scopes who may read it)"),
        sa.Column("target", sa.Text, nullable=True, comment="alert id, subscription id, user name, URL …"),
        sa.Column("outcome", sa.Text, nullable=False, server_default="ok"),
        sa.Column("channel", sa.Text, nullable=False, server_default="web", comment="web | api | cli"),
        sa.Column("ip", sa.Text, nullable=True),
        sa.Column("detail", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.CheckConstraint("outcome IN ('ok','denied','failed','error')", name="ck_audit_log_outcome"),
    )
    op.create_index("ix_audit_log_ts", "audit_log", ["ts"])
    op.create_index("ix_audit_log_region_ts", "audit_log", ["region", "ts"])
    op.create_index("ix_audit_log_actor_ts", "audit_log", ["actor", "ts"])
    op.execute("""
        CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
        END $$;
    """)
    op.execute("""
        CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
    """)
    op.execute("""
        CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
    """)

    # ---- the scoped role and its policies -------------------------------------------------
    # Roles are cluster-wide (many databases may share one), so create it only when missing.
    op.execute(f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
                CREATE ROLE {ROLE} NOLOGIN;
            END IF;
            BEGIN
                EXECUTE 'GRANT {ROLE} TO ' || quote_ident(current_user);
            EXCEPTION WHEN OTHERS THEN NULL;  -- a superuser needs no membership to SET ROLE
            END;
        END $$;
    """)
    # '-' never equals an adcode: no scope set means no rows (fail closed).
    op.execute("""
        CREATE FUNCTION tongguan_scope() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS
        $$ SELECT coalesce(nullif(current_setting('tongguan.scope', true), ''), '-') $$;
    """)
    op.execute("""
        CREATE FUNCTION tongguan_operator() RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS
        $$ SELECT coalesce(current_setting('tongguan.operator', true), '') = 'on' $$;
    """)
    op.execute("""
        CREATE FUNCTION tongguan_in_scope(province text, city text, county text) RETURNS boolean
        LANGUAGE sql STABLE PARALLEL SAFE AS
        $$ SELECT tongguan_scope() IN (province, city, county) $$;
    """)
    # Any-level region (rollups, audit entries): the scope itself, its children or grandchildren.
    op.execute("""
        CREATE FUNCTION tongguan_region_in_scope(code text) RETURNS boolean
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT code IS NOT NULL AND (code = tongguan_scope() OR EXISTS (
                SELECT 1 FROM regions r
                WHERE r.adcode = code::char(6)
                  AND (r.parent = tongguan_scope()::char(6)
                       OR r.parent IN (SELECT c.adcode FROM regions c
                                       WHERE c.parent = tongguan_scope()::char(6)))))
        $$;
    """)
    for name in PUBLIC_READ:
        if _exists(name):
            op.execute(f"GRANT SELECT ON {name} TO {ROLE}")
    for name, expr in REGIONAL.items():
        if not _exists(name):
            continue
        op.execute(f"GRANT SELECT ON {name} TO {ROLE}")
        op.execute(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY scope_read ON {name} FOR SELECT TO {ROLE} USING ({expr})")
    # Handling: operators update alerts of their subtree and append to their history; the finer
    # rule (own region, or an ancestor that took the alert over) is apps.policy.can_handle.
    op.execute(f"GRANT UPDATE ON alerts TO {ROLE}")
    op.execute(f"""CREATE POLICY scope_handle ON alerts FOR UPDATE TO {ROLE}
                   USING ({REGIONAL['alerts']} AND tongguan_operator())
                   WITH CHECK ({REGIONAL['alerts']})""")
    op.execute(f"GRANT INSERT, UPDATE ON alert_handling TO {ROLE}")
    op.execute(f"""CREATE POLICY scope_handle ON alert_handling FOR UPDATE TO {ROLE}
                   USING ({REGIONAL['alert_handling']} AND tongguan_operator())""")
    op.execute(f"""CREATE POLICY scope_insert ON alert_handling FOR INSERT TO {ROLE}
                   WITH CHECK ({REGIONAL['alert_handling']} AND tongguan_operator())""")
    # Subscriptions of the caller's subtree (admins manage them; apps.scope checks the role).
    op.execute(f"GRANT INSERT, UPDATE, DELETE ON subscriptions TO {ROLE}")
    for cmd, clause in (("INSERT", "WITH CHECK"), ("UPDATE", "USING"), ("DELETE", "USING")):
        op.execute(f"""CREATE POLICY scope_{cmd.lower()} ON subscriptions FOR {cmd} TO {ROLE}
                       {clause} ({REGIONAL['subscriptions']})""")
    op.execute(f"GRANT UPDATE (read_at) ON inbox_messages TO {ROLE}")
    op.execute(f"""CREATE POLICY scope_update ON inbox_messages FOR UPDATE TO {ROLE}
                   USING ({REGIONAL['inbox_messages']})""")
    op.execute(f"GRANT SELECT, INSERT ON alert_history TO {ROLE}")
    op.execute("ALTER TABLE alert_history ENABLE ROW LEVEL SECURITY")
    # The subquery on alerts is itself filtered by the alerts policy.
    op.execute(f"""CREATE POLICY scope_read ON alert_history FOR SELECT TO {ROLE}
                   USING (EXISTS (SELECT 1 FROM alerts a WHERE a.id = alert_id))""")
    op.execute(f"""CREATE POLICY scope_handle ON alert_history FOR INSERT TO {ROLE}
                   WITH CHECK (tongguan_operator() AND EXISTS (SELECT 1 FROM alerts a WHERE a.id = alert_id))""")
    op.execute(f"GRANT SELECT, INSERT ON audit_log TO {ROLE}")
    op.execute("ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY")
    # Entries without a region (failed log-ins of unknown names) are for province admins.
    op.execute(f"""CREATE POLICY scope_read ON audit_log FOR SELECT TO {ROLE}
                   USING (tongguan_region_in_scope(region)
                          OR (region IS NULL AND EXISTS (SELECT 1 FROM regions r
                              WHERE r.adcode = tongguan_scope()::char(6) AND r.level = 'province')))""")
    op.execute(f"CREATE POLICY scope_write ON audit_log FOR INSERT TO {ROLE} WITH CHECK (true)")
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {ROLE}")


def downgrade() -> None:
    for name in ("audit_log", "alert_history", *REGIONAL):
        if _exists(name):
            for policy in ("scope_read", "scope_handle", "scope_write", "scope_insert", "scope_update",
                           "scope_delete"):
                op.execute(f"DROP POLICY IF EXISTS {policy} ON {name}")
            op.execute(f"ALTER TABLE {name} DISABLE ROW LEVEL SECURITY")
            op.execute(f"REVOKE ALL ON {name} FROM {ROLE}")
    for name in PUBLIC_READ:
        if _exists(name):
            op.execute(f"REVOKE ALL ON {name} FROM {ROLE}")
    op.execute(f"REVOKE USAGE ON ALL SEQUENCES IN SCHEMA public FROM {ROLE}")
    for fn in ("tongguan_region_in_scope(text)", "tongguan_in_scope(text, text, text)",
               "tongguan_operator()", "tongguan_scope()"):
        op.execute(f"DROP FUNCTION IF EXISTS {fn}")
    op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
    op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
    op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_table("audit_log")
    op.drop_table("api_tokens")
    op.drop_table("users")
    # The role stays: it is cluster-wide and other databases of the cluster may use it.
