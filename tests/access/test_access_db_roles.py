"""Issue 13 item 2: the managed database no longer trusts everyone. Against the session's real
cluster: passwords (scram-sha-256) kept 0600 in TONGGUAN_HOME; the service roles are neither
superusers nor BYPASSRLS; a scoped web connection cannot RESET ROLE into more, nor forge or copy
its scope; the audit log is append-only for every role but the owner."""

from __future__ import annotations

import stat

import pytest
import sqlalchemy as sa

from apps.scope import Scope, scoped, unscoped
from tongguan.db import engine_for, sign_claims

pytestmark = pytest.mark.integration

TIANHE = Scope(home="440106", roles=frozenset({"operator", "viewer"}), username="tianhe-operator")


def _denied(conn, sql: str) -> str | int:
    """The count a statement returns, or 'denied' when PostgreSQL refuses it."""
    conn.execute(sa.text("SAVEPOINT probe"))
    try:
        result = conn.execute(sa.text(sql))
        value = result.scalar() if result.returns_rows else result.rowcount
        conn.execute(sa.text("RELEASE SAVEPOINT probe"))
        return value
    except (sa.exc.ProgrammingError, sa.exc.InternalError) as exc:
        conn.execute(sa.text("ROLLBACK TO SAVEPOINT probe"))
        assert "permission denied" in str(exc) or "must be owner" in str(exc) or "append-only" in str(exc), exc
        return "denied"


def test_the_managed_cluster_wants_the_generated_password(services):
    pg = services.postgres
    assert stat.S_IMODE(pg.secrets_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(pg.secrets_file.parent.stat().st_mode) == 0o700
    hba = (pg.data / "pg_hba.conf").read_text()
    assert "trust" not in hba.replace("no trust", "") and "scram-sha-256" in hba
    for user in ("tongguan", "tongguan_owner", "tongguan_app"):
        for password in ("", "wrong-password"):
            url = f"postgresql+psycopg://{user}:{password}@127.0.0.1:{pg.port}/postgres"
            eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
            with pytest.raises(sa.exc.OperationalError, match="password"):
                eng.connect()
    with sa.create_engine(pg.url_for("app", "postgres"), poolclass=sa.pool.NullPool).connect() as conn:
        assert conn.execute(sa.text("SELECT current_user")).scalar() == "tongguan_app"


def test_service_roles_are_not_superusers_and_cannot_bypass_rls(engine):
    with engine.connect() as conn:
        rows = {r.rolname: r for r in conn.execute(sa.text(
            "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole FROM pg_roles "
            "WHERE rolname IN ('tongguan_owner', 'tongguan_app', 'tongguan_worker', 'tongguan_scoped')"))}
        assert conn.execute(sa.text("SELECT current_user")).scalar() == "tongguan_owner"
    assert set(rows) == {"tongguan_owner", "tongguan_app", "tongguan_worker", "tongguan_scoped"}
    for r in rows.values():
        assert not r.rolsuper and not r.rolbypassrls and not r.rolcreaterole, r


def test_a_scoped_web_connection_cannot_reset_role_or_change_its_scope(access, app_db_url):
    engine, _, _ = access
    app_engine = engine_for(app_db_url)
    with scoped(TIANHE), app_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT current_user")).scalar() == "tongguan_scoped"
        assert conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar() == 3
        # an injected statement trying its way out:
        conn.execute(sa.text("RESET ROLE"))
        assert conn.execute(sa.text("SELECT current_user")).scalar() == "tongguan_app"
        assert _denied(conn, "SELECT count(*) FROM users") == 0  # no password hash
        assert _denied(conn, "SELECT count(*) FROM api_tokens") == 0
        assert _denied(conn, "SELECT count(*) FROM alerts") in (0, "denied")
        assert _denied(conn, "SELECT count(*) FROM tongguan_keys") == "denied"
        assert _denied(conn, "UPDATE users SET roles = '{admin}'") == 0
        conn.execute(sa.text("SET ROLE tongguan_scoped"))
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        # … or widening its own scope: a forged claim, an unsigned one, and a valid claim of
        # another connection (pid) are all worth nothing
        for forged in (f"1|{pid}|scoped|440000|on|x|" + "0" * 64, "440000",
                       sign_claims(pid + 1, "scoped", "440000", True, "gd-admin")):
            conn.execute(sa.text("SELECT set_config('tongguan.claims', :c, false)"), {"c": forged})
            assert conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar() == 0
            assert conn.execute(sa.text("SELECT tongguan_scope()")).scalar() == "-"
        for old in ("tongguan.scope", "tongguan.operator"):  # the settings that used to decide
            conn.execute(sa.text(f"SELECT set_config('{old}', '440000', false)"))
        assert conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar() == 0
    with scoped(TIANHE), app_engine.connect() as conn:  # the pool hands out a clean connection
        assert conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar() == 3
    with unscoped(), app_engine.connect() as conn:  # the web's own log-in reads still work
        assert conn.execute(sa.text("SELECT count(*) FROM users")).scalar() == 3


def test_the_audit_log_is_append_only_for_every_role_but_the_owner(access, app_db_url, worker_db_url):
    engine, _, _ = access
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO audit_log (actor, action) VALUES ('t', 'login')"))
    for url in (app_db_url, worker_db_url):
        with unscoped(), engine_for(url).begin() as conn:
            assert _denied(conn, "INSERT INTO audit_log (actor, action) VALUES ('t', 'login')") == 1
            for sql in ("UPDATE audit_log SET outcome = 'ok'", "DELETE FROM audit_log", "TRUNCATE audit_log",
                        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
                        "ALTER TABLE audit_log DISABLE ROW LEVEL SECURITY"):
                assert _denied(conn, sql) == "denied", (url, sql)
    with scoped(TIANHE), engine_for(app_db_url).begin() as conn:
        assert _denied(conn, "DELETE FROM audit_log") == "denied"
    with engine.connect() as conn:  # the owner alone holds the privileges (the trigger still guards)
        assert conn.execute(sa.text("SELECT has_table_privilege('tongguan_owner', 'audit_log', 'DELETE')")).scalar()
        for role in ("tongguan_app", "tongguan_worker", "tongguan_scoped", "public"):
            for priv in ("UPDATE", "DELETE", "TRUNCATE"):
                assert not conn.execute(sa.text("SELECT has_table_privilege(:r, 'audit_log', :p)"),
                                        {"r": role, "p": priv}).scalar(), (role, priv)


def test_the_worker_role_sees_every_region_but_no_password_hash(access, worker_db_url):
    eng = engine_for(worker_db_url)
    with eng.begin() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar() == 5
        assert conn.execute(sa.text("SELECT count(username) FROM users")).scalar() == 3
        assert _denied(conn, "SELECT count(password_hash) FROM users") == "denied"
        assert _denied(conn, "SELECT count(*) FROM api_tokens") == "denied"
        # ingest creates the readings' day partitions (the owner's table) through the function
        assert conn.execute(sa.text(
            "SELECT ingest_ensure_readings_partitions(DATE '2031-01-01', DATE '2031-01-02')")).scalar() == 2
