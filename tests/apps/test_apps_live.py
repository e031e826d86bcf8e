"""Live without reload and one figure per fact (issue 14 items 2 and 10), as functions against a
real seeded PostGIS database: one live tick of the city and county views after an alert is
raised sends the KPI, the open-alert vital sign, the ranking row and the map colour from the
same read, and the tables again; an unchanged screen costs nothing; the figures a screen shows
side by side are equal."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from dash import no_update

from apps import queries
from apps.catalogue import indicators
from apps.components import KPI_IDS
from tongguan.db import engine_for

pytestmark = pytest.mark.integration


def _find(component, cid):
    stack = [component]
    while stack:
        c = stack.pop()
        if isinstance(c, (list, tuple)):
            stack.extend(c)
            continue
        if c is None or isinstance(c, (str, int, float)):
            continue
        if getattr(c, "id", None) == cid:
            return c
        stack.append(getattr(c, "children", None))
    return None


def _text(component) -> str:
    """All the text of a component tree."""
    if component is None:
        return ""
    if isinstance(component, (str, int, float)):
        return str(component)
    if isinstance(component, (list, tuple)):
        return " ".join(_text(c) for c in component)
    return _text(getattr(component, "children", None))


@pytest.fixture
def app_rw(seeded_rw, services):
    from apps import AppConfig, create_app

    app = create_app(AppConfig(database_url=seeded_rw[0], kafka_bootstrap=services.kafka_bootstrap))
    return app, engine_for(seeded_rw[0])


def _raise(eng, aid, *, county, city, level="red", theme="lifeline", subject="sensor:none"):
    with eng.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, subject, adcode, city, province, "
            "first_seen, last_seen, status) VALUES (:id, :id, 'rule:test', :lv, :th, '实时测试预警', :s, :c, "
            ":city, '440000', now(), now(), 'open')"),
            {"id": aid, "lv": level, "th": theme, "s": subject, "c": county, "city": city})


def _ranking_levels(ranking_children) -> dict[str, str]:
    """adcode -> the level shown by the ranking's badge, from the rendered rows."""
    out = {}
    body = ranking_children[1]
    for tr in body.children:
        link = tr.children[1].children
        badge = tr.children[2].children
        out[link.id.rsplit("-", 1)[1]] = badge.className.split("level-")[-1]
    return out


def test_one_city_tick_sends_kpi_vital_ranking_map_and_tables_from_one_read(app_rw):
    from apps.live import map_levels
    from apps.maps import level_z
    from apps.pages import city
    from apps.pages.common import live_tables_update, live_update

    app, eng = app_rw
    with app.server.app_context():
        page = city.layout(adcode="440100")
        params = _find(page, "city-params").data
        shown = _find(page, "city-shown").data
        tables_shown = _find(page, "city-tables-shown").data
        state = queries.region_state(eng, scope="440100")
        quiet = state[state["worst"] == "none"]["adcode"].iloc[0]

        def tick(shown, n):
            return live_update(data_engine=eng, params=params, shown=shown, page="city", child_level="county",
                               vitals=indicators(), tick=n)

        def tables(shown, n):
            return live_tables_update(eng, params=params, shown=shown, names=["alerts", "escalations"],
                                      renderers=city.LIVE_TABLES, tick=n)

        assert all(o is no_update for o in tick(shown, 1))
        assert tables(tables_shown, 1) == [[no_update] * 2, no_update]

        _raise(eng, "t-city-live", county=quiet, city="440100")
        out = tick(shown, 2)
        (alerts_table, _escalations), version = tables(tables_shown, 2)
    kpi = dict(zip(KPI_IDS, out[:len(KPI_IDS)]))
    fig, _ticker, ranking = out[len(KPI_IDS):len(KPI_IDS) + 3]
    vitals = out[len(KPI_IDS) + 3:-1]
    new_shown = out[-1]
    before = int(shown["kpis"]["open"].replace(",", ""))
    assert kpi["open"] == f"{before + 1:,}"
    # the open-alert vital signs, on the same tick, from the same read as the KPI strip
    by_id = {ind.id: vitals[3 * i:3 * i + 3] for i, ind in enumerate(indicators())}
    assert by_id["open_alerts"][0] == kpi["open"]
    assert by_id["gas_alerts"][0] == str(int(shown["vitals"]["gas_alerts"][0]) + 1)
    assert by_id["gas_alerts"][2] == "异常"  # the lifeline sign turned abnormal, its status says so
    # ranking and map from the same region state: the quiet district is red in both
    shown_levels = _ranking_levels(ranking)
    assert shown_levels[quiet] == "red"
    z = fig.to_plotly_json()["operations"][0]["params"]["value"]
    assert z[shown["codes"].index(quiet)] == level_z(["red"])[0]
    assert map_levels(queries.region_state(eng, scope="440100"), shown["codes"]) == new_shown["levels"]
    # the city's alerts table, drawn again with the new alert in it
    assert version != tables_shown and _find(alerts_table, "city-alert-row-t-city-live") is not None

    with app.server.app_context():
        again = tick(new_shown, 3)
        assert tables(version, 3) == [[no_update] * 2, no_update]  # unchanged: nothing sent
    assert all(o is no_update for o in again)


