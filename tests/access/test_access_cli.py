"""``tongguan users``, ``tongguan tokens`` and ``tongguan audit`` against a real database; the
migration's downgrade; the rate limits."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.access.conftest import csrf_of, token_for

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(settings, monkeypatch):
    from tongguan.cli import main
    from tongguan.settings import get_settings

    monkeypatch.setenv("TONGGUAN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TONGGUAN_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("TONGGUAN_TOPIC_PREFIX", settings.topic_prefix)
    get_settings.cache_clear()
    yield main
    get_settings.cache_clear()


def test_users_tokens_audit_cli(cli, engine, capsys, monkeypatch):
    from apps.errors import AccessError
    from apps.identity import authenticate, scope_for_token

    monkeypatch.setenv("NEW_PW", "a-long-password-1")
    assert cli(["users", "add", "th-viewer", "--region", "440106", "--roles", "viewer",
                "--password-env", "NEW_PW"]) == 0
    assert cli(["users", "add", "bad", "--region", "999999", "--password-env", "NEW_PW"]) == 1
    assert "unknown region" in capsys.readouterr().err
    assert cli(["users", "add", "x2", "--region", "440106", "--roles", "root", "--password-env", "NEW_PW"]) == 1
    assert cli(["users", "list", "--region", "440100"]) == 0
    assert "th-viewer" in capsys.readouterr().out
    scope, _ = authenticate(engine, "th-viewer", "a-long-password-1")
    assert scope.home == "440106" and scope.roles == {"viewer"}
    assert cli(["users", "reset-password", "th-viewer", "--generate"]) == 0
    new_pw = capsys.readouterr().out.strip().rsplit(": ", 1)[1]
    authenticate(engine, "th-viewer", new_pw)
    assert cli(["tokens", "create", "th-viewer", "--name", "12345"]) == 0
    out = capsys.readouterr().out.splitlines()
    token, token_id = out[-1], int(out[0].split()[1])
    assert scope_for_token(engine, token).username == "th-viewer"
    assert cli(["tokens", "revoke", str(token_id)]) == 0
    with pytest.raises(AccessError):
        scope_for_token(engine, token)
    assert cli(["users", "disable", "th-viewer"]) == 0
    with pytest.raises(AccessError):
        authenticate(engine, "th-viewer", new_pw)
    assert cli(["users", "demo"]) == 0
    assert "tianhe-operator" in capsys.readouterr().out
    assert cli(["audit", "--as", "tianhe-operator"]) == 1  # operators are not admins
    capsys.readouterr()
    assert cli(["audit", "--region", "440106", "--limit", "100"]) == 0
    text = capsys.readouterr().out
    for action in ("user_add", "login", "login_failed", "user_reset_password", "token_create", "token_revoke",
                   "user_disable"):
        assert f" {action} " in text, action


def test_migration_downgrades_and_upgrades(db_url, engine):
    from alembic import command

    from tongguan.db import alembic_config

    command.downgrade(alembic_config(db_url), "0005")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('audit_log')")).scalar() is None
        assert not conn.execute(sa.text("SELECT relrowsecurity FROM pg_class WHERE relname = 'alerts'")).scalar()
    engine.dispose()
    command.upgrade(alembic_config(db_url), "head")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT relrowsecurity FROM pg_class WHERE relname = 'alerts'")).scalar()


def test_rate_limits_answer_429(access):
    engine, app, _ = access
    app.server.config.update(TONGGUAN_LOGIN_RATE="3 per minute", TONGGUAN_API_RATE="5 per minute")
    client = app.server.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))
    codes = [client.post("/login", data={"username": "nobody", "password": "x" * 12, "csrf_token": token}).status_code
             for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    h = token_for(engine, "gz-operator")
    codes = [client.get("/api/v1/me", headers=h).status_code for _ in range(6)]
    assert codes[:5] == [200] * 5 and codes[5] == 429
    r = client.get("/api/v1/me", headers=h)
    assert r.get_json()["error"]["code"] == "rate_limited"
