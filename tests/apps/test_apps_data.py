"""The views' query functions against a real PostGIS database holding sample data."""

import json
from datetime import timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from dash import no_update

from analytics import ACTIVE_STATUSES, LEVELS
from apps import queries
from apps.catalogue import indicators
from apps.errors import AppsError
from tongguan.db import engine_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def eng(seeded):
    return engine_for(seeded[0])


def test_sample_data_is_present(seeded):
    counts = seeded[1]
    assert counts["sensors"] > 400 and counts["alerts"] == 40 and counts["video_events"] > 0
    assert counts["reading_rollups_hour"] > 0 and counts["readings"] > 0


def test_region_checks_say_what_is_wrong(eng):
    assert queries.check_region(eng, "440000", "province") == "440000"
    with pytest.raises(AppsError, match="Unknown region 999999"):
        queries.check_region(eng, "999999", "city")
    with pytest.raises(AppsError, match="not a city"):
        queries.check_region(eng, "440106", "city")


def test_region_state_matches_the_alerts_table_and_lists_every_city(eng):
    state = queries.region_state(eng, scope="440000")
    assert len(state) == 21 and set(state["adcode"]) == set(queries.region_tree(eng).children("440000"))
    with eng.connect() as conn:
        expected = dict(conn.execute(sa.text(
            "SELECT city, count(*) FROM alerts WHERE province = '440000' AND status = ANY(:s) GROUP BY city"),
            {"s": list(ACTIVE_STATUSES)}).all())
    got = {r.adcode: r.open for r in state.itertuples() if r.open}
    assert got == {k.strip(): v for k, v in expected.items()}
    ranks = state["rank"].tolist()
    assert ranks == sorted(ranks, reverse=True)  # the ranking: most serious first


def test_theme_filter_narrows_the_state(eng):
    all_open = queries.region_state(eng, scope="440000")["open"].sum()
    flood = queries.region_state(eng, scope="440000", theme="flood")["open"].sum()
    with eng.connect() as conn:
        n_flood = conn.execute(sa.text(
            "SELECT count(*) FROM alerts WHERE theme = 'flood' AND status = ANY(:s)"),
            {"s": list(ACTIVE_STATUSES)}).scalar()
    assert flood == n_flood and flood < all_open


def test_alert_lists_stay_inside_their_scope(eng):
    county = queries.alerts_list(eng, scope="440106", statuses=None)
    assert set(county["adcode"]) <= {"440106"}
    city = queries.alerts_list(eng, scope="440100", statuses=None)
    assert not city.empty and set(city["city"].str.strip()) == {"440100"}
    assert all(queries.region_tree(eng).is_within(a, "440100") for a in city["adcode"])


def test_kpis_add_up_across_levels(eng):
    province = queries.kpis(eng, scope="440000")
    cities = [queries.kpis(eng, scope=c) for c in queries.region_tree(eng).children("440000")]
    assert province["readings_today"] == sum(c["readings_today"] for c in cities) > 0
    assert province["video_today"] == sum(c["video_today"] for c in cities)
    assert province["sensors_total"] == sum(c["sensors_total"] for c in cities)
    assert 0 < province["sensors_online"] < province["sensors_total"]
    assert province["open_alerts"] == sum(province["alerts"].values())


def test_trend_has_24_hours(eng):
    tr = queries.trend(eng, scope="440100")
    assert len(tr) == 24 and tr["readings"].sum() > 0
    assert tr["alerts"].sum() >= 0


def test_vitals_follow_the_catalogue(eng):
    inds = indicators()
    vit = queries.vitals(eng, scope="440100", indicators=inds)
    assert [v["id"] for v in vit] == [i.id for i in inds]
    for ind, v in zip(inds, vit):
        assert v["status"] == ind.status(v["value"])
        assert len(v["spark"]) == 24
    rate = next(v for v in vit if v["id"] == "online_rate")["value"]
    assert 0 < rate < 1


def test_escalations_waiting_are_those_escalated_to_the_city(eng):
    esc = queries.escalations_waiting(eng, scope="440100")
    with eng.connect() as conn:
        n = conn.execute(sa.text(
            "SELECT count(*) FROM alerts a JOIN alert_handling h ON h.alert_id = a.id "
            "WHERE a.city = '440100' AND a.status = 'open' AND h.visible_at = '440100' "
            "AND h.escalated_at IS NOT NULL")).scalar()
    assert len(esc) == n