def test_numbers_on_one_screen_agree_on_a_seeded_database(seeded):
    from apps.components import ranking
    from apps.live import map_levels

    eng = engine_for(seeded[0])
    for scope in ("440000", "440100"):
        k = queries.kpis(eng, scope=scope)
        state = queries.region_state(eng, scope=scope)
        assert k["open_alerts"] == int(state["open"].sum()) > 0
        assert k["alerts"] == {lv: int(state[lv].sum()) for lv in k["alerts"]}
        # the map colours and the ranking rows come from one state and show the same level
        codes = list(state["adcode"])
        shown = _ranking_levels(ranking("x", state, level="city", search="", lang="zh", limit=len(state)).children)
        assert shown == dict(zip(codes, map_levels(state, codes)))
    vit = {v["id"]: v["value"] for v in queries.vitals(eng, scope="440100", indicators=indicators(), spark=False)}
    assert vit["open_alerts"] == queries.kpis(eng, scope="440100")["open_alerts"]
    assert vit["gas_alerts"] == queries.kpis(eng, scope="440100", theme="lifeline")["open_alerts"]
    with eng.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alerts WHERE city = '440100' AND status = ANY(:s)"),
                            {"s": ["open", "acknowledged", "dispatched"]}).scalar() == vit["open_alerts"]


def test_a_county_tick_sends_the_new_alert_its_sensor_colour_and_then_its_handling(app_rw):
    from apps import handling
    from apps.catalogue import LEVEL_COLOURS
    from apps.pages import county

    app, eng = app_rw
    with eng.connect() as conn:
        sensor = conn.execute(sa.text("SELECT sensor_id FROM sensors WHERE county = '440106' ORDER BY sensor_id "
                                      "LIMIT 1")).scalar()
    with app.server.app_context():
        page = county.layout(adcode="440106")
        params = _find(page, "county-params").data
        shown = _find(page, "county-shown").data
        assert all(o is no_update for o in county.live_update(eng, params=params, shown=shown, tick=1))

        _raise(eng, "t-county-live", county="440106", city="440100", subject=f"sensor:{sensor}", theme="flood")
        out = county.live_update(eng, params=params, shown=shown, tick=2)
    kpi = dict(zip(KPI_IDS, out[:len(KPI_IDS)]))
    fig, events, table, new_shown = out[len(KPI_IDS):]
    assert kpi["alert-red"] == str(int(shown["kpis"]["alert-red"]) + 1)
    row = _find(table, "county-alert-row-t-county-live")
    assert row is not None and "待处置" in _text(row)
    ops = {tuple(o["location"]): o["params"]["value"] for o in fig.to_plotly_json()["operations"]}
    colours = ops[("data", shown["trace"], "marker", "color")]
    assert colours[shown["sensors"].index(sensor)] == LEVEL_COLOURS["red"]

    handling.handle(eng, alert_id="t-county-live", action="ack", actor="tester")
    with app.server.app_context():
        out = county.live_update(eng, params=params, shown=new_shown, tick=3)
    assert "已签收" in _text(_find(out[len(KPI_IDS) + 2], "county-alert-row-t-county-live"))


