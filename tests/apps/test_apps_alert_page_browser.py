"""In headless Chromium, the closed loop of an alert escalated from a county, on its own page
(/alert/<id>): the Guangzhou operator takes it over and dispatches it with a unit and a due time,
the Tianhe operator resolves it with a note, the Guangzhou operator verifies and closes it; and
an incident's page lists the repeated alerts of one sensor."""

import pytest
import sqlalchemy as sa

from tests.apps.test_apps_browser import browser, server, sign_in, wait_for  # noqa: F401  (fixtures)
from tongguan.db import engine_for

pytestmark = pytest.mark.integration


def _insert(url, aid, *, subject, status="open", level="red", escalated=True):
    with engine_for(url).begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, subject, adcode, city, province, geom, "
            "first_seen, last_seen, status) VALUES (:id, :id, 'rule:ponding', :lv, 'flood', '闭环测试积水预警', :s, "
            "'440106', '440100', '440000', ST_SetSRID(ST_MakePoint(113.36, 23.12), 4326), now(), now(), :st)"),
            {"id": aid, "lv": level, "s": subject, "st": status})
        if escalated:
            conn.execute(sa.text("UPDATE alert_handling SET visible_at = '440100', escalated_at = now(), "
                                 "escalation_reason = '红色预警立即上报' WHERE alert_id = :id"), {"id": aid})


def _act(driver, action: str, ok_text: str):
    """Click one of the page's action buttons and wait for its confirmation."""
    driver.find_element("css selector", f"#alert-forms .action-{action}").click()
    return wait_for(driver, lambda d: ok_text in d.find_element("id", "alert-result").text,
                    what=f"{action} confirmed (result: {driver.find_element('id', 'alert-result').text!r})")


def test_guangzhou_closes_the_loop_on_an_alert_escalated_from_tianhe(server, browser):  # noqa: F811
    base, url = server
    _insert(url, "e2e-loop", subject="sensor:e2e-loop")
    page = base + "/alert/e2e-loop"

    sign_in(browser, base, url, user="e2e-gz", home="440100")
    browser.get(page)
    wait_for(browser, lambda d: d.find_element("id", "alert-title").text == "闭环测试积水预警", what="alert page")
    assert "广州市" in browser.find_element("id", "alert-facts").text  # escalated to the city
    _act(browser, "take_over", "已接管")
    unit = browser.find_element("id", "alert-unit")
    unit.send_keys("天河区排水所")
    due = browser.find_element("id", "alert-due").get_attribute("value")
    assert len(due) == 16  # a default due time, YYYY-MM-DD HH:MM
    _act(browser, "dispatch", "已派单")
    facts = browser.find_element("id", "alert-facts").text
    assert "天河区排水所" in facts and "已派单" in facts
    wait_for(browser, lambda d: d.execute_script("return document.getElementById('alert-unit').value") == "",
             what="the dispatch form empty again")

    sign_in(browser, base, url, user="e2e-tianhe", home="440106")
    browser.get(page)
    wait_for(browser, lambda d: d.find_element("id", "alert-note"), what="the note box")
    browser.find_element("id", "alert-note").send_keys("泵车排水，积水已退")
    _act(browser, "resolve", "已处置")
    wait_for(browser, lambda d: d.execute_script("return document.getElementById('alert-note').value") == "",
             what="the note box cleared after the action")
    # Resolved: the county may not verify and close what the city dispatched (the form says so).
    browser.find_element("css selector", "#alert-forms .action-close").click()
    wait_for(browser, lambda d: d.find_elements("id", "alert-error"), what="the refusal")

    sign_in(browser, base, url, user="e2e-gz", home="440100")
    browser.get(page)
    wait_for(browser, lambda d: d.find_element("css selector", "#alert-forms .action-close").is_displayed(),
             what="verify-and-close offered to the city")
    browser.find_element("id", "alert-note").send_keys("现场核查无积水")
    _act(browser, "close", "已办结")
    timeline = browser.find_element("id", "alert-timeline").text
    for word in ("接管", "派单", "处置完成", "办结", "e2e-gz", "e2e-tianhe", "泵车排水"):
        assert word in timeline, word
    with engine_for(url).connect() as conn:
        rows = conn.execute(sa.text("SELECT action, actor FROM alert_history WHERE alert_id = 'e2e-loop' "
                                    "ORDER BY ts, id")).all()
        handling = conn.execute(sa.text("SELECT owner_region, assigned_unit FROM alert_handling "
                                        "WHERE alert_id = 'e2e-loop'")).one()
    assert [tuple(r) for r in rows][-4:] == [("taken_over", "e2e-gz"), ("dispatched", "e2e-gz"),
                                             ("resolved", "e2e-tianhe"), ("closed", "e2e-gz")]
    assert tuple(handling) == ("440100", "天河区排水所")