def test_county_detail(eng):
    sensors = queries.county_sensors(eng, county="440106")
    assert len(sensors) == 4 and sensors["lon"].between(113.2, 113.5).all()
    assert set(sensors["level"]) <= {"none", *LEVELS}
    cams = queries.county_cameras(eng, county="440106")
    assert len(cams) == 3
    events = queries.county_events(eng, county="440106", window="24h")
    assert (events["ts"].diff().dropna() <= timedelta(0)).all()  # newest first
    clusters = queries.county_event_clusters(eng, county="440106", window="24h")
    with eng.connect() as conn:
        n_events = conn.execute(sa.text("SELECT count(*) FROM video_events WHERE county = '440106' "
                                        "AND ts >= now() - interval '24 hours'")).scalar()
    assert clusters["n"].sum() == n_events and len(clusters) <= len(cams)
    grid = queries.grid_activity(eng, county="440106")
    assert all(f["properties"]["n"] > 0 for f in grid["features"])


def test_sensor_series_is_one_sensor_in_time_order(eng):
    sid = queries.county_sensors(eng, county="440106")["sensor_id"].iloc[0]
    df = queries.sensor_series(eng, sensor_id=sid, hours=24)
    assert len(df) > 10 and df["ts"].is_monotonic_increasing and df["metric"].nunique() == 1


def test_province_map_payload_is_small(eng):
    from apps.maps import region_map

    gj = queries.children_geojson(eng, "440000")
    assert len(gj["features"]) == 21
    fig = region_map(gj, queries.region_state(eng, scope="440000"))
    from plotly.io.json import to_json_plotly

    assert len(to_json_plotly(fig)) < 1_000_000


def test_ticker_and_live_update_send_only_changes(seeded_rw):
    from apps.components import kpi_values
    from apps.live import map_levels, newest_change
    from apps.pages.common import live_update

    eng = engine_for(seeded_rw[0])
    scope = "440000"
    state = queries.region_state(eng, scope=scope)
    tick = queries.ticker(eng, scope=scope)
    codes = list(state["adcode"])
    shown = {"kpis": kpi_values(queries.kpis(eng, scope=scope), "zh"), "codes": codes,
             "levels": map_levels(state, codes), "since": newest_change(tick, None), "ticks": len(tick)}
    params = {"adcode": scope, "theme": "all", "window": "24h", "lang": "zh", "screen": "desk"}
    out = live_update(data_engine=eng, params=params, shown=shown)
    assert all(o is no_update for o in out)  # nothing changed: nothing sent

    quiet = state[state["worst"] == "none"]["adcode"].iloc[0]
    county = queries.region_tree(eng).children(quiet)[0]
    with eng.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, subject, adcode, city, "
            "province, first_seen, last_seen, status) VALUES ('t-live-1', 't-live-1', 'rule:test', 'red', "
            "'flood', '测试红色预警', 'sensor:x', :c, :city, '440000', now(), now(), 'open')"),
            {"c": county, "city": quiet})
    out = live_update(data_engine=eng, params=params, shown=shown)
    from apps.components import KPI_IDS

    kpi = dict(zip(KPI_IDS, out[:len(KPI_IDS)]))
    assert kpi["alert-red"] == str(shown["kpis"] and int(shown["kpis"]["alert-red"].replace(",", "")) + 1)
    assert kpi["readings"] is no_update
    fig_patch, ticker_patch, ranking, new_shown = out[len(KPI_IDS):]
    assert ranking is no_update  # no ranking asked for
    ops = fig_patch.to_plotly_json()["operations"]
    assert ops[0]["location"] == ["data", 0, "z"]
    z = ops[0]["params"]["value"]
    assert z[codes.index(quiet)] == 4.5  # the quiet city turned red
    tops = ticker_patch.to_plotly_json()["operations"]
    assert tops[0]["operation"] == "Prepend" and "t-live-1" in json.dumps(tops[0]["params"], default=str)
    assert new_shown["levels"][codes.index(quiet)] == "red"


