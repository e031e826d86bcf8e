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

