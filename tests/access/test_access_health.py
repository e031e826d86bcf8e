"""The health endpoint the container's health check asks: no log-in, no redirect, and 200 only
while the database answers."""

from __future__ import annotations


def test_healthz_answers_without_log_in_while_pages_redirect(access):
    _, app, _ = access
    client = app.server.test_client()
    assert client.get("/status").status_code == 302  # what the old health check accepted
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}


def test_healthz_is_503_when_the_database_is_gone(access, db_url):
    import sqlalchemy as sa

    from apps import AppConfig, create_app

    dead = sa.make_url(db_url).set(host="127.0.0.1", port=9).render_as_string(hide_password=False)
    app = create_app(AppConfig(database_url=dead, kafka_bootstrap="127.0.0.1:9"))
    resp = app.server.test_client().get("/healthz")
    assert resp.status_code == 503 and resp.get_json()["status"] == "unavailable"
