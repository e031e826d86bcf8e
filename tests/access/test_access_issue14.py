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