def test_the_probes_change_with_the_alerts_and_the_inbox(seeded_rw):
    from analytics.alerting import subscriptions as subs
    from apps import alerts_view

    eng = engine_for(seeded_rw[0])
    before = alerts_view.version(eng, "440100")
    elsewhere = alerts_view.version(eng, "440300")
    _raise(eng, "t-probe", county="440106", city="440100")
    assert alerts_view.version(eng, "440100") != before
    assert alerts_view.version(eng, "440300") == elsewhere  # another city's screens stay quiet
    raised = alerts_view.version(eng, "440100")
    with eng.begin() as conn:
        conn.execute(sa.text("UPDATE alert_handling SET visible_at = '440100', escalated_at = now(), "
                             "updated_at = now() WHERE alert_id = 't-probe'"))
        sub = conn.execute(sa.text(
            "INSERT INTO subscriptions (name, owner, adcode, channels) VALUES ('t', 'probe-user', '440100', '{inbox}') "
            "RETURNING id")
        ).scalar()
    assert alerts_view.version(eng, "440100") != raised  # an escalation (handling row) is a change too

    empty = subs.inbox_version(eng, "probe-user")
    with eng.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO inbox_messages (delivery_key, subscription_id, recipient, title, body, alert_ids, "
            "alert_id, top_level) VALUES ('k1', :s, 'probe-user', 't', 'b', ARRAY['t-probe'], 't-probe', 'red')"),
            {"s": sub})
    delivered = subs.inbox_version(eng, "probe-user")
    assert delivered != empty
    subs.mark_read(eng, "probe-user")
    assert subs.inbox_version(eng, "probe-user") != delivered

    rows = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    assert alerts_view.keep_selection(rows, [0, 2], [{"id": "n"}, *rows]) == [1, 3]


def test_a_cached_city_page_is_what_the_page_renders_and_is_rendered_anew_when_an_alert_changes(app_rw):
    """The layout cache of ``tongguan serve`` (apps.view_cache.page_layout) as Dash calls it: a
    second operator of Guangzhou gets the page the first one was rendered, equal to a fresh
    render; a new alert of the city renders it again, with the alert in its table."""
    import json

    import dash
    from plotly.io.json import to_json_plotly

    from apps import view_cache
    from apps.pages import city
    from apps.scope import Scope, scoped

    app, eng = app_rw
    cached = next(p["layout"] for p in dash.page_registry.values() if p.get("path_template") == "/city/<adcode>")
    view_cache.enable(0, 60)  # query results uncached: the alerts version is read fresh each time
    try:
        with app.server.app_context():
            with scoped(Scope(home="440100", roles=frozenset({"operator"}), username="gz-a")):
                first = cached(adcode="440100", lang="en")
                fresh = json.loads(to_json_plotly(city.layout(adcode="440100", lang="en")))
            with scoped(Scope(home="440100", roles=frozenset({"operator"}), username="gz-b")):
                assert cached(adcode="440100", lang="en") is first
            assert first == fresh
            assert "city-alert-row-t-city-cached" not in json.dumps(first)
            quiet = queries.region_state(eng, scope="440100").query("worst == 'none'")["adcode"].iloc[0]
            _raise(eng, "t-city-cached", county=quiet, city="440100")
            with scoped(Scope(home="440100", roles=frozenset({"operator"}), username="gz-b")):
                again = cached(adcode="440100", lang="en")
        assert again is not first and "city-alert-row-t-city-cached" in json.dumps(again)
    finally:
        view_cache.enable(0)
