"""In headless Chromium (issue 14 items 2 and 5): an alert raised while a page is open appears
without reload on the county view, the /alerts list (the selection stays on the alerts the
user picked), the inbox and the province wall's alert table and ranking; the rotating wall of
the Guangzhou operator moves through Guangzhou and its districts only, as walls, the address
and the screen agreeing."""

import pytest
import sqlalchemy as sa

from tests.apps.test_apps_browser import browser, server, sign_in, wait_for  # noqa: F401  (fixtures)
from tongguan.db import engine_for

pytestmark = pytest.mark.integration


def _raise(url, aid, title, *, county="440106", city="440100", level="red"):
    with engine_for(url).begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, subject, adcode, city, province, "
            "first_seen, last_seen, status) VALUES (:id, :id, 'rule:test', :lv, 'flood', :t, 'sensor:x', :c, "
            ":city, '440000', now(), now(), 'open')"),
            {"id": aid, "lv": level, "t": title, "c": county, "city": city})


def _mark(driver):
    """Set a flag a reload would lose."""
    driver.execute_script("window.__same_page = true;")


def _same_page(driver) -> bool:
    return driver.execute_script("return window.__same_page === true;")


def test_county_view_shows_a_new_alert_without_reload(server, browser):  # noqa: F811
    base, url = server
    sign_in(browser, base, url, user="e2e-tianhe", home="440106")
    browser.get(base + "/county/440106")
    wait_for(browser, lambda d: d.find_element("id", "county-alerts"), what="the county's alerts")
    _mark(browser)
    _raise(url, "e2e-live-county", "区县实时测试预警")
    row = wait_for(browser, lambda d: d.find_element("id", "county-alert-row-e2e-live-county"), timeout=15,
                   what="the new alert in the county table")
    assert "区县实时测试预警" in row.text and "待处置" in row.text
    assert row.find_elements("css selector", ".action-ack")  # with its handling buttons
    assert _same_page(browser)


def test_alerts_list_updates_live_and_keeps_the_selection(server, browser):  # noqa: F811
    base, url = server
    sign_in(browser, base, url)
    browser.get(base + "/alerts")
    wait_for(browser, lambda d: d.find_elements("css selector", "#alerts-table td input[type=checkbox]"),
             what="the alerts table")
    picked_title = browser.find_element("css selector", "#alerts-table tbody tr:nth-child(2) td[data-dash-column=title]").text
    browser.find_element("css selector", "#alerts-table tbody tr:nth-child(2) td input[type=checkbox]").click()
    wait_for(browser, lambda d: "1" in d.find_element("id", "alerts-count").text, what="one selected")
    _mark(browser)
    _raise(url, "e2e-live-list", "列表实时测试预警")
    wait_for(browser, lambda d: "列表实时测试预警" in d.find_element("id", "alerts-table").text, timeout=15,
             what="the new alert in the list")
    checked = browser.find_elements("css selector", "#alerts-table tbody tr:has(input[type=checkbox]:checked) "
                                                    "td[data-dash-column=title]")
    assert [c.text for c in checked] == [picked_title]  # the selection stayed on the alert picked
    assert _same_page(browser)


def test_inbox_shows_a_delivered_message_without_reload(server, browser):  # noqa: F811
    base, url = server
    sign_in(browser, base, url)
    browser.get(base + "/subscriptions")
    wait_for(browser, lambda d: d.find_element("id", "inbox-list"), what="the inbox")
    _mark(browser)
    _raise(url, "e2e-live-inbox", "收件箱实时测试预警")
    with engine_for(url).begin() as conn:
        sub = conn.execute(sa.text(
            "INSERT INTO subscriptions (name, owner, adcode, channels) VALUES ('e2e', 'e2e-admin', '440000', "
            "'{inbox}') RETURNING id")).scalar()
        conn.execute(sa.text(
            "INSERT INTO inbox_messages (delivery_key, subscription_id, recipient, title, body, alert_ids, alert_id, "
            "top_level) VALUES ('e2e-live-inbox', :s, 'e2e-admin', '收件箱实时测试预警', '正文', "
            "ARRAY['e2e-live-inbox'], 'e2e-live-inbox', 'red')"), {"s": sub})
    wait_for(browser, lambda d: "收件箱实时测试预警" in d.find_element("id", "inbox-list").text, timeout=15,
             what="the delivered message in the inbox")
    link = browser.find_element("css selector", "#inbox-list .inbox-alert-link")
    assert link.get_attribute("href").endswith("/alert/e2e-live-inbox")
    assert _same_page(browser)


