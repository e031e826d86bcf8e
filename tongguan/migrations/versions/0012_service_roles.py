"""access: the service roles; a signed, connection-bound scope the scoped role cannot change

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01

The product logs in as three non-superuser roles without BYPASSRLS (created by the managed
cluster's bootstrap, ``tongguan/services.py``, or by ``docker/initdb/``):

- ``tongguan_owner`` owns the schema and runs these migrations and the command line;
- ``tongguan_app`` serves the web and the API. Per request it switches to ``tongguan_scoped``
  (``apps/scope.py``); its own privileges (users, tokens, deliveries) work only while the
  connection carries an *unscoped* claim, so ``RESET ROLE`` inside a request gains nothing;
- ``tongguan_worker`` runs ingest, detect and notify: every regional row, but no password hash,
  no token, no key.

The scope used to be a plain setting (``tongguan.scope``) that any SQL could change with
``set_config``. Now the connection carries ``tongguan.claims``: ``1|backend pid|kind|home|operator|
user`` plus an HMAC-SHA256 under a key only the owner can read (``tongguan_keys``, written by
``tongguan.db.upgrade`` from ``TONGGUAN_SECRET_KEY``). ``tongguan_claims()`` (SECURITY DEFINER)
checks the signature and that the pid is the connection's own, so neither a forged nor a copied
claim works. The policy helpers read it once per statement (an InitPlan), not once per row.

The audit log is append-only for every role but the owner: only the owner holds UPDATE, DELETE
or TRUNCATE on it, and only the owner may disable its trigger.
"""
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SCOPED, APP, WORKER = "tongguan_scoped", "tongguan_app", "tongguan_worker"


