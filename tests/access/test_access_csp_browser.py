"""In headless Chromium, under the server's own Content-Security-Policy: the views render, their
figures draw and their callbacks run, and the browser reports no policy violation (issue 13:
'unsafe-eval' goes unless Dash needs it)."""

from __future__ import annotations

import re

import pytest

from tests.access.test_access_browser import _login, _wait, chrome, served  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

# Recorded before any page script runs (a DevTools script is not subject to the page's policy).
WATCH = ("window.__csp = [];"
         "document.addEventListener('securitypolicyviolation', e => window.__csp.push("
         "e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sourceFile || '') + ':' + e.lineNumber));"
         "window.__errors = []; window.addEventListener('error', e => window.__errors.push(String(e.message)));")


def _violations(driver) -> list[str]:
    return list(driver.execute_script("return (window.__csp || []).concat(window.__errors || [])") or [])


def test_views_render_and_run_callbacks_under_the_policy(served, chrome):  # noqa: F811 - fixtures
    base, _ = served
    import urllib.request

    with urllib.request.urlopen(base + "/login") as r:
        csp = r.headers["Content-Security-Policy"]
    script_src = csp.split("script-src", 1)[1].split(";", 1)[0]
    assert "'unsafe-eval'" not in script_src and "'unsafe-inline'" not in script_src, csp
    chrome.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH})
    _login(chrome, base, "gz-operator")
    seen = {}
    for path, ready in (("/city/440100", "city-map"), ("/county/440106", "county-map"),
                        ("/alerts", "alerts-table"), ("/alert/A-TIANHE-1", "alert-title"),
                        ("/subscriptions", "_pages_content")):
        chrome.get(base + path)
        _wait(chrome, lambda d, ready=ready: d.find_element("id", ready).text.strip()
              or d.find_elements("css selector", f"#{ready} .main-svg"), f"{path} renders")
        seen[path] = _violations(chrome)
    # A figure drew (Plotly ran) and a callback answered (the alerts filter re-reads the table).
    chrome.get(base + "/city/440100")
    _wait(chrome, lambda d: d.find_elements("css selector", "#city-map .main-svg"), "the city map draws")
    chrome.get(base + "/alerts")
    _wait(chrome, lambda d: d.find_element("id", "alerts-table").text.strip(), "the alert table")
    chrome.find_element("id", "alerts-select-all").click()
    _wait(chrome, lambda d: re.search(r"已选 [1-9]", d.find_element("id", "alerts-count").text),
          "the select-all callback answers")
    seen["callbacks"] = _violations(chrome)
    assert not any(seen.values()), seen