def test_province_wall_tables_update_without_reload(server, browser):  # noqa: F811
    base, url = server
    sign_in(browser, base, url)
    with engine_for(url).connect() as conn:  # a city with nothing open: its ranking row will change
        quiet = conn.execute(sa.text(
            "SELECT adcode FROM regions WHERE parent = '440000' AND adcode NOT IN "
            "(SELECT city FROM alerts WHERE status IN ('open', 'acknowledged', 'dispatched')) ORDER BY adcode LIMIT 1"
        )).scalar().strip()
        county = conn.execute(sa.text("SELECT adcode FROM regions WHERE parent = :c ORDER BY adcode LIMIT 1"),
                              {"c": quiet}).scalar().strip()
    browser.get(base + "/province/440000?screen=wall")
    row = wait_for(browser, lambda d: d.find_element("id", f"province-rank-{quiet}"), what="the wall's ranking")
    assert "正常" in row.find_element("xpath", "../..").text
    _mark(browser)
    _raise(url, "e2e-live-wall", "大屏实时测试预警", county=county, city=quiet)
    wait_for(browser, lambda d: "大屏实时测试预警" in d.find_element("css selector", ".wall .panel-alerts").text,
             timeout=15, what="the new alert in the wall's table")
    wait_for(browser, lambda d: "红色" in d.find_element("id", f"province-rank-{quiet}").find_element(
        "xpath", "../..").text, timeout=15, what="the city's ranking row red, as its map colour")
    assert _same_page(browser)


def _shown_region(driver, url) -> tuple[str, bool]:
    """(the adcode in the address, whether the wall on screen is that region's)."""
    here = driver.current_url
    adcode = here.split("?")[0].rstrip("/").rsplit("/", 1)[1]
    with engine_for(url).connect() as conn:
        name = conn.execute(sa.text("SELECT name FROM regions WHERE adcode = :a"), {"a": adcode}).scalar()
    subtitle = driver.find_element("css selector", ".wall .wall-subtitle").text
    return adcode, bool(name) and subtitle.startswith(name)


def test_rotating_wall_of_the_city_operator_stays_in_guangzhou(server, browser):  # noqa: F811
    base, url = server
    sign_in(browser, base, url, user="e2e-gz", home="440100")
    browser.get(base + "/city/440100?screen=wall&rotate=10")
    seen = []
    previous = None
    for _ in range(3):
        wait_for(browser, lambda d, prev=previous: d.current_url != prev and d.find_elements(
            "css selector", ".wall .wall-subtitle"), timeout=30, what="the wall (moving on)")
        previous = browser.current_url
        assert "screen=wall" in previous and "rotate=10" in previous, previous
        # the screen shows the region the address names, as a wall (no error page, no other city)
        adcode, agrees = wait_for(browser, lambda d: (r := _shown_region(d, url))[1] and r, timeout=15,
                                  what=f"the screen showing the region of {browser.current_url}")
        assert adcode.startswith("4401"), previous  # Guangzhou or one of its districts, never another city
        seen.append(adcode)
    assert len(set(seen)) >= 2 and any(a != "440100" for a in seen)  # it did move, to Guangzhou's districts


def _map_z(driver, graph: str, adcode: str):
    """The colour value (apps.maps.level_z) the map in ``graph`` shows for ``adcode`` now."""
    return driver.execute_script(
        f"const g = document.querySelector('#{graph} .js-plotly-plot');"
        "if (!g || !g.data) return null; const i = g.data[0].locations.indexOf(arguments[0]);"
        "return i < 0 ? null : g.data[0].z[i];", adcode)


def test_map_replay_holds_the_chosen_hour_through_live_ticks(server, browser):  # noqa: F811
    """The 24 h slider shows an earlier hour: an alert raised meanwhile does not recolour the map
    on the live ticks; back at "now" the map is live again."""
    import time

    from selenium.webdriver.common.keys import Keys

    base, url = server
    sign_in(browser, base, url)
    with engine_for(url).connect() as conn:  # two cities with nothing open (their colour will change)
        quiet = [c.strip() for c in conn.execute(sa.text(
            "SELECT adcode FROM regions WHERE parent = '440000' AND adcode NOT IN "
            "(SELECT city FROM alerts WHERE status IN ('open', 'acknowledged', 'dispatched')) ORDER BY adcode DESC "
            "LIMIT 2")).scalars()]
        counties = [conn.execute(sa.text("SELECT adcode FROM regions WHERE parent = :c ORDER BY adcode LIMIT 1"),
                                 {"c": c}).scalar().strip() for c in quiet]
    browser.get(base + "/province/440000")
    wait_for(browser, lambda d: _map_z(d, "province-map", quiet[0]) == 0.5, what="the quiet city uncoloured")
    thumb = browser.find_element("css selector", "#province-replay-bar [role=slider]")
    thumb.send_keys(Keys.HOME)  # 24 hours ago
    at = wait_for(browser, lambda d: (s := d.find_element("id", "province-replay-at").text) != "现在" and s,
                  what="the map showing an earlier hour")
    then = _map_z(browser, "province-map", quiet[0])
    _mark(browser)
    _raise(url, "e2e-replay-held", "回放期间新预警", county=counties[0], city=quiet[0])
    time.sleep(5)  # more than two live ticks (2 s)
    assert browser.find_element("id", "province-replay-at").text == at
    assert _map_z(browser, "province-map", quiet[0]) == then != 4.5  # still the chosen hour, not live red
    thumb.send_keys(Keys.END)  # back to now: the present, and live again
    wait_for(browser, lambda d: _map_z(d, "province-map", quiet[0]) == 4.5, timeout=10, what="the present drawn")
    assert browser.find_element("id", "province-replay-at").text == "现在"
    _raise(url, "e2e-replay-live", "回放结束后新预警", county=counties[1], city=quiet[1])
    wait_for(browser, lambda d: _map_z(d, "province-map", quiet[1]) == 4.5, timeout=15, what="a live recolour")
    assert _same_page(browser)