def upgrade() -> None:
    # Roles are cluster-wide: created by whoever set the cluster up; here only when missing and
    # this role may (a superuser URL on a developer's own server).
    op.execute(f"""
        DO $$ DECLARE r text; BEGIN
            FOREACH r IN ARRAY ARRAY['{APP}', '{WORKER}', '{SCOPED}'] LOOP
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
                    BEGIN
                        EXECUTE format('CREATE ROLE %I NOLOGIN', r);
                    EXCEPTION WHEN insufficient_privilege THEN
                        RAISE EXCEPTION 'role % is missing: create the roles tongguan_app, tongguan_worker '
                            'and tongguan_scoped first (see docker/initdb/10-roles.sh)', r;
                    END;
                END IF;
            END LOOP;
        END $$;
    """)
    op.execute("""
        CREATE TABLE tongguan_keys (
            name text PRIMARY KEY,
            inner_pad bytea NOT NULL,
            outer_pad bytea NOT NULL
        )
    """)
    op.execute("REVOKE ALL ON tongguan_keys FROM PUBLIC")
    op.execute("""
        CREATE FUNCTION tongguan_claims() RETURNS text[] LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
        SET search_path = pg_catalog, public AS $$
        DECLARE
            raw text := current_setting('tongguan.claims', true);
            body text;
            k record;
            parts text[];
        BEGIN
            IF raw IS NULL OR length(raw) < 66 OR substr(raw, length(raw) - 64, 1) <> '|' THEN
                RETURN NULL;
            END IF;
            body := left(raw, length(raw) - 65);
            SELECT inner_pad, outer_pad INTO k FROM tongguan_keys WHERE name = 'claims';
            IF NOT FOUND OR encode(sha256(k.outer_pad || sha256(k.inner_pad || convert_to(body, 'UTF8'))), 'hex')
                    <> right(raw, 64) THEN
                RETURN NULL;
            END IF;
            parts := string_to_array(body, '|');
            IF array_length(parts, 1) <> 6 OR parts[1] <> '1' OR parts[2] <> pg_backend_pid()::text THEN
                RETURN NULL;
            END IF;
            RETURN parts;
        END $$;
    """)
    # '-' never equals an adcode: no (valid) claim means no rows (fail closed).
    op.execute("""
        CREATE OR REPLACE FUNCTION tongguan_scope() RETURNS text LANGUAGE sql STABLE PARALLEL RESTRICTED AS
        $$ SELECT coalesce((SELECT CASE WHEN c[3] = 'scoped' AND c[4] <> '' THEN c[4] END
                            FROM (SELECT tongguan_claims() AS c) x), '-') $$;
    """)
    op.execute("""
        CREATE OR REPLACE FUNCTION tongguan_operator() RETURNS boolean LANGUAGE sql STABLE PARALLEL RESTRICTED AS
        $$ SELECT coalesce((SELECT c[3] = 'scoped' AND c[5] = 'on' FROM (SELECT tongguan_claims() AS c) x), false) $$;
    """)
    op.execute("""
        CREATE FUNCTION tongguan_username() RETURNS text LANGUAGE sql STABLE PARALLEL RESTRICTED AS
        $$ SELECT (SELECT CASE WHEN c[3] = 'scoped' THEN c[6] END FROM (SELECT tongguan_claims() AS c) x) $$;
    """)
    op.execute("""
        CREATE FUNCTION tongguan_unscoped() RETURNS boolean LANGUAGE sql STABLE PARALLEL RESTRICTED AS
        $$ SELECT coalesce((SELECT c[3] = 'unscoped' FROM (SELECT tongguan_claims() AS c) x), false) $$;
    """)
    # The sub-selects make the claim an InitPlan: checked once per statement, not per row.
    op.execute("""
        CREATE OR REPLACE FUNCTION tongguan_in_scope(province text, city text, county text) RETURNS boolean
        LANGUAGE sql STABLE PARALLEL RESTRICTED AS
        $$ SELECT (SELECT tongguan_scope()) IN (province, city, county) $$;
    """)
    op.execute("""
        CREATE OR REPLACE FUNCTION tongguan_region_in_scope(code text) RETURNS boolean
        LANGUAGE sql STABLE PARALLEL RESTRICTED AS $$
            SELECT code IS NOT NULL AND (code = (SELECT tongguan_scope()) OR EXISTS (
                SELECT 1 FROM regions r
                WHERE r.adcode = code::char(6)
                  AND (r.parent = (SELECT tongguan_scope())::char(6)
                       OR r.parent IN (SELECT c.adcode FROM regions c
                                       WHERE c.parent = (SELECT tongguan_scope())::char(6)))))
        $$;
    """)
    for name in ("scope_read", "scope_update"):
        op.execute(f"DROP POLICY IF EXISTS {name} ON inbox_messages")
    op.execute(f"""CREATE POLICY scope_read ON inbox_messages FOR SELECT TO {SCOPED}
                   USING (recipient = (SELECT tongguan_username()))""")
    op.execute(f"""CREATE POLICY scope_update ON inbox_messages FOR UPDATE TO {SCOPED}
                   USING (recipient = (SELECT tongguan_username()))""")
    # The ingest worker creates the day partitions of readings; only the owner of a table may.
    op.execute("ALTER FUNCTION ingest_ensure_readings_partitions(date, date) SECURITY DEFINER "
               "SET search_path = public")
    # Password hashes and tokens: rows only for an unscoped app connection (policies below).
    op.execute("ALTER TABLE users ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE api_tokens ENABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC, {SCOPED}, {APP}, {WORKER}")
    # Grants and the service roles' policies, for every table (later migrations' too): the
    # owner runs this after each upgrade (tongguan.db.upgrade).
    op.execute(f"""
        CREATE FUNCTION tongguan_grant_service_roles() RETURNS void LANGUAGE plpgsql AS $$
        DECLARE t record;
        BEGIN
            FOR t IN SELECT c.relname, c.relrowsecurity FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
                       AND NOT c.relispartition
                       AND c.relname NOT IN ('tongguan_keys', 'spatial_ref_sys')
                       AND pg_get_userbyid(c.relowner) = current_user
            LOOP
                IF t.relname IN ('users', 'api_tokens') THEN
                    -- the worker: who exists, never a password hash or a token
                    IF t.relname = 'users' THEN
                        EXECUTE 'GRANT SELECT (id, username, display_name, home_adcode, roles, active) '
                                'ON users TO {WORKER}';
                    END IF;
                    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I TO {APP}', t.relname);
                ELSIF t.relname = 'audit_log' THEN
                    EXECUTE 'GRANT SELECT, INSERT ON audit_log TO {APP}, {WORKER}';
                ELSIF t.relname = 'alembic_version' OR NOT t.relrowsecurity THEN
                    -- names, boundaries, grid, models, heartbeats: no regional rows
                    EXECUTE format('GRANT SELECT ON %I TO {APP}', t.relname);
                    EXECUTE format('GRANT SELECT%s ON %I TO {WORKER}',
                                   CASE WHEN t.relname = 'alembic_version' THEN ''
                                        ELSE ', INSERT, UPDATE, DELETE' END, t.relname);
                ELSE
                    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO {APP}, {WORKER}', t.relname);
                END IF;
                IF t.relrowsecurity OR t.relname IN ('users', 'api_tokens') THEN
                    IF NOT EXISTS (SELECT FROM pg_policies WHERE schemaname = 'public'
                                   AND tablename = t.relname AND policyname = 'svc_worker') THEN
                        EXECUTE format('CREATE POLICY svc_worker ON %I TO {WORKER} USING (true) WITH CHECK (true)',
                                       t.relname);
                    END IF;
                    IF NOT EXISTS (SELECT FROM pg_policies WHERE schemaname = 'public'
                                   AND tablename = t.relname AND policyname = 'svc_app') THEN
                        EXECUTE format('CREATE POLICY svc_app ON %I TO {APP} USING ((SELECT tongguan_unscoped())) '
                                       'WITH CHECK ((SELECT tongguan_unscoped()))', t.relname);
                    END IF;
                END IF;
            END LOOP;
            EXECUTE 'GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {APP}, {WORKER}, {SCOPED}';
        END $$;
    """)
    op.execute("REVOKE ALL ON FUNCTION tongguan_grant_service_roles() FROM PUBLIC")


