"""End-to-end in headless Chromium: drill down province → city → county by clicking the maps,
the breadcrumb back up, and the live ticker updating without reload."""

import threading
import time

import pytest
import sqlalchemy as sa

from tongguan.db import engine_for
from tongguan.services import free_port

pytestmark = pytest.mark.integration

CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1600,1000")


@pytest.fixture(scope="module")
def server(seeded, services):
    from werkzeug.serving import make_server

    from apps.app import AppConfig, create_app

    app = create_app(AppConfig(database_url=seeded[0], kafka_bootstrap=services.kafka_bootstrap))
    port = free_port()
    srv = make_server("127.0.0.1", port, app.server, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", seeded[0]
    finally:
        srv.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def insert_open_alert(db_url: str, aid: str, title: str, *, level: str, subject: str,
                      adcode: str = "440106", theme: str = "flood") -> None:
    """An open alert of ``adcode`` (in Guangzhou) seen now, its id as its dedupe key."""
    with engine_for(db_url).begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, subject, adcode, city, province, "
            "first_seen, last_seen, status) VALUES (:id, :id, 'rule:test', :lv, :th, :title, :subj, :ad, "
            "'440100', '440000', now(), now(), 'open')"),
            {"id": aid, "lv": level, "th": theme, "title": title, "subj": subject, "ad": adcode})


def sign_in(driver, base: str, db_url: str, user: str = "e2e-admin", home: str = "440000"):
    """Log in (as an operator of ``home``) when the app asks for it: the access layer guards
    every page and lets only the owning region's operators handle an alert."""
    if _signed_in.get(id(driver)) not in (None, user):
        driver.delete_all_cookies()  # switch user
    driver.get(base + "/")
    if "/login" not in driver.current_url:
        return
    from apps import identity

    eng = engine_for(db_url)
    if identity.get_user(eng, user) is None:
        identity.add_user(eng, user, "e2e-password-123", home=home, roles=("admin", "operator"))
    driver.find_element("name", "username").send_keys(user)
    driver.find_element("name", "password").send_keys("e2e-password-123")
    driver.find_element("css selector", "form [type=submit]").click()
    wait_for(driver, lambda d: "/login" not in d.current_url, what="log-in")
    _signed_in[id(driver)] = user


_signed_in: dict = {}


def wait_for(driver, condition, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = condition(driver)
            if value:
                return value
        except Exception as exc:  # element not there yet
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last error: {last}); url={driver.current_url}")


def click_region(driver, graph_id: str, adcode: str):
    """Click a region of a plotly choropleth like a person would (on its drawn path)."""
    from selenium.webdriver.common.action_chains import ActionChains

    codes = wait_for(driver, lambda d: d.execute_script(
        f"const g = document.querySelector('#{graph_id} .js-plotly-plot');"
        "return g && g.data && g.data[0].locations;"), what=f"{graph_id} drawn")
    index = list(codes).index(adcode)
    paths = wait_for(driver, lambda d: d.find_elements(
        "css selector", f"#{graph_id} path.choroplethlocation"), what="map paths")
    ActionChains(driver).move_to_element(paths[index]).click().perform()


def test_drill_down_by_clicking_and_back_up(server, browser):
    base, url = server
    sign_in(browser, base, url)
    browser.get(base + "/")
    wait_for(browser, lambda d: d.current_url.endswith("/province/440000"), what="redirect to the province")
    wait_for(browser, lambda d: d.find_element("id", "breadcrumb-current").text == "广东省", what="province page")
    assert browser.find_element("id", "province-ranking").text  # the ranking lists the cities

    click_region(browser, "province-map", "440100")
    wait_for(browser, lambda d: "/city/440100" in d.current_url, what="city view after the click")
    wait_for(browser, lambda d: d.find_element("id", "breadcrumb-current").text == "广州市", what="city page")
    assert browser.find_element("id", "crumb-440000").text == "广东省"
    assert len(browser.find_elements("css selector", "#city-vitals .vital")) >= 6

    click_region(browser, "city-map", "440106")
    wait_for(browser, lambda d: "/county/440106" in d.current_url, what="county view after the click")
    wait_for(browser, lambda d: d.find_element("id", "breadcrumb-current").text == "天河区", what="county page")
    crumbs = browser.find_element("id", "breadcrumb").text
    assert "广东省" in crumbs and "广州市" in crumbs

    browser.back()
    wait_for(browser, lambda d: "/city/440100" in d.current_url, what="back button to the city")
    wait_for(browser, lambda d: d.find_element("id", "breadcrumb-current").text == "广州市", what="city after back")
    browser.find_element("id", "crumb-440000").click()
    wait_for(browser, lambda d: d.current_url.endswith("/province/440000"), what="breadcrumb up to the province")


def test_theme_and_language_travel_in_the_link(server, browser):
    base, url = server
    sign_in(browser, base, url)
    browser.get(base + "/province/440000?theme=flood&lang=en")
    wait_for(browser, lambda d: d.find_element("id", "breadcrumb-current").text == "Guangdong", what="English page")
    click_region(browser, "province-map", "440300")
    wait_for(browser, lambda d: "/city/440300?theme=flood&lang=en" in d.current_url, what="link keeps theme and lang")
    wait_for(browser, lambda d: d.find_element("id", "breadcrumb-current").text == "Shenzhen", what="Shenzhen page")


