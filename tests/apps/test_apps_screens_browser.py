"""The screens in headless Chromium (issue 14). The walls at 1920x1080, "readable across a room":
no panel whose content is cut off at the bottom,
no visible text under 18 px, no user bar, region names on the map that do not overlap, the map
filling its panel; on the desk view the selected theme chip looks selected; the admin pages
(/audit, /catalogue, /quality, /status) share the views' header, user bar, font and China time;
the header's search finds sensors, cameras, places and alerts of the caller's region only, audited."""

import pytest

from tests.apps.test_apps_browser import (  # noqa: F401  (fixtures)
    browser,
    insert_open_alert,
    server,
    sign_in,
    wait_for,
)

pytestmark = pytest.mark.integration

# Every visible text node inside the viewport: [font px, tag, text] (SVG text of the plots too).
_VISIBLE_TEXT = """
const out = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
let n;
while ((n = walker.nextNode())) {
  if (!n.textContent.trim()) continue;
  const el = n.parentElement, r = el.getBoundingClientRect(), cs = getComputedStyle(el);
  if (!r.width || !r.height || cs.visibility === 'hidden' || el.closest('[hidden]')) continue;
  if (r.bottom <= 0 || r.top >= innerHeight || r.right <= 0 || r.left >= innerWidth) continue;
  if (!el.checkVisibility()) continue;
  out.push([parseFloat(cs.fontSize), el.tagName, n.textContent.trim().slice(0, 20)]);
}
return out;"""

# Panels whose content does not fit: [panel, what, its bottom or scroll height, the panel's]
_OVERFLOWING = """
const bad = [];
for (const p of document.querySelectorAll('.wall .panel')) {
  const box = p.getBoundingClientRect();
  if (p.scrollHeight > p.clientHeight + 1) bad.push([p.className, 'scrolls', p.scrollHeight, p.clientHeight]);
  for (const el of p.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.height && r.bottom > box.bottom + 1) {
      bad.push([p.className, el.tagName + ' ' + el.textContent.slice(0, 20), r.bottom, box.bottom]); break; }
  }
}
return bad;"""

_MAP_LABELS = """
return [...document.querySelectorAll(arguments[0] + ' .scattergeo text')].map(t => {
  const r = t.getBoundingClientRect(); return [t.textContent, r.left, r.top, r.right, r.bottom]; });"""


@pytest.fixture
def wall_viewport(browser):  # noqa: F811
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False})
    try:
        yield browser
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _overlaps(labels):
    return [(a[0], b[0]) for i, a in enumerate(labels) for b in labels[i + 1:]
            if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]]


@pytest.mark.parametrize("path, page, min_names", [("/province/440000", "province", 15),
                                                   ("/city/440100", "city", 8),
                                                   ("/county/440106", "county", 0)])
def test_wall_is_readable_across_the_room(server, wall_viewport, path, page, min_names):  # noqa: F811
    base, url = server
    driver = wall_viewport
    sign_in(driver, base, url)
    driver.get(base + path + "?screen=wall&t=-6")  # a wall has no replay: ?t= changes nothing
    wait_for(driver, lambda d: d.find_elements("css selector", f"#{page}-map .js-plotly-plot .main-svg"),
             what="the wall's map")
    if min_names:
        wait_for(driver, lambda d: len(d.execute_script(_MAP_LABELS, f"#{page}-map")) >= min_names,
                 what="the region names on the map")
    wait_for(driver, lambda d: d.find_elements("css selector", ".wall .panel-trend .main-svg"), what="the trend")
    texts = driver.execute_script(_VISIBLE_TEXT)
    assert len(texts) > 50  # the wall is on screen
    small = [t for t in texts if t[0] < 18]
    assert not small, small[:10]
    # every panel's content fits its box (rankings, ticker, tables): nothing cut off at the bottom
    assert not driver.execute_script(_OVERFLOWING), driver.execute_script(_OVERFLOWING)
    assert "点击地图" not in driver.find_element("tag name", "body").text  # nobody clicks a wall
    # no user bar on the wall: nobody logs in or out on the room's screen
    assert not driver.find_element("id", "access-user").is_displayed()
    assert "退出" not in driver.find_element("tag name", "body").text
    if min_names:
        labels = driver.execute_script(_MAP_LABELS, f"#{page}-map")
        assert not _overlaps(labels), _overlaps(labels)
    # the map fills its panel: the drawn regions span (almost) its full height or width
    graph = driver.find_element("css selector", f"#{page}-map .js-plotly-plot").rect
    drawn = driver.find_element("css selector", f"#{page}-map .choroplethlayer").rect
    assert drawn["height"] >= 0.9 * graph["height"] or drawn["width"] >= 0.9 * graph["width"], (graph, drawn)