def test_handling_actions_go_through_the_alert_lifecycle(seeded_rw):
    from apps import handling

    eng = engine_for(seeded_rw[0])
    with eng.connect() as conn:
        aid = conn.execute(sa.text("SELECT id FROM alerts WHERE status = 'open' ORDER BY id LIMIT 1")).scalar()
    assert handling.handle(eng, alert_id=aid, action="ack", actor="tester") == "acknowledged"
    assert handling.handle(eng, alert_id=aid, action="dispatch", actor="tester", note="排水所") == "dispatched"
    with pytest.raises(Exception, match="resolve it first"):
        handling.handle(eng, alert_id=aid, action="close", actor="tester")
    assert handling.handle(eng, alert_id=aid, action="resolve", actor="tester", note="done") == "resolved"
    with pytest.raises(AppsError, match="unknown action"):
        handling.handle(eng, alert_id=aid, action="explode", actor="tester")
    with eng.connect() as conn:
        steps = conn.execute(sa.text(
            "SELECT action FROM alert_history WHERE alert_id = :a ORDER BY ts, id"), {"a": aid}).scalars().all()
    assert steps[-3:] == ["acknowledged", "dispatched", "resolved"]


# One indicator at a time, written out in plain SQL over the tables of the migrations: the
# reference the batched queries.vitals must agree with.
_HOURS = "generate_series(date_trunc('hour', now()) - interval '23 hours', date_trunc('hour', now()), '1 hour')"


def _reference_vital(conn, ind, scope):
    win = {"1h": "1 hour", "6h": "6 hours", "24h": "24 hours", "7d": "7 days"}[ind.window]
    p = {"scope": scope, "metric": ind.metric, "type": ind.event_type, "theme": ind.theme,
         "s": list(ACTIVE_STATUSES)}

    def one(sql):
        return conn.execute(sa.text(sql), p).scalar()

    def hourly(sql):  # one value per hour of the last 24, oldest first
        return [None if v is None else float(v) for v in conn.execute(sa.text(
            f"SELECT ({sql}) FROM {_HOURS} AS hr ORDER BY hr"), p).scalars()]

    rollup = "reading_rollups_minute" if ind.window in ("1h", "6h") else "reading_rollups_hour"
    if ind.kind in ("metric_mean", "metric_max"):
        agg = "sum(vsum) / NULLIF(sum(n), 0)" if ind.kind == "metric_mean" else "max(vmax)"
        value = one(f"SELECT {agg} FROM {rollup} WHERE adcode = :scope AND metric = :metric "
                    f"AND bucket >= now() - interval '{win}'")
        spark = hourly(f"SELECT {agg} FROM reading_rollups_hour WHERE adcode = :scope AND metric = :metric "
                       "AND date_trunc('hour', bucket) = hr")
    elif ind.kind == "open_alerts":
        theme = " AND theme = :theme" if ind.theme else ""
        value = one(f"SELECT count(*) FROM alerts WHERE city = :scope AND status = ANY(:s){theme}")
        spark = hourly(f"SELECT count(*) FROM alerts WHERE city = :scope{theme} "
                       "AND date_trunc('hour', first_seen) = hr")
    elif ind.kind == "video_events":
        value = one("SELECT COALESCE(sum(n), 0) FROM video_rollups_minute WHERE adcode = :scope AND type = :type "
                    f"AND bucket >= date_trunc('minute', now() - interval '{win}')")
        spark = hourly("SELECT COALESCE(sum(n), 0) FROM video_rollups_hour WHERE adcode = :scope "
                       "AND type = :type AND date_trunc('hour', bucket) = hr")
    else:
        value = one("SELECT count(*) FILTER (WHERE last_seen >= now() - interval '15 minutes')::float "
                    "/ NULLIF(count(*), 0) FROM sensors WHERE city = :scope")
        spark = hourly("SELECT COALESCE(sum(n), 0) FROM reading_rollups_hour WHERE adcode = :scope "
                       "AND date_trunc('hour', bucket) = hr")
    return (None if value is None else float(value)), spark


def test_batched_vitals_equal_one_indicator_at_a_time_in_plain_sql(eng):
    inds = indicators()
    assert {i.kind for i in inds} == {"metric_mean", "metric_max", "open_alerts", "video_events",
                                      "sensor_online_rate"}  # every kind is compared
    batched = queries.vitals(eng, scope="440300", indicators=inds)
    with eng.connect() as conn:
        for ind, v in zip(inds, batched):
            value, spark = _reference_vital(conn, ind, "440300")
            assert v["value"] == pytest.approx(value, nan_ok=True), ind.id
            assert v["spark"] == pytest.approx(spark, nan_ok=True), ind.id
    assert any(v["value"] for v in batched) and any(any(v["spark"]) for v in batched)