def downgrade() -> None:
    op.execute("""
        DO $$ DECLARE t record; BEGIN
            FOR t IN SELECT tablename, policyname FROM pg_policies
                     WHERE schemaname = 'public' AND policyname IN ('svc_worker', 'svc_app') LOOP
                EXECUTE format('DROP POLICY %I ON %I', t.policyname, t.tablename);
            END LOOP;
        END $$;
    """)
    op.execute("DROP FUNCTION tongguan_grant_service_roles()")
    op.execute("ALTER TABLE users DISABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE api_tokens DISABLE ROW LEVEL SECURITY")
    op.execute("ALTER FUNCTION ingest_ensure_readings_partitions(date, date) SECURITY INVOKER")
    for name in ("scope_read", "scope_update"):
        op.execute(f"DROP POLICY IF EXISTS {name} ON inbox_messages")
    op.execute(f"""CREATE POLICY scope_read ON inbox_messages FOR SELECT TO {SCOPED}
                   USING (recipient = current_setting('tongguan.username', true))""")
    op.execute(f"""CREATE POLICY scope_update ON inbox_messages FOR UPDATE TO {SCOPED}
                   USING (recipient = current_setting('tongguan.username', true))""")
    op.execute("""
        CREATE OR REPLACE FUNCTION tongguan_in_scope(province text, city text, county text) RETURNS boolean
        LANGUAGE sql STABLE PARALLEL SAFE AS $$ SELECT tongguan_scope() IN (province, city, county) $$;
    """)
    op.execute("""
        CREATE OR REPLACE FUNCTION tongguan_scope() RETURNS text LANGUAGE sql STABLE PARALLEL RESTRICTED AS
        $$ SELECT coalesce(nullif(current_setting('tongguan.scope', true), ''), '-') $$;
    """)
    op.execute("""
        CREATE OR REPLACE FUNCTION tongguan_operator() RETURNS boolean LANGUAGE sql STABLE PARALLEL RESTRICTED AS
        $$ SELECT coalesce(current_setting('tongguan.operator', true), '') = 'on' $$;
    """)
    op.execute("DROP FUNCTION tongguan_unscoped()")
    op.execute("DROP FUNCTION tongguan_username()")
    op.execute("DROP FUNCTION tongguan_claims()")
    op.execute("DROP TABLE tongguan_keys")
