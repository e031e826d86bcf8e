"""Issue 14: the catalogue's update column, not-found regions, shareable sensor links (the Flask
test client of the Dash server, real PostgreSQL, the demo users)."""

from __future__ import annotations

import re

import pytest

from tests.access.conftest import login

pytestmark = pytest.mark.integration


def test_catalogue_shows_update_frequency_not_a_dict_method(access):
    _, app, _ = access
    from apps.governance import catalogue

    html = login(app, "gd-admin").get("/catalogue").get_data(as_text=True)
    assert "built-in method" not in html
    cells = re.findall(r"<td>([^<]*)</td>\s*<td class=\"muted\">", html)
    assert cells and set(cells) <= {str(d["update"]) for d in catalogue()}


@pytest.mark.parametrize("path", ["/city/999999", "/county/999999", "/province/999999", "/city/999999?lang=en"])
@pytest.mark.parametrize("user", ["tianhe-operator", "gd-admin"])
def test_a_region_that_does_not_exist_is_not_found_not_outside(access, user, path):
    _, app, _ = access
    r = login(app, user).get(path)
    html = r.get_data(as_text=True)
    assert r.status_code == 404, html[:300]
    assert "未找到区域 999999" in html and "region 999999 not found" in html
    assert "outside your region" not in html and "不在您的权限范围内" not in html


def test_a_foreign_region_that_exists_stays_outside_your_region(access):
    _, app, _ = access
    r = login(app, "tianhe-operator").get("/county/440303?lang=en")
    html = r.get_data(as_text=True)
    assert r.status_code == 403 and "outside your region" in html and "不在您的权限范围内" in html


def test_require_in_scope_tells_unknown_from_foreign(access):
    engine, app, _ = access
    import flask

    from apps.errors import AccessError
    from apps.pages.common import require_in_scope
    from apps.scope import Scope

    with app.server.test_request_context("/"):
        flask.g.tongguan_scope = Scope(username="tianhe-operator", home="440106")
        assert require_in_scope("440106") == "440106"
        with pytest.raises(AccessError) as unknown:
            require_in_scope("999999")
        with pytest.raises(AccessError) as foreign:
            require_in_scope("440303")
    assert unknown.value.status == 404 and "not found" in str(unknown.value)
    assert foreign.value.status == 403 and "outside your region" in str(foreign.value)


def _dash(client, output: str, outputs: list, inputs: list, state: list, changed: str):
    body = {"output": output, "outputs": outputs, "inputs": inputs, "state": state, "changedPropIds": [changed]}
    return client.post("/_dash-update-component", json=body)


def test_clicking_a_sensor_puts_it_in_the_address_and_the_address_preselects_it(access):
    _, app, _ = access
    web = login(app, "tianhe-operator")
    params = {"adcode": "440106", "theme": "all", "window": "24h", "lang": "zh", "screen": "desk", "alert": None}
    click = {"points": [{"customdata": ["sensor", "S-440106"]}]}
    r = _dash(web, "..county-series.children...county-sensor-url.search..",
              [{"id": "county-series", "property": "children"}, {"id": "county-sensor-url", "property": "search"}],
              [{"id": "county-map", "property": "clickData", "value": click}],
              [{"id": "county-params", "property": "data", "value": params},
               {"id": "county-sensor-url", "property": "search", "value": "?theme=flood&lang=en"}],
              "county-map.clickData")
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    out = r.get_json()["response"]
    assert out["county-sensor-url"]["search"] == "?theme=flood&lang=en&sensor=S-440106"
    assert "S-440106" in str(out["county-series"]["children"])
    # A click on something that is not a sensor (a camera) leaves the address alone.
    r = _dash(web, "..county-series.children...county-sensor-url.search..",
              [{"id": "county-series", "property": "children"}, {"id": "county-sensor-url", "property": "search"}],
              [{"id": "county-map", "property": "clickData", "value": {"points": [{"customdata": ["camera", "C-1"]}]}}],
              [{"id": "county-params", "property": "data", "value": params},
               {"id": "county-sensor-url", "property": "search", "value": ""}],
              "county-map.clickData")
    assert r.status_code == 204 or not r.get_json().get("response"), r.get_data(as_text=True)[:300]
    # The shared link: the pages router renders the county with that sensor's series already shown.
    r = _dash(web, ".._pages_content.children..._pages_store.data..",
              [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
              [{"id": "_pages_location", "property": "pathname", "value": "/county/440106"},
               {"id": "_pages_location", "property": "search", "value": "?sensor=S-440106"}],
              [], "_pages_location.pathname")
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and "county-series-graph" in page and "S-440106" in page
