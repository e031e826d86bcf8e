"""Issue 13 item 1: no server-side request forgery through webhook subscriptions. Validation when
a subscription is saved (analytics, the web form, the API), the notifier's and test delivery's
sends (checked again at connect time), no redirects, generic outcomes, rate-limited tests."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from analytics.alerting.config import AlertingConfig
from analytics.alerting.notifier import Notifier
from analytics.alerting.subscriptions import add_subscription
from apps.errors import AccessError
from apps.scope import Scope, scoped
from tongguan import TongguanError, netguard
from tongguan.netguard import NO_ANSWER, REFUSED, UnsafeURL, check_url, parse_allow

pytestmark = pytest.mark.integration

CFG = AlertingConfig(group_wait=0.0, group_interval=60.0, retry_max_attempts=1, retry_base=1.0,
                     retry_max_backoff=10.0, webhook_timeout=2.0)


class Listener:
    """A real HTTP server on 127.0.0.1 counting what reaches it; answers ``status`` (and a
    ``Location`` when it is a redirect)."""

    def __init__(self, status: int = 200, location: str | None = None):
        outer = self
        self.hits = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.hits += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    r = Listener()
    yield r
    r.close()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{pg}/", "http://localhost:{pg}/", "http://[::1]:{pg}/", "http://0.0.0.0:{pg}/",
    "http://10.1.2.3/", "http://192.168.1.1/x", "http://172.16.0.1/", "http://169.254.169.254/latest/meta-data",
    "http://100.64.0.1/", "http://224.0.0.1/", "http://[fe80::1]/", "http://[::ffff:127.0.0.1]:{pg}/",
    "http://2130706433:{pg}/",  # 127.0.0.1 as one number
    "http://example.org/a\r\nX-Injected: 1", "http://example.org/\t/x", "http://exa mple.org/",
    "ftp://example.org/", "file:///etc/passwd", "http://user:pw@example.org/", "http:///nohost", "",
])
def test_internal_and_malformed_webhook_urls_are_refused_on_save(engine, services, url):
    url = url.format(pg=services.postgres.port)
    with pytest.raises(TongguanError) as err:  # UnsafeURL, or analytics' "needs --webhook-url" for ""
        add_subscription(engine, name="probe", owner="viewer", adcode="440100", channels=["webhook"],
                         webhook_url=url)
    assert str(services.postgres.port) not in str(err.value) and "refused" not in str(err.value).lower()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM subscriptions")).scalar() == 0


def test_the_allow_list_admits_exactly_its_entries(listener):
    assert check_url(listener.url, parse_allow(f"127.0.0.1:{listener.port}")) == listener.url
    assert check_url(listener.url, parse_allow("127.0.0.0/8")) == listener.url
    with pytest.raises(UnsafeURL):
        check_url(listener.url, parse_allow(f"127.0.0.1:{listener.port + 1}"))
    with pytest.raises(UnsafeURL):
        check_url(listener.url, [])


def _deliver(settings, engine, sub_id_url_pairs):
    """Run the notifier on one alert for the subscriptions; the attempts' outcomes."""
    from tests.alerting.conftest import insert_alert

    n = Notifier(settings, engine=engine, config=CFG)
    try:
        t0 = datetime.now(UTC)
        n.step([insert_alert(engine, first_seen=t0)], now=t0)
        n.send_due(now=t0 + timedelta(seconds=1))
    finally:
        n._pool.shutdown()
    with engine.connect() as conn:
        return [r.detail for r in conn.execute(sa.text("SELECT detail FROM delivery_attempts ORDER BY id"))]


def test_the_notifier_refuses_a_stored_internal_url_and_says_nothing_about_the_port(settings, engine, services,
                                                                                  listener):
    # a URL stored before the guard existed (or written straight to the table)
    sub = add_subscription(engine, name="old", owner="x", adcode="440100", channels=["inbox"])
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE subscriptions SET channels = '{webhook}', webhook_url = :u, secret = 's' "
                             "WHERE id = :id"), {"u": listener.url, "id": sub["id"]})
    assert _deliver(settings, engine, None) == [REFUSED]
    assert listener.hits == 0


def test_dns_rebinding_is_caught_at_connect_time(monkeypatch, listener):
    """The name resolves to a public address when checked, to loopback when connecting."""
    real = socket.getaddrinfo
    answers = iter(["93.184.215.14", "127.0.0.1"])

    def rebinding(host, port, *a, **kw):
        if host == "rebind.example":
            return real(next(answers), port, *a, **kw)
        return real(host, port, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = f"http://rebind.example:{listener.port}/hook"
    assert check_url(url, []) == url  # the first answer is public
    answer = netguard.post(url, b"{}", {}, allow=[])
    assert (answer.ok, answer.detail) == (False, REFUSED) and listener.hits == 0


def test_redirects_are_not_followed_and_network_errors_are_generic(listener):
    redirect = Listener(302, location=listener.url)
    try:
        allow = parse_allow("127.0.0.0/8")
        answer = netguard.post(redirect.url, b"{}", {}, allow=allow)
        assert (answer.ok, answer.detail) == (False, "HTTP 302")
        assert redirect.hits == 1 and listener.hits == 0
        with socket.socket() as s:  # a port with nothing listening: no "connection refused" shown
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        answer = netguard.post(f"http://127.0.0.1:{closed}/", b"{}", {}, allow=allow)
        assert (answer.ok, answer.detail) == (False, NO_ANSWER)
        assert netguard.post(listener.url, b"{}", {}, allow=allow).ok and listener.hits == 1
    finally:
        redirect.close()


def test_web_form_and_api_refuse_internal_urls_for_a_viewer(access, services):
    from apps import subscriptions_view as view
    from tests.access.conftest import login, token_for

    engine, app, _ = access
    url = f"http://127.0.0.1:{services.postgres.port}/"
    th = Scope(home="440106", roles=frozenset({"viewer"}), username="tianhe-operator", user_id=None)
    with scoped(th), pytest.raises(UnsafeURL):
        view.save(engine, th, {"name": "probe", "adcode": "440106", "channels": ["webhook"], "webhook_url": url,
                               "themes": [], "min_level": "blue"})
    client = login(app, "tianhe-operator")

    resp = client.post("/api/v1/subscriptions", json={"name": "p", "adcode": "440106", "channels": ["webhook"],
                                                      "webhook_url": url},
                       headers=token_for(engine, "tianhe-operator"))
    assert resp.status_code == 422 and str(services.postgres.port) not in resp.get_data(as_text=True)


def test_test_delivery_is_rate_limited_per_user_across_processes(access):
    from apps import subscriptions_view as view

    engine, _, logins = access
    th = Scope(home="440106", roles=frozenset({"operator", "viewer"}), username="tianhe-operator", user_id=None)
    sub = add_subscription(engine, name="mine", owner="tianhe-operator", adcode="440106", channels=["inbox"])
    with scoped(th):
        for _ in range(view.TEST_DELIVERIES_PER_WINDOW):
            assert view.send_test_delivery(engine, th, sub["id"])[0][1]
        with pytest.raises(AccessError) as err:
            view.send_test_delivery(engine, th, sub["id"])
    assert err.value.status == 429
    with engine.connect() as conn:  # the refusal is audited as one
        assert conn.execute(sa.text("SELECT outcome FROM audit_log WHERE action = 'subscription_test' "
                                    "ORDER BY id DESC LIMIT 1")).scalar() == "denied"
