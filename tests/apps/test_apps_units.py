"""Pure functions of the views: configuration, query strings, live diffs, figures."""

import doctest
import json
import re

import pandas as pd
import pytest

import apps.catalogue
import apps.components
import apps.i18n
import apps.live
import apps.maps
import apps.queries.search
import apps.queries.summary
from apps.catalogue import indicators, parse_indicators, worst_level
from apps.components import parse_search, query_string, view_href
from apps.errors import AppsError
from apps.live import changed_values, map_levels, newest_change
from apps.maps import aggregate_points, level_z, region_map


@pytest.mark.parametrize("module", [apps.catalogue, apps.components, apps.queries.search, apps.queries.summary, apps.i18n,
                                    apps.live, apps.maps])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_indicator_catalogue_loads_and_names_real_metrics():
    inds = indicators()
    ids = [i.id for i in inds]
    assert len(ids) == len(set(ids)) >= 6
    assert {"pm25", "traffic_speed", "online_rate", "open_alerts"} <= set(ids)


@pytest.mark.parametrize("doc, message", [
    ({}, "non-empty list"),
    ({"indicators": [{"id": "x", "label_zh": "x", "label_en": "x", "kind": "nope"}]}, "kind 'nope'"),
    ({"indicators": [{"id": "x", "label_zh": "x", "label_en": "x", "kind": "metric_mean",
                      "metric": "unobtainium"}]}, "metric 'unobtainium'"),
    ({"indicators": [{"id": "x", "label_zh": "x", "kind": "open_alerts"}]}, "missing 'label_en'"),
    ({"indicators": [{"id": "x", "label_zh": "x", "label_en": "x", "kind": "open_alerts"},
                     {"id": "x", "label_zh": "x", "label_en": "x", "kind": "open_alerts"}]}, "duplicate id"),
    ({"indicators": [{"id": "x", "label_zh": "x", "label_en": "x", "kind": "open_alerts",
                      "window": "1y"}]}, "window must be"),
])
def test_bad_indicator_catalogue_is_refused_with_the_reason(doc, message):
    with pytest.raises(AppsError, match=message):
        parse_indicators(doc)


def test_links_keep_theme_window_language_and_screen():
    search = query_string(theme="flood", window="6h", lang="en", screen="wall")
    assert parse_search(search) == {"theme": "flood", "window": "6h", "lang": "en", "screen": "wall"}
    assert view_href("city", "440100", search) == "/city/440100" + search
    # defaults are left out so the shared link stays short
    assert view_href("county", "440106", "?theme=all&lang=zh") == "/county/440106"


def test_worst_level_order():
    assert worst_level(["yellow", "red", "blue"]) == "red"
    assert worst_level(["none"]) == "none"


def test_changed_values_and_map_levels():
    assert changed_values({"a": "1"}, {"a": "1"}) == {}
    state = pd.DataFrame({"adcode": ["440100", "440300"], "worst": ["red", "none"]})
    assert map_levels(state, ["440300", "440100", "440500"]) == ["none", "red", "none"]


def test_newest_change_keeps_the_later_stamp():
    df = pd.DataFrame({"first_seen": pd.to_datetime(["2026-01-01T10:00Z", "2026-01-01T11:00Z"]),
                       "escalated_at": pd.to_datetime([None, "2026-01-01T12:00Z"])})
    assert pd.Timestamp(newest_change(df, None)) == pd.Timestamp("2026-01-01T12:00Z")
    assert newest_change(df, "2026-02-01T00:00:00+00:00") == "2026-02-01T00:00:00+00:00"
    assert newest_change(df.iloc[0:0], "x") == "x"