def test_ticker_shows_a_new_alert_without_reload(server, browser):
    base, url = server
    sign_in(browser, base, url)
    browser.get(base + "/province/440000")
    wait_for(browser, lambda d: d.find_element("id", "province-ticker"), what="ticker")
    browser.execute_script("window.__same_page = true;")
    with engine_for(url).begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, subject, adcode, city, province, "
            "first_seen, last_seen, status) VALUES ('e2e-live', 'e2e-live', 'rule:test', 'red', 'flood', "
            "'浏览器实时测试', 'sensor:x', '440106', '440100', '440000', now(), now(), 'open')"))
    wait_for(browser, lambda d: "浏览器实时测试" in d.find_element("id", "province-ticker").text,
             timeout=15, what="the new alert in the ticker")
    assert browser.execute_script("return window.__same_page === true;")  # no reload happened

    # the ticker line opens the county view on that alert
    tick = browser.find_element("css selector", '#province-ticker [id*="e2e-live"] a')
    tick.click()
    wait_for(browser, lambda d: "/county/440106" in d.current_url and "alert=e2e-live" in d.current_url,
             what="county view of the alert")
    row = wait_for(browser, lambda d: d.find_element("id", "county-alert-row-e2e-live"), what="the alert's row")
    assert "alert-focus" in row.get_attribute("class")


def test_county_sensor_series_and_acknowledge_an_alert(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains

    base, url = server
    sign_in(browser, base, url, user="e2e-tianhe", home="440106")  # the county's own operator
    insert_open_alert(url, "e2e-ack", "待确认测试预警", level="orange", subject="sensor:x")
    browser.get(base + "/county/440106")
    wait_for(browser, lambda d: d.find_element("id", "breadcrumb-current").text == "天河区", what="county page")

    # a sensor on the map: the last scattergeo trace holds the sensors
    points = wait_for(browser, lambda d: d.find_elements(
        "css selector", "#county-map .scattergeo:last-of-type path.point"), what="sensor markers")
    ActionChains(browser).move_to_element(points[0]).click().perform()
    wait_for(browser, lambda d: d.find_element("id", "county-series-graph"), what="the sensor's series")
    # issue 14: the pick is in the address, so the view can be shared
    shared = wait_for(browser, lambda d: "sensor=" in d.current_url and d.current_url, what="?sensor= in the address")
    assert "/county/440106?sensor=" in shared, shared

    row = wait_for(browser, lambda d: d.find_element("id", "county-alert-row-e2e-ack"), what="alert row")
    assert "待处置" in row.text
    row.find_element("css selector", ".action-ack").click()
    result = wait_for(browser, lambda d: d.find_element("id", "county-action-result").text, what="action result")
    assert "已处理" in result, result
    wait_for(browser, lambda d: "已签收" in d.find_element("id", "county-alert-row-e2e-ack").text,
             what="the alert shown as acknowledged")
    with engine_for(url).connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM alerts WHERE id = 'e2e-ack'")).scalar() == "acknowledged"
        actors = conn.execute(sa.text("SELECT actor FROM alert_history WHERE alert_id = 'e2e-ack'")).scalars().all()
    assert "e2e-tianhe" in actors  # the signed-in user, recorded by the lifecycle


def test_a_refused_action_is_said_in_chinese_without_cli_flags(server, browser):
    """Issue 14: a refused action is said in the page's language (it was the lifecycle's English,
    naming --note); nothing changes. The table offers only what a status leaves, so the refusal
    here is one only the lifecycle knows: reopening a closed alert after the reopen window."""
    import re

    base, url = server
    sign_in(browser, base, url, user="e2e-tianhe", home="440106")
    insert_open_alert(url, "e2e-refuse", "拒绝测试预警", level="yellow", subject="sensor:refuse")
    with engine_for(url).begin() as conn:
        conn.execute(sa.text("UPDATE alerts SET status = 'closed' WHERE id = 'e2e-refuse'"))
        conn.execute(sa.text("UPDATE alert_handling SET resolved_at = now() - interval '1 day', "
                             "closed_at = now() - interval '1 day' WHERE alert_id = 'e2e-refuse'"))
    browser.get(base + "/county/440106")
    row = wait_for(browser, lambda d: d.find_element("id", "county-alert-row-e2e-refuse"), what="alert row")
    assert not row.find_elements("css selector", ".action-close")  # closed: only reopen is offered
    row.find_element("css selector", ".action-reopen").click()
    said = wait_for(browser, lambda d: d.find_element("id", "county-action-error").text, what="the refusal")
    assert "无法重新打开" in said and "时限" in said, said
    # no English, no command-line flag (the time's zone, "(UTC+8)", as everywhere on the pages)
    assert not re.search(r"[A-Za-z]{3}|--", said.replace("(UTC+8)", "")), said
    with engine_for(url).connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM alerts WHERE id = 'e2e-refuse'")).scalar() == "closed"
