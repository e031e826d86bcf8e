"""In headless Chromium, the city view a duty team works from (issue 14): an alert escalated from
Tianhe appears in the escalations panel without reload and the Guangzhou operator takes it over
there; a dispatched alert past its due time appears in the overdue (督办) panel; the map says
what its colours mean."""

import pytest
import sqlalchemy as sa

from tests.apps.test_apps_browser import browser, server, sign_in, wait_for  # noqa: F401  (fixtures)
from tongguan.db import engine_for

pytestmark = pytest.mark.integration


def _insert(url, aid, title, *, status="open"):
    with engine_for(url).begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, subject, adcode, city, province, "
            "first_seen, last_seen, status) VALUES (:id, :id, 'rule:test', 'red', 'flood', :t, 'sensor:x', "
            "'440106', '440100', '440000', now(), now(), :st)"), {"id": aid, "t": title, "st": status})


def test_city_takes_over_an_escalation_and_sees_what_is_overdue(server, browser):  # noqa: F811
    base, url = server
    sign_in(browser, base, url, user="e2e-gz", home="440100")
    browser.get(base + "/city/440100")
    wait_for(browser, lambda d: d.find_element("css selector", ".panel-escalations"), what="the escalations panel")
    legend = browser.find_element("css selector", "#city-map-panel .map-legend").text
    assert all(w in legend for w in ("预警等级", "红色", "橙色", "黄色", "蓝色", "正常"))
    browser.execute_script("window.__same_page = true;")

    _insert(url, "e2e-esc-panel", "升级面板测试预警")
    with engine_for(url).begin() as conn:
        conn.execute(sa.text("UPDATE alert_handling SET visible_at = '440100', escalated_at = now(), "
                             "escalation_reason = '红色预警立即上报', updated_at = now() "
                             "WHERE alert_id = 'e2e-esc-panel'"))
    row = wait_for(browser, lambda d: d.find_element("id", "city-esc-alert-row-e2e-esc-panel"), timeout=15,
                   what="the escalation in the panel without reload")
    row.find_element("css selector", ".action-take_over").click()
    wait_for(browser, lambda d: "接管" in d.find_element("id", "city-esc-done").text, what="taken over")
    with engine_for(url).connect() as conn:
        owner = conn.execute(sa.text("SELECT owner_region FROM alert_handling WHERE alert_id = 'e2e-esc-panel'")
                             ).scalar()
        history = conn.execute(sa.text("SELECT action, actor FROM alert_history WHERE alert_id = 'e2e-esc-panel' "
                                       "ORDER BY ts, id")).all()
    assert owner.strip() == "440100" and ("taken_over", "e2e-gz") in [tuple(h) for h in history]

    _insert(url, "e2e-overdue", "逾期督办测试预警", status="dispatched")
    with engine_for(url).begin() as conn:
        conn.execute(sa.text("UPDATE alert_handling SET assigned_unit = '天河区排水所', dispatched_at = now() - "
                             "interval '5 hours', due_at = now() - interval '1 hour', updated_at = now() "
                             "WHERE alert_id = 'e2e-overdue'"))
    row = wait_for(browser, lambda d: d.find_element("id", "city-overdue-row-e2e-overdue"), timeout=15,
                   what="the overdue alert in the 督办 panel")
    assert "天河区排水所" in row.text and "逾期" in row.text
    assert browser.execute_script("return window.__same_page === true;")