def test_the_selected_theme_chip_looks_selected(server, browser):  # noqa: F811
    base, url = server
    sign_in(browser, base, url)
    browser.get(base + "/province/440000?theme=flood")
    chips = wait_for(browser, lambda d: d.find_elements("css selector", "#province-theme .theme-tab"),
                     what="the theme chips")
    colours = {c.text: c.value_of_css_property("background-color") for c in chips}
    picked = colours.pop("防汛排涝")
    assert colours and all(bg != picked for bg in colours.values()), (picked, colours)


def test_admin_pages_share_the_header_font_and_china_time(server, browser):  # noqa: F811
    from datetime import datetime
    from zoneinfo import ZoneInfo

    import sqlalchemy as sa

    from tongguan.db import engine_for

    base, url = server
    sign_in(browser, base, url)  # an admin
    browser.get(base + "/province/440000")
    wait_for(browser, lambda d: d.find_element("id", "access-user").is_displayed(), what="the view's user bar")
    font = browser.execute_script("return getComputedStyle(document.body).fontFamily")
    bar = browser.find_element("id", "access-user-name").text
    for path in ("/audit", "/catalogue", "/quality/440000", "/status"):
        browser.get(base + path)
        wait_for(browser, lambda d: d.find_element("id", "brand").text == "统管 tongguan", what=f"{path}'s header")
        assert browser.find_element("id", "access-user-name").text == bar, path  # the same user bar
        assert browser.find_element("id", "access-logout").is_displayed(), path
        assert browser.execute_script("return getComputedStyle(document.body).fontFamily") == font, path
    browser.get(base + "/audit?actor=e2e-admin")
    first = wait_for(browser, lambda d: d.find_element("css selector", "#audit-table tbody tr td").text,
                     what="the audit log")
    with engine_for(url).connect() as conn:
        stamps = conn.execute(sa.text("SELECT ts FROM audit_log WHERE actor = 'e2e-admin' ORDER BY ts DESC, id DESC "
                                      "LIMIT 5")).scalars().all()
    china = [ts.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S") for ts in stamps]
    assert first in china, (first, china)  # China Standard Time, not the server's UTC
    assert abs((datetime.strptime(first, "%Y-%m-%d %H:%M:%S")
                - datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)).total_seconds()) < 600


def test_header_search_finds_only_the_callers_region_and_is_audited(server, browser):  # noqa: F811
    from selenium.webdriver.common.keys import Keys

    import sqlalchemy as sa

    from tongguan.db import engine_for

    base, url = server
    sign_in(browser, base, url, user="e2e-tianhe", home="440106")
    for aid, adcode in (("e2e-search-th", "440106"), ("e2e-search-yx", "440104")):
        insert_open_alert(url, aid, "搜索测试预警", level="orange", subject="sensor:search", adcode=adcode)
    browser.get(base + "/county/440106")
    box = wait_for(browser, lambda d: d.find_element("id", "search-q"), what="the header's search box")
    box.send_keys("e2e-search", Keys.ENTER)
    wait_for(browser, lambda d: "/search?q=e2e-search" in d.current_url, what="the results page")
    found = wait_for(browser, lambda d: d.find_element("id", "search-alerts").text, what="the alerts found")
    assert "e2e-search-th" in found and "e2e-search-yx" not in found  # Yuexiu is not Tianhe's
    # the box keeps the query on its results page (to refine it), in the page's language
    wait_for(browser, lambda d: d.find_element("id", "search-q").get_attribute("value") == "e2e-search",
             what="the query kept in the box")
    browser.get(base + "/search?q=s-440106")
    sensors = wait_for(browser, lambda d: d.find_elements("css selector", "#search-sensors tbody tr"), what="sensors")
    assert sensors and all("s-440106" in r.text for r in sensors)
    link = sensors[0].find_element("tag name", "a").get_attribute("href")
    assert "/county/440106?" in link and "sensor=s-440106" in link  # to the sensor on its county's map
    browser.get(base + "/search?q=s-440104")  # another county's sensors: nothing
    wait_for(browser, lambda d: d.find_element("id", "search-sensors-none"), what="no sensors outside Tianhe")
    browser.get(base + "/search?q=天河&lang=en")
    places = wait_for(browser, lambda d: d.find_element("id", "search-places").text, what="places")
    assert "Tianhe" in places
    box = browser.find_element("id", "search-q")
    assert box.get_attribute("value") == "天河" and box.get_attribute("placeholder").startswith("Search")
    box.send_keys("区", Keys.ENTER)  # searching again stays in English
    wait_for(browser, lambda d: "lang=en" in d.current_url and "q=%E5%A4%A9%E6%B2%B3%E5%8C%BA" in d.current_url,
             what="the second search, in English")
    wait_for(browser, lambda d: "Results for “天河区”" in d.find_element("tag name", "body").text,
             what="its results, in English")
    with engine_for(url).connect() as conn:
        searched = conn.execute(sa.text("SELECT target FROM audit_log WHERE actor = 'e2e-tianhe' AND action = 'search' "
                                        "ORDER BY id")).scalars().all()
    assert {"e2e-search", "s-440106", "s-440104", "天河", "天河区"} <= set(searched)  # each search audited as a read