def test_dense_points_are_aggregated_without_losing_any():
    n = 5000
    df = pd.DataFrame({"lon": 113.3 + (pd.Series(range(n)) % 100) * 0.001,
                       "lat": 23.1 + (pd.Series(range(n)) // 100) * 0.001, "type": "road_ponding"})
    out = aggregate_points(df, max_points=300)
    assert len(out) <= 300
    assert out["n"].sum() == n


def _square(code, x0, y0, ccw=True):
    ring = [[x0, y0], [x0 + 1, y0], [x0 + 1, y0 + 1], [x0, y0 + 1], [x0, y0]]
    if not ccw:
        ring = ring[::-1]
    return {"type": "Feature", "properties": {"adcode": code, "name": code, "name_en": code},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


def test_region_map_colours_by_worst_level_and_clicks_yield_adcodes():
    gj = {"type": "FeatureCollection", "features": [_square("440100", 113, 23), _square("440300", 114, 22)]}
    state = pd.DataFrame([{"adcode": "440100", "name": "广州市", "name_en": "Guangzhou", "blue": 0,
                           "yellow": 0, "orange": 0, "red": 2, "open": 2, "worst": "red", "rank": 4}])
    fig = region_map(gj, state, lang="en")
    trace = fig["data"][0]
    assert trace["locations"] == ["440100", "440300"]
    assert trace["z"] == level_z(["red", "none"])
    assert "Guangzhou" in trace["text"][0]
    geo = fig["layout"]["geo"]
    assert geo["visible"] is False  # fitted to the regions drawn (both squares inside the ranges)
    assert geo["lonaxis"]["range"][0] < 113 and geo["lonaxis"]["range"][1] > 114.5
    import plotly.graph_objects as go

    go.Figure(fig)  # a valid plotly figure (validated here once, not on every request)


def test_series_and_county_figures_are_valid_plotly():
    import plotly.graph_objects as go

    from apps.maps import county_map, series_figure, trend_figure

    df = pd.DataFrame({"ts": pd.date_range("2026-01-01", periods=5, freq="h", tz="UTC"), "value": range(5)})
    go.Figure(series_figure(df, thresholds={"yellow": 3.0, "red": 4.0}, title="s"))
    tr = pd.DataFrame({"readings": [1, 2], "events": [0, 1], "alerts": [1, 0]},
                      index=pd.date_range("2026-01-01", periods=2, freq="h"))
    go.Figure(trend_figure(tr))
    gj = {"type": "FeatureCollection", "features": [_square("440106", 113, 23)]}
    sensors = pd.DataFrame({"sensor_id": ["s1"], "metric": ["pm25"], "lon": [113.5], "lat": [23.5],
                            "online": [True], "level": ["red"]})
    events = pd.DataFrame({"lon": [113.4], "lat": [23.4], "type": ["road_ponding"]})
    fig = go.Figure(county_map(gj, sensors=sensors, cameras=pd.DataFrame(columns=["camera_id", "lon", "lat"]),
                               events=events, grid={"features": []}))
    assert list(fig.data[-1].customdata[0]) == ["sensor", "s1"]


def test_plotly_orientation_makes_exteriors_clockwise():
    import shapely
    from shapely.geometry import shape

    from apps.queries import plotly_orientation

    fc = plotly_orientation({"type": "FeatureCollection", "features": [_square("1", 0, 0, ccw=True)]})
    ring = shape(fc["features"][0]["geometry"]).exterior
    assert not ring.is_ccw
    assert shapely.get_num_coordinates(shape(fc["features"][0]["geometry"])) == 5


def test_topojson_placeholders_are_valid_json():
    from importlib import resources

    for name in ("world_110m.json", "world_50m.json"):
        doc = json.loads(resources.files("apps").joinpath("assets/topojson/" + name).read_text())
        assert doc["type"] == "Topology" and "land" in doc["objects"]


class _Tree:
    """Guangdong with two cities, Guangzhou with two districts (the shape rotation_ring walks)."""

    def __init__(self):
        self.parents = {"440000": None, "440100": "440000", "440300": "440000", "440200": "440000",
                        "440106": "440100", "440104": "440100"}

    def parent(self, a):
        return self.parents[a]

    def children(self, a):
        return [c for c, p in self.parents.items() if p == a]

    def level(self, a):
        return {0: "province", 2: "city"}.get(len(self.path(a)) - 1, "county")

    def path(self, a):
        return ([*self.path(self.parents[a])] if self.parents[a] else []) + [a]

    def is_within(self, a, scope):
        return scope in self.path(a)


def test_wall_rotation_goes_round_the_province():
    from apps.live import next_in_ring, rotation_ring

    ring = rotation_ring(_Tree(), "440000", "440100")
    assert ring == ["440100", "440300", "440200"]
    assert next_in_ring(ring, "440100") == "440300" and next_in_ring(ring, "440200") == "440100"


def test_wall_rotation_never_leaves_a_city_or_county_operators_region():
    from apps.live import next_in_ring, rotation_ring

    tree = _Tree()
    ring = rotation_ring(tree, "440100", "440100")  # Guangzhou's operator: the city, then its districts
    assert ring == ["440100", "440106", "440104"]
    assert rotation_ring(tree, "440100", "440106") == ring  # the same ring seen from a district wall
    here, seen = "440100", []
    for _ in range(6):
        here = next_in_ring(ring, here)
        seen.append(here)
    assert set(seen) == set(ring) and all(tree.is_within(c, "440100") for c in seen)
    assert rotation_ring(tree, "440106", "440106") == ["440106"]  # a county operator's wall stays
    assert next_in_ring(["440106"], "440106") == "440106"


def test_every_interface_string_the_code_asks_for_is_in_messages_yaml():
    """t("key") with a literal key anywhere in apps/ names a key of messages.yaml (or of the
    levels' and statuses' labels from analytics), in both languages."""
    import re
    from pathlib import Path

    from apps.i18n import LANGS, MESSAGES

    root = Path(apps.i18n.__file__).parent
    asked = {m for p in root.rglob("*.py")
             for m in re.findall(r"""\bt\(\s*["']([a-z_]+(?:\.[a-z0-9_]+)+)["']""", p.read_text(encoding="utf-8"))}
    assert len(asked) > 100 and sorted(asked - set(MESSAGES)) == []
    assert all(set(texts) == set(LANGS) and all(texts.values()) for texts in MESSAGES.values())


def test_messages_yaml_errors_name_the_key():
    from apps.i18n import parse_messages

    with pytest.raises(AppsError, match="x.y: give both zh and en"):
        parse_messages({"x.y": {"zh": "甲", "en": ""}})
    with pytest.raises(AppsError, match="expected a mapping"):
        parse_messages(["x"])


def _squares(n: int, step: float = 0.02) -> dict:
    """n small square regions side by side (0.01° wide), named like districts."""
    feats = []
    for i in range(n):
        x = 113.0 + i * step
        ring = [[x, 23.0], [x, 23.01], [x + 0.01, 23.01], [x + 0.01, 23.0], [x, 23.0]]
        feats.append({"type": "Feature", "properties": {"adcode": f"44{i:04d}", "name": f"第{i}区"},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}})
    feats.append({"type": "Feature", "properties": {"adcode": "449999", "name": "大区"},  # the extent
                  "geometry": {"type": "Polygon", "coordinates": [[[113.0, 22.5], [113.0, 23.5], [114.0, 23.5],
                                                                    [114.0, 22.5], [113.0, 22.5]]]}})
    return {"type": "FeatureCollection", "features": feats}


def test_map_names_on_the_wall_never_overlap_and_the_map_fits_its_regions():
    from apps.maps import WALL_FONT_PX, WALL_MAP_FRAME

    gj = _squares(8)
    fig = region_map(gj, pd.DataFrame(), label_size=WALL_FONT_PX, frame=WALL_MAP_FRAME)
    labels = fig["data"][1]
    assert labels["textfont"]["size"] == WALL_FONT_PX
    assert 2 <= len(labels["text"]) < 9  # crowded names give way instead of overlapping
    # the same names in pixels of the 940x560 frame: no two boxes (name width x 1.3 em) intersect
    lon0, lon1 = fig["layout"]["geo"]["lonaxis"]["range"]
    px_per_deg = min(WALL_MAP_FRAME[0] / (lon1 - lon0), WALL_MAP_FRAME[1] / (lon1 - lon0))
    boxes = [(lon * px_per_deg, lat * px_per_deg * 1.09, len(name) * WALL_FONT_PX, WALL_FONT_PX * 1.3)
             for lon, lat, name in zip(labels["lon"], labels["lat"], labels["text"])]
    for i, (x, y, w, h) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1:]:
            assert abs(x - x2) >= (w + w2) / 2 - 1 or abs(y - y2) >= (h + h2) / 2 - 1, (boxes,)
    # fitted by axis ranges around the regions (fitbounds draws them in a square frame, small)
    assert "fitbounds" not in fig["layout"]["geo"]
    assert lon0 < 113.0 and lon1 > 114.0 and lon1 - lon0 < 1.1


def test_ticker_is_newest_first_by_what_it_shows_with_one_line_per_alert():
    from apps.live import ticker_merge, ticker_order

    t0 = pd.Timestamp("2026-12-02T08:00Z")
    rows = pd.DataFrame({"id": ["new1", "esc", "new2", "esc"],
                         "kind": ["new", "escalated", "new", "escalated"],
                         "first_seen": [t0, t0 - pd.Timedelta("3h"), t0 - pd.Timedelta("1h"), t0 - pd.Timedelta("3h")],
                         "escalated_at": [pd.NaT, t0 + pd.Timedelta("1min"), pd.NaT, t0 + pd.Timedelta("1min")]})
    ordered = ticker_order(rows)
    assert ordered["id"].tolist() == ["esc", "new1", "new2"]
    assert ordered["at"].is_monotonic_decreasing
    # live: the escalated alert already on screen as "new" moves to the top, not shown twice
    drop, after = ticker_merge(["new1", "esc", "old"], ["esc2", "esc"], limit=3)
    assert drop == [1] and after == ["esc2", "esc", "new1"]
    assert len(set(after)) == len(after)


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("wall", [None, 18])
def test_series_time_axis_is_numeric_not_plotlys_english_dates(lang, wall):
    """Plotly's default date ticks put "Dec 2, 2026" under a zh chart (seen on the alert page)."""
    import plotly.graph_objects as go

    from apps.maps import series_figure

    df = pd.DataFrame({"ts": pd.date_range("2026-12-01 20:00", periods=30, freq="5min", tz="UTC"), "value": range(30)})
    axis = go.Figure(series_figure(df, lang=lang, font_px=wall)).layout.xaxis
    formats = [axis.tickformat] if axis.tickformat else []
    formats += [s.value for s in axis.tickformatstops]
    assert formats and axis.hoverformat
    for f in [*formats, axis.hoverformat]:
        assert not re.search(r"%[bBaAcxX]", f), f  # names of months and days, locale forms: English


def test_table_buttons_follow_each_alerts_status():
    """The county table offered 签收 / 派单 / 处置完成 / 办结 on every row, resolved ones too (seen
    walking the demo); each row now offers what its status leaves, as the alert page does."""
    from apps.components import OFFERED, TABLE_ACTIONS, alerts_table

    statuses = ["open", "acknowledged", "dispatched", "resolved", "closed"]
    df = pd.DataFrame({"id": [f"a{i}" for i in range(5)], "level": "red", "adcode": "440106", "region_name": "天河区",
                       "theme": "flood", "title": "t", "status": statuses, "last_seen": pd.Timestamp.now(tz="UTC")})
    table = alerts_table("county", df, lang="zh", actions=True)

    def buttons(node, out):
        if getattr(node, "id", None) and isinstance(node.id, dict):
            out.append((node.id["alert"], node.id["action"]))
        kids = getattr(node, "children", None)
        for k in kids if isinstance(kids, list) else [kids] if kids is not None else []:
            buttons(k, out)
        return out

    got = buttons(table, [])
    for i, status in enumerate(statuses):
        offered = {a for aid, a in got if aid == f"a{i}"}
        assert offered == set(TABLE_ACTIONS) & set(OFFERED[status]), status
    assert not {a for aid, a in got if aid == "a3"} & {"ack", "dispatch", "resolve"}  # resolved: close only
