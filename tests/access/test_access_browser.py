"""In headless Chromium: each demo user logs in on the /login page and lands on their own
region; the Tianhe operator is refused Yuexiu and Guangzhou, also by client-side navigation."""

from __future__ import annotations

import threading
import time

import pytest

from tests.access.conftest import DEMO_PASSWORD

pytestmark = pytest.mark.integration

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,900")


def _wait(driver, cond, what: str, timeout: float = 30.0):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            v = cond(driver)
            if v:
                return v
        except Exception as exc:  # not rendered yet
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} ({last}); url={driver.current_url}")


@pytest.fixture
def served(access):
    from werkzeug.serving import make_server

    from tongguan.services import free_port

    engine, app, _ = access
    srv = make_server("127.0.0.1", free_port(), app.server, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}", engine
    finally:
        srv.shutdown()


@pytest.fixture
def chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for f in FLAGS:
        opts.add_argument(f)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _login(driver, base: str, username: str) -> None:
    if driver.current_url.startswith(base):  # log the previous user out (POST with its CSRF token)
        driver.get(base + "/logout")
        driver.find_element("id", "logout-submit").click()
        _wait(driver, lambda d: "/login" in d.current_url, "log-out")
    driver.get(base + "/")
    _wait(driver, lambda d: "/login" in d.current_url, "the log-in page")
    assert "登录" in driver.page_source and "Log in" in driver.page_source
    driver.find_element("name", "username").send_keys(username)
    driver.find_element("name", "password").send_keys(DEMO_PASSWORD)
    driver.find_element("id", "login-submit").click()
    _wait(driver, lambda d: "/login" not in d.current_url, "log-in")


def test_demo_users_in_the_browser(served, chrome):
    base, engine = served
    for user, home in (("gd-admin", "/province/440000"), ("gz-operator", "/city/440100"),
                       ("tianhe-operator", "/county/440106")):
        _login(chrome, base, user)
        _wait(chrome, lambda d: d.current_url.endswith(home), f"{user} lands on {home}")
        _wait(chrome, lambda d: d.find_element("id", "_pages_content").text.strip(), f"{home} renders")
        assert chrome.find_element("id", "access-user-name").text.startswith(user)
        assert bool(chrome.find_elements("link text", "审计 Audit")) == (user == "gd-admin")
    # Still the Tianhe operator: typing another region's address is refused by the server …
    chrome.get(base + "/county/440104")
    assert "不在您的权限范围内" in _wait(chrome, lambda d: d.find_element("id", "forbidden-message").text,
                                          "the refusal")
    # … and so is client-side navigation (Dash's router callback answers 403: no content).
    chrome.get(base + "/county/440106")
    _wait(chrome, lambda d: d.find_element("id", "_pages_content").text.strip(), "own county")
    chrome.execute_script("window.history.pushState({}, '', '/city/440100');"
                          "window.dispatchEvent(new CustomEvent('_dashprivate_pushstate'));")
    time.sleep(2)
    from apps import audit

    rows, _ = audit.query(engine, actor="tianhe-operator", action="view_region")
    seen = {(r["region"], r["outcome"]) for r in rows}
    assert ("440104", "denied") in seen and ("440106", "ok") in seen and ("440100", "denied") in seen