def test_county_rollups_roll_up_to_their_city_and_province(engine):
    """apps.sample.roll_up_counties (the sample data's and tongguan bench views' city and
    province rows): each is the sum, min and max of its counties' rows, from ``since`` on."""
    from datetime import UTC, datetime

    from apps.sample import roll_up_counties

    t0, t1 = datetime(2026, 1, 1, 8, tzinfo=UTC), datetime(2026, 1, 1, 9, tzinfo=UTC)
    rows = [("440106", t0, 10, 1.0, 5.0), ("440104", t0, 20, 2.0, 7.0), ("440304", t0, 5, 0.5, 9.0),
            ("440106", t1, 1, 3.0, 3.0)]
    with engine.begin() as conn:
        for adcode, bucket, n, lo, hi in rows:
            conn.execute(sa.text(
                "INSERT INTO reading_rollups_hour (adcode, metric, bucket, n, vmin, vmax, vsum, last_value, last_ts) "
                "VALUES (:a, 'pm25', :b, :n, :lo, :hi, :n * 2.0, :hi, :b)"), {"a": adcode, "b": bucket, "n": n,
                                                                             "lo": lo, "hi": hi})
        roll_up_counties(conn, "reading_rollups_hour", since=t1)  # only the later hour
        roll_up_counties(conn, "reading_rollups_hour")
        got = {(a.strip(), b): (n, lo, hi) for a, b, n, lo, hi in conn.execute(sa.text(
            "SELECT adcode, bucket, n, vmin, vmax FROM reading_rollups_hour WHERE metric = 'pm25' "
            "AND adcode IN ('440100', '440300', '440000')"))}
    assert got == {("440100", t0): (30, 1.0, 7.0), ("440300", t0): (5, 0.5, 9.0), ("440000", t0): (35, 0.5, 9.0),
                   ("440100", t1): (1, 3.0, 3.0), ("440000", t1): (1, 3.0, 3.0)}


def _storm(eng, prefix: str, n: int, subject: str) -> None:
    """``n`` red alerts of one Baiyun sensor (the database groups them into one incident)."""
    with eng.begin() as conn:
        for k in range(n):
            conn.execute(sa.text(
                "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, subject, adcode, city, province, "
                "first_seen, last_seen, status) VALUES (:id, :id, 'rule:water-level', :lv, 'flood', '河道水位快速上涨', "
                ":subj, '440111', '440100', '440000', now() - make_interval(mins => :k), now(), 'open')"),
                {"id": f"{prefix}-{k}", "lv": "red" if k == 2 else "orange", "subj": subject, "k": k})


def _rows(component) -> list:
    """The <tr> rows of a rendered alerts table with their text and links."""
    from dash import dcc, html

    rows, stack = [], [component]
    while stack:
        c = stack.pop()
        if isinstance(c, (list, tuple)):
            stack.extend(c)
        elif isinstance(c, html.Tr) and str(getattr(c, "id", "")).startswith(("province-alert-row-", "city-alert-row-")):
            rows.append(c)
        elif c is not None and not isinstance(c, (str, int, float)):
            stack.append(getattr(c, "children", None))

    def flat(c):
        if isinstance(c, (list, tuple)):
            return [x for y in c for x in flat(y)]
        if c is None or isinstance(c, (str, int, float)):
            return [c] if c is not None else []
        return ([c] if isinstance(c, dcc.Link) else []) + flat(getattr(c, "children", None))

    out = []
    for r in rows:
        parts = flat(r.children)
        out.append({"id": r.id, "text": " ".join(str(p) for p in parts if not isinstance(p, dcc.Link)),
                    "links": [p.href for p in parts if isinstance(p, dcc.Link)]})
    return out


def test_wall_and_city_tables_show_one_row_per_incident(eng, seeded):
    from analytics.alerting.incidents import incident_of
    from apps import AppConfig, create_app

    create_app(AppConfig(database_url=seeded[0], kafka_bootstrap="127.0.0.1:9"))  # the pages register with it
    from apps.pages import city, province
    from apps.pages.common import view_params

    _storm(eng, "inc-storm", 5, "sensor:e2e-storm-440111")
    _storm(eng, "inc-other", 1, "sensor:e2e-other-440111")  # same title, another sensor: its own row
    inc = incident_of(eng, "inc-storm-0")
    assert inc is not None and all(incident_of(eng, f"inc-storm-{k}") == inc for k in range(5))
    for rows in (_rows(province.wall_alerts(eng, view_params("440000", screen="wall"))),
                 _rows(city.alerts_panel(eng, view_params("440100")))):
        storm = [r for r in rows if any(f"/incident/{inc}" in h for h in r["links"])]
        assert len(storm) == 1, rows  # one row for the five alerts, linking to the incident
        assert "×5 条" in storm[0]["text"] and "红色" in storm[0]["text"]  # how many, and the worst level
        assert not [r for r in rows if r["id"] != storm[0]["id"] and r["id"].endswith(tuple(f"inc-storm-{k}" for k in range(5)))]
        assert any(r["id"].endswith("inc-other-0") for r in rows)  # the other sensor's alert stays a row