def test_incident_page_groups_the_returns_of_one_sensor(server, browser):  # noqa: F811
    base, url = server
    _insert(url, "e2e-inc-1", subject="sensor:e2e-inc", status="resolved", escalated=False)
    _insert(url, "e2e-inc-2", subject="sensor:e2e-inc", level="orange", escalated=False)
    sign_in(browser, base, url, user="e2e-gz", home="440100")
    browser.get(base + "/alert/e2e-inc-2")
    link = wait_for(browser, lambda d: d.find_element("id", "alert-incident-link"), what="the incident link")
    assert "2" in link.text
    link.click()
    wait_for(browser, lambda d: "/incident/" in d.current_url, what="incident page")
    table = wait_for(browser, lambda d: d.find_element("id", "incident-alerts"), what="its alerts")
    assert table.text.count("闭环测试积水预警") == 2


def _detector_notes() -> list[tuple[str, str]]:
    """The (action, note) pairs the detector writes for a ponding alert that a camera
    corroborates and that then clears, as the live worker stores them."""
    from analytics.engine import DetectorCore

    gz = {"county": "440106", "city": "440100", "province": "440000", "grid_id": None}
    c = DetectorCore(locate=lambda *_: gz, anomalies=False)
    t0 = 1_780_000_000.0
    for i, v in enumerate([0.0] * 5 + [20.0] * 10 + [0.0] * 120):
        c.on_reading({"sensor_id": "p1", "metric": "ponding_depth", "value": v, "ts": t0 + i * 60,
                      "lon": 113.33, "lat": 23.13})
        if i == 14:
            c.on_video({"camera_id": "cam-near", "type": "road_ponding", "ts": t0 + i * 60, "lon": 113.332,
                        "lat": 23.131})
    return [(ch.action, ch.note) for ch in c.drain() if ch.note and ch.alert.source == "rule:ponding"]


def test_detector_notes_on_the_timeline_speak_the_page_language(server, browser):  # noqa: F811
    import re

    base, url = server
    _insert(url, "e2e-notes", subject="sensor:e2e-notes", escalated=False)
    notes = _detector_notes()
    assert {a for a, _ in notes} >= {"opened", "corroborated", "resolved"}
    with engine_for(url).begin() as conn:
        for k, (action, note) in enumerate(notes):
            conn.execute(sa.text("INSERT INTO alert_history (alert_id, ts, action, actor, level, status, note) "
                                 "VALUES ('e2e-notes', now() - make_interval(secs => :k), :a, 'system:detect', "
                                 "'red', 'open', :n)"), {"k": 100 - k, "a": action, "n": note})
    sign_in(browser, base, url, user="e2e-gz", home="440100")
    english = re.compile(r"(?<![\w-])[A-Za-z]{3,}(?![\w-])")
    for lang, ok in (("zh", lambda s: not english.search(s)), ("en", lambda s: not re.search(r"[\u4e00-\u9fff]", s))):
        browser.get(base + "/alert/e2e-notes" + ("?lang=en" if lang == "en" else ""))
        wait_for(browser, lambda d: "cam-near" in d.find_element("id", "alert-timeline").text, what="the notes")
        cells = [td.text for td in browser.find_elements(
            "css selector", "#alert-timeline tr.tl-history td:nth-child(2), #alert-timeline tr.tl-history td:nth-child(4)")]
        assert cells and all(ok(text) for text in cells), (lang, cells)