def test_kpis_say_catching_up_while_history_is_replayed(seeded_rw):
    """The demo's first minutes: the store writes readings of an hour ago (its simulator streams
    history first), so no sensor is "online" yet — the KPI says how far the replay is instead of
    "0 / N online", until the readings reach now."""
    from apps.components import kpi_values

    eng = engine_for(seeded_rw[0])
    with eng.begin() as conn:
        conn.execute(sa.text("UPDATE sensors SET first_seen = now() - interval '2 hours', "
                             "last_seen = now() - interval '90 minutes'"))
    stalled = queries.kpis(eng, scope="440000")
    assert stalled["catch_up"] is None and stalled["sensors_online"] == 0  # nothing writing: offline, not replaying
    with eng.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO worker_heartbeats (worker, role, started_at, last_seen, stats, last_commit_at, state) "
            "VALUES ('store:test:1', 'store', now(), now(), '{}', now(), 'ok')"))
    k = queries.kpis(eng, scope="440000")
    assert k["catch_up"] == 25  # 30 of the 120 minutes replayed
    assert kpi_values(k, "zh")["sensors"] == "回放历史 25%" and kpi_values(k, "en")["sensors"] == "catching up 25 %"
    online = next(i for i in indicators() if i.kind == "sensor_online_rate")
    assert queries.vitals(eng, scope="440100", indicators=[online])[0]["value"] is None  # not a red 0 %
    with eng.begin() as conn:  # caught up: the readings reach now
        conn.execute(sa.text("UPDATE sensors SET last_seen = now()"))
    k = queries.kpis(eng, scope="440000")
    assert k["catch_up"] is None and kpi_values(k, "zh")["sensors"] == f"{k['sensors_total']:,} / {k['sensors_total']:,}"


def test_map_replay_colours_regions_as_the_alerts_stood_then(seeded_rw):
    """The 24 h slider: a city red now because of an alert raised 30 minutes ago was quiet three
    hours ago; an alert resolved an hour ago still colours its city two hours ago; "now" is the
    live state."""
    from apps.pages.common import replay_figure

    eng = engine_for(seeded_rw[0])
    state = queries.region_state(eng, scope="440000")
    assert queries.region_state_at(eng, scope="440000", at=pd.Timestamp.now(tz="UTC")).equals(state)
    quiet = list(state[state["worst"] == "none"]["adcode"][:2])
    tree = queries.region_tree(eng)
    with eng.begin() as conn:
        for aid, city, ago in (("replay-new", quiet[0], "30 minutes"), ("replay-done", quiet[1], "4 hours")):
            conn.execute(sa.text(
                "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, subject, adcode, city, province, "
                "first_seen, last_seen, status) VALUES (:id, :id, 'rule:test', 'red', 'flood', '回放测试', :id, :c, "
                ":city, '440000', now() - CAST(:ago AS interval), now(), 'open')"),
                {"id": aid, "c": tree.children(city)[0], "city": city, "ago": ago})
        conn.execute(sa.text("UPDATE alerts SET status = 'resolved' WHERE id = 'replay-done'"))
        conn.execute(sa.text("UPDATE alert_handling SET resolved_at = now() - interval '1 hour' "
                             "WHERE alert_id = 'replay-done'"))
    codes = list(state["adcode"])
    params = {"adcode": "440000", "theme": "all", "lang": "zh"}

    def colours(hours_ago):
        patch, label = replay_figure(eng, params=params, codes=codes, hours_ago=hours_ago)
        z = patch.to_plotly_json()["operations"][0]["params"]["value"]
        return {c: z[codes.index(c)] for c in quiet}, label

    now, label = colours(0)
    assert label == "现在" and now == {quiet[0]: 4.5, quiet[1]: 0.5}
    two_h, label = colours(-2)
    assert two_h == {quiet[0]: 0.5, quiet[1]: 4.5}, two_h  # before the new one, while the other was open
    assert len(label) == len("12-02 10:00") and label.endswith(":00")
