"""Figures of the views, as pure functions of data (no database): region maps, trend,
sparklines, the county detail map and a sensor's series.

Maps use the administrative boundaries themselves as the base map (choropleth traces on the
geo package's simplified GeoJSON, ``fitbounds="locations"``, no tiles): government intranets
have no internet, and the boundaries are what the users navigate by.
"""

from __future__ import annotations

import math

import pandas as pd

from apps.catalogue import LEVEL_COLOURS, level_rank
from apps.i18n import t

# plotly.js fetches a world topojson for every geo plot, even with the base layers hidden;
# these empty ones are served by the app (apps/assets/topojson), so no request leaves the intranet.
MAP_CONFIG = {"displayModeBar": False, "scrollZoom": False, "topojsonURL": "/assets/topojson/"}
BG = "rgba(0,0,0,0)"
FG = "#e6eef8"
GRID = "#23406b"
# Where a region map is drawn: the desk view's map panel, and the wall's centre (1920x1080).
DESK_MAP_FRAME = (1250, 520)
WALL_MAP_FRAME = (940, 560)
WALL_FONT_PX = 18  # the smallest text on a wall, read across the room


# Discrete colour scale over the level ranks 0..4 (none, blue, yellow, orange, red).
_ORDER = ("none", "blue", "yellow", "orange", "red")
LEVEL_SCALE = []
for _i, _lv in enumerate(_ORDER):
    LEVEL_SCALE += [[_i / len(_ORDER), LEVEL_COLOURS[_lv]], [(_i + 1) / len(_ORDER), LEVEL_COLOURS[_lv]]]


def level_z(levels) -> list[float]:
    """Map levels to the centre of their band of LEVEL_SCALE (with zmin=0, zmax=5).

    >>> level_z(["none", "red"])
    [0.5, 4.5]
    """
    return [level_rank(lv) + 0.5 for lv in levels]


def plain(text) -> str:
    """Text for a Plotly title, label or hover: Plotly renders a subset of HTML there (``<a
    href>`` becomes a live link), so markup from the data (a sensor id, an alert title) is escaped.

    >>> plain('<a href="x">s1</a> & co')
    '&lt;a href="x"&gt;s1&lt;/a&gt; &amp; co'
    """
    return str(text if text is not None else "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _hover(row, lang: str) -> str:
    name = row["name_en"] if lang == "en" and row.get("name_en") else row["name"]
    parts = [f"<b>{plain(name)}</b>", f"{t('col.worst', lang)}: {t('alert.level.' + row['worst'], lang)}",
             f"{t('col.open', lang)}: {int(row['open'])}"]
    for lv in ("red", "orange", "yellow", "blue"):
        if row.get(lv):
            parts.append(f"{t('alert.level.' + lv, lang)} {int(row[lv])}")
    return "<br>".join(parts)


def _geo_layout(**extra) -> dict:
    """Layout of a boundary map: no base layers, fitted to the drawn regions, no tiles."""
    layout = {"geo": {"visible": False, "fitbounds": "locations", "bgcolor": BG,
                      "projection": {"type": "mercator"}},
              "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "paper_bgcolor": BG, "plot_bgcolor": BG,
              "font": {"color": FG}, "clickmode": "event", "uirevision": "keep"}
    layout.update(extra)
    return layout


def region_map(geojson: dict, state: pd.DataFrame, *, lang: str = "zh", height: int | None = None,
               labels: bool = True, source: str | None = None, label_size: int = 12,
               frame: tuple[int, int] = DESK_MAP_FRAME) -> dict:
    """Choropleth of the children in ``geojson`` coloured by ``state.worst`` (worst open level).

    ``state`` comes from :func:`apps.queries.region_state`; children missing from it are "none".
    Clicking a region yields ``clickData.points[0].location`` = its adcode. Returned as a plain
    figure dict: plotly's graph objects would validate every coordinate of the boundaries on
    each request, which costs more than all the view's queries together. With ``source`` (a URL
    serving the same GeoJSON) the browser loads the boundaries from there, once, cached. The
    names are written ``label_size`` px high where they do not overlap on a map of ``frame``
    px (:func:`place_labels`).
    """
    features = geojson.get("features", [])
    codes = [f["properties"]["adcode"] for f in features]
    by_code = state.set_index("adcode").to_dict("index") if not state.empty else {}
    rows = []
    for f in features:
        p = f["properties"]
        r = by_code.get(p["adcode"]) or {"name": p.get("name"), "name_en": p.get("name_en"),
                                         "worst": "none", "open": 0}
        r = {**r, "name": r.get("name") or p.get("name"), "name_en": r.get("name_en") or p.get("name_en")}
        rows.append(r)
    data = [{"type": "choropleth", "geojson": source or geojson, "featureidkey": "properties.adcode",
             "locations": codes, "z": level_z([r["worst"] for r in rows]), "zmin": 0, "zmax": 5,
             "colorscale": LEVEL_SCALE, "showscale": False,
             "marker": {"line": {"color": "#9cc7ff", "width": 0.8}},
             "text": [_hover(r, lang) for r in rows], "hoverinfo": "text", "customdata": codes}]
    if labels and features:
        bounds, anchors = _geometry_facts(geojson)
        names, points, weights = [], [], []
        for (c, area), r in zip(anchors, rows):
            if c is None:
                continue
            points.append(c)
            weights.append((level_rank(r["worst"]), area))
            names.append(r["name_en"] if lang == "en" and r.get("name_en") else r["name"])
        placed = place_labels(points, names, bounds=bounds, frame=frame, font_px=label_size, priority=weights)
        shown = [(pt, n) for pt, n in zip(placed, names) if pt is not None]
        data.append({"type": "scattergeo", "lon": [pt[0] for pt, _ in shown], "lat": [pt[1] for pt, _ in shown],
                     "text": [n for _, n in shown], "mode": "text",
                     "hoverinfo": "skip", "textfont": {"color": "#ffffff", "size": label_size}})
    layout = _geo_layout(showlegend=False, dragmode=False, **({"height": height} if height else {}))
    _fit_ranges(layout, features, _geometry_facts(geojson)[0] if features else None)
    return {"data": data, "layout": layout}


_FACTS: dict[int, tuple[dict, tuple]] = {}


def _geometry_facts(geojson: dict) -> tuple:
    """(bounds, [(label point, largest ring area) per feature]) of a boundary collection,
    computed once per collection object (the queries cache the collections; walking every
    coordinate costs ~10 ms a request otherwise). The entry keeps the collection alive, so
    its id cannot be reused for another one."""
    hit = _FACTS.get(id(geojson))
    if hit is None or hit[0] is not geojson:
        features = geojson.get("features", [])
        facts = (_bounds(features), [(_label_point(f), _largest_ring_area(f)) for f in features])
        if len(_FACTS) > 64:
            _FACTS.clear()
        hit = _FACTS[id(geojson)] = (geojson, facts)
    return hit[1]


def _exteriors(feature: dict) -> list:
    """The exterior rings of a (multi)polygon feature (they hold every point of its outline)."""
    geom = feature.get("geometry") or {}
    polys = geom.get("coordinates") or []
    if geom.get("type") == "Polygon":
        polys = [polys]
    return [poly[0] for poly in polys if poly and poly[0]]


def _ring_box(ring) -> tuple[float, float, float, float]:
    xs = [pt[0] for pt in ring]
    ys = [pt[1] for pt in ring]
    return min(xs), min(ys), max(xs), max(ys)


def _bounds(features: list) -> tuple[float, float, float, float]:
    """(west, south, east, north) of the features' coordinates."""
    boxes = [_ring_box(ring) for f in features for ring in _exteriors(f)]
    if not boxes:
        return (73.0, 18.0, 135.0, 54.0)
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def _fit_ranges(layout: dict, features: list, bounds: tuple | None = None) -> None:
    """Fit the map to its regions' extent through the axis ranges: ``fitbounds`` fits them into
    a square frame inside the panel (a 940x560 wall map drew Guangdong 504 px wide); ranges
    make the frame the regions' own shape, so the map fills the panel's height or width."""
    if not features:
        return
    w, s, e, n = bounds or _bounds(features)
    pad_x, pad_y = (e - w) * 0.02, (n - s) * 0.02
    layout["geo"].pop("fitbounds", None)
    layout["geo"]["lonaxis"] = {"range": [w - pad_x, e + pad_x]}
    layout["geo"]["lataxis"] = {"range": [s - pad_y, n + pad_y]}


def _merc(lat: float) -> float:
    return math.log(math.tan(math.pi / 4 + math.radians(max(-85.0, min(85.0, lat))) / 2))


def _text_width(text: str, font_px: float) -> float:
    """Drawn width of a label: a CJK character is about one em, Latin about 0.6 em."""
    return sum(font_px if ord(ch) > 0x2E80 else 0.6 * font_px for ch in text)


def place_labels(points: list, names: list[str], *, bounds: tuple, frame: tuple[int, int], font_px: float,
                 priority: list | None = None) -> list[tuple[float, float] | None]:
    """Where to write each region's name on a map of ``bounds`` (west, south, east, north)
    drawn in ``frame`` (width, height px, Mercator, fitted like :func:`_fit_ranges`): at its
    label point, else just above, below, left or right of it, else nowhere (its name is in the
    hover and the ranking) — so no two names overlap. ``priority`` (higher first, e.g. (level
    rank, area)) decides who keeps its place; by default the list's order.

    >>> place_labels([(113.30, 23.13), (113.31, 23.13)], ["越秀区", "荔湾区"], bounds=(113.0, 22.5, 114.0, 23.9),
    ...              frame=(400, 560), font_px=18)[1] != (113.31, 23.13)
    True
    """
    w, s, e, n = bounds
    fw, fh = frame
    x0, x1 = math.radians(w), math.radians(e)
    y0, y1 = _merc(s), _merc(n)
    scale = min(fw / max(x1 - x0, 1e-9), fh / max(y1 - y0, 1e-9)) / 1.04  # _fit_ranges pads 2 % a side
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2

    def to_px(lon, lat):
        return fw / 2 + (math.radians(lon) - cx) * scale, fh / 2 - (_merc(lat) - cy) * scale

    def to_lonlat(px, py):
        lon = math.degrees((px - fw / 2) / scale + cx)
        lat = math.degrees(2 * math.atan(math.exp(cy - (py - fh / 2) / scale)) - math.pi / 2)
        return lon, lat

    order = sorted(range(len(points)), key=lambda i: priority[i] if priority else -i, reverse=True)
    boxes: list[tuple[float, float, float, float]] = []
    out: list = [None] * len(points)
    gap = 2.0
    for i in order:
        px, py = to_px(*points[i])
        bw, bh = _text_width(names[i], font_px) + gap, font_px * 1.3 + gap
        for dx, dy in ((0, 0), (0, -bh), (0, bh), (-bw * 0.75, 0), (bw * 0.75, 0)):
            box = (px + dx - bw / 2, py + dy - bh / 2, px + dx + bw / 2, py + dy + bh / 2)
            if box[0] < 0 or box[1] < 0 or box[2] > fw or box[3] > fh:
                continue
            if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes):
                continue
            boxes.append(box)
            out[i] = points[i] if (dx, dy) == (0, 0) else to_lonlat(px + dx, py + dy)
            break
    return out


def _largest_ring_area(feature: dict) -> float:
    """Bounding-box area of the feature's largest ring (how much room its name has)."""
    return max(((b[2] - b[0]) * (b[3] - b[1]) for b in map(_ring_box, _exteriors(feature))), default=0.0)


def _label_point(feature: dict) -> tuple[float, float] | None:
    """Where to write a region's name: geo's centroid property, else the bbox centre of its
    largest ring (cheap and good enough for a label)."""
    p = feature.get("properties", {})
    if p.get("label_lon") is not None:
        return p["label_lon"], p["label_lat"]
    if p.get("centroid"):
        return tuple(p["centroid"])[:2]
    best, best_area = None, -1.0
    for ring in _exteriors(feature):
        x0, y0, x1, y1 = _ring_box(ring)
        if (x1 - x0) * (y1 - y0) > best_area:
            best, best_area = ((x0 + x1) / 2, (y0 + y1) / 2), (x1 - x0) * (y1 - y0)
    return best


def trend_figure(df: pd.DataFrame, *, lang: str = "zh", height: int = 220, font_px: int | None = None) -> dict:
    """Last 24 h: readings (bars, left axis), video events and new alerts (lines, right axis);
    ``font_px``: every text that high (a wall), with fewer hour ticks so they still fit."""
    idx = df.index
    if getattr(idx, "tz", None) is not None:
        idx = idx.tz_convert("Asia/Shanghai")  # the screens speak China Standard Time
    x = [ts.strftime("%H:00") for ts in idx]
    data = [
        {"type": "bar", "x": x, "y": df["readings"].tolist(), "name": t("trend.readings", lang),
         "marker": {"color": "#2f7bff"}, "opacity": 0.6},
        {"type": "scatter", "x": x, "y": df["events"].tolist(), "name": t("trend.events", lang), "yaxis": "y2",
         "mode": "lines+markers", "line": {"color": "#3fd0c9", "width": 2}},
        {"type": "scatter", "x": x, "y": df["alerts"].tolist(), "name": t("trend.alerts", lang), "yaxis": "y2",
         "mode": "lines+markers", "line": {"color": "#ff7f0e", "width": 2}},
    ]
    layout = {"height": height, "margin": {"l": 40, "r": 40, "t": 10, "b": 30}, "paper_bgcolor": BG,
              "plot_bgcolor": BG, "font": {"color": FG}, "legend": {"orientation": "h", "y": 1.15, "x": 0},
              "bargap": 0.2, "xaxis": {"gridcolor": GRID, "tickfont": {"size": 10}},
              "yaxis": {"gridcolor": GRID, "rangemode": "tozero"},
              "yaxis2": {"overlaying": "y", "side": "right", "rangemode": "tozero", "showgrid": False}}
    if font_px:
        layout["font"]["size"] = font_px
        layout["xaxis"].update(tickfont={"size": font_px}, nticks=8)
        layout["margin"] = {"l": 60, "r": 50, "t": 10, "b": 34}
        layout["legend"]["font"] = {"size": font_px}
    return {"data": data, "layout": layout}


def sparkline(values: list, *, colour: str = "#7cc4ff", height: int = 36) -> dict:
    """A tiny line without axes for a vital-sign card."""
    ys = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
    return {"data": [{"type": "scatter", "y": ys, "mode": "lines", "line": {"color": colour, "width": 1.5},
                      "fill": "tozeroy", "fillcolor": "rgba(124,196,255,0.15)", "hoverinfo": "skip",
                      "connectgaps": True}],
            "layout": {"height": height, "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "paper_bgcolor": BG,
                       "plot_bgcolor": BG, "xaxis": {"visible": False}, "yaxis": {"visible": False},
                       "showlegend": False}}


EVENT_COLOURS = {"crowd_gathering": "#ff4d8d", "road_ponding": "#2fb4ff", "fire_smoke": "#ff3b1f",
                 "illegal_parking": "#f5c518", "street_vending": "#c58cff",
                 "garbage_overflow": "#8bd450", "traffic_accident": "#ff9f1a"}


def aggregate_points(df: pd.DataFrame, *, max_points: int = 400, cell_deg: float = 0.01) -> pd.DataFrame:
    """Cluster dense points on a lon/lat lattice: at most ``max_points`` markers, each with the
    number of points it stands for (``n``) and the most frequent ``type`` among them.

    >>> d = pd.DataFrame({"lon": [113.30, 113.3001, 113.5], "lat": [23.1, 23.1001, 23.2],
    ...                   "type": ["a", "a", "b"]})
    >>> aggregate_points(d, max_points=2)[["n", "type"]].values.tolist()
    [[2, 'a'], [1, 'b']]
    """
    if df.empty or len(df) <= max_points:
        return df.assign(n=1)
    cell = cell_deg
    while True:
        keys = (df["lon"] // cell).astype("int64") * 1_000_003 + (df["lat"] // cell).astype("int64")
        if keys.nunique() <= max_points:
            break
        cell *= 2
    d = df[["lon", "lat", "type"]].assign(_k=keys.to_numpy())
    out = d.groupby("_k", sort=False).agg(lon=("lon", "mean"), lat=("lat", "mean"), n=("lon", "size"))
    # the most frequent type per cluster, vectorised (a per-group lambda costs 100+ ms here)
    by_type = d.groupby(["_k", "type"], sort=False).size().reset_index(name="c")
    top = by_type.sort_values(["c", "type"], ascending=[False, True]).drop_duplicates("_k").set_index("_k")["type"]
    out["type"] = top.reindex(out.index).to_numpy()
    return out.sort_values("n", ascending=False, kind="stable").reset_index(drop=True)


def sensor_marks(sensors: pd.DataFrame, selected: str | None = None) -> tuple[list[str], list[int]]:
    """Each sensor's marker colour (its worst open warning; green online, grey offline) and size
    (larger with a warning, largest when picked): the county map draws them, the live tick
    patches them."""
    colours = [LEVEL_COLOURS[lv] if lv != "none" else ("#3fd07a" if on else "#6b7785")
               for lv, on in zip(sensors["level"], sensors["online"].fillna(False).astype(bool))]
    sizes = [14 if s == selected else (10 if lv != "none" else 7)
             for s, lv in zip(sensors["sensor_id"], sensors["level"])]
    return colours, sizes


def sensor_trace(figure: dict) -> int | None:
    """Index of the county map's sensor trace (the one whose points are ["sensor", id])."""
    for i, tr in enumerate(figure.get("data", [])):
        cd = tr.get("customdata") or []
        if cd and isinstance(cd[0], list) and cd[0][0] == "sensor":
            return i
    return None


def county_map(boundary: dict, *, sensors: pd.DataFrame, cameras: pd.DataFrame, events: pd.DataFrame,
               grid: dict, lang: str = "zh", height: int | None = None,
               selected: str | None = None, focus: dict | None = None, font_px: int | None = None) -> dict:
    """The county: its boundary, grid cells shaded by activity, sensors coloured by their worst
    open alert (grey when offline), cameras, and recent video events: raw points are clustered
    when dense, or ``events`` may already be clusters (with ``n``, e.g. per camera).

    Clicking a sensor yields ``clickData.points[0].customdata`` = ["sensor", sensor_id].
    ``font_px``: the legend and the focus label that high (a wall).
    """
    from apps.catalogue import label

    data = []
    codes = [f["properties"]["adcode"] for f in boundary.get("features", [])]
    data.append({"type": "choropleth", "geojson": boundary, "featureidkey": "properties.adcode",
                 "locations": codes, "z": [0] * len(codes), "colorscale": [[0, "#12284a"], [1, "#12284a"]],
                 "showscale": False, "marker": {"line": {"color": "#9cc7ff", "width": 1.5}},
                 "hoverinfo": "skip", "showlegend": False})
    feats = grid.get("features", [])
    if feats:
        data.append({"type": "choropleth", "geojson": grid, "featureidkey": "properties.grid_id",
                     "locations": [f["properties"]["grid_id"] for f in feats],
                     "z": [f["properties"]["n"] for f in feats], "colorscale": [[0, "#1b3d6b"], [1, "#ffb020"]],
                     "showscale": False, "marker": {"line": {"width": 0.2, "color": "#2a5185"}, "opacity": 0.75},
                     "text": [f"{t('legend.grid', lang)} {f['properties']['grid_id']}: {f['properties']['n']}"
                              for f in feats],
                     "hoverinfo": "text", "name": t("legend.grid", lang)})
    if not cameras.empty:
        data.append({"type": "scattergeo", "lon": cameras["lon"].tolist(), "lat": cameras["lat"].tolist(),
                     "mode": "markers", "marker": {"symbol": "square", "size": 6, "color": "#9aa7b8"},
                     "text": [plain(c) for c in cameras["camera_id"]], "hoverinfo": "text", "name": t("legend.camera", lang)})
    if not events.empty:
        ev = events if "n" in events else aggregate_points(events)
        if len(ev) > 400:
            ev = aggregate_points(ev.loc[ev.index.repeat(ev["n"])].drop(columns="n"))
        data.append({"type": "scattergeo", "lon": ev["lon"].tolist(), "lat": ev["lat"].tolist(), "mode": "markers",
                     "marker": {"size": [min(6 + 3 * math.sqrt(n), 30) for n in ev["n"]],
                                "color": [EVENT_COLOURS.get(x, "#ffffff") for x in ev["type"]],
                                "opacity": 0.8, "line": {"width": 0}},
                     "text": [f"{label('event', x, lang)} ×{n}" for x, n in zip(ev["type"], ev["n"])],
                     "hoverinfo": "text", "name": t("legend.event", lang)})
    if not sensors.empty:
        colours, sizes = sensor_marks(sensors, selected)
        data.append({"type": "scattergeo", "lon": sensors["lon"].tolist(), "lat": sensors["lat"].tolist(),
                     "mode": "markers",
                     "marker": {"size": sizes, "color": colours, "line": {"width": 1, "color": "#0b1a2e"}},
                     "text": [f"{plain(sid)}<br>{label('metric', m, lang) if m else ''}" for sid, m in
                              zip(sensors["sensor_id"], sensors["metric"])],
                     "customdata": [["sensor", s] for s in sensors["sensor_id"]],
                     "hoverinfo": "text", "name": t("legend.sensor", lang)})
    if focus and focus.get("lon") is not None and not pd.isna(focus.get("lon")):
        # the alert opened from a ticker or a link: a ring where it is, on top of everything
        data.append({"type": "scattergeo", "lon": [focus["lon"]], "lat": [focus["lat"]], "mode": "markers+text",
                     "marker": {"symbol": "circle-open", "size": 34,
                                "color": LEVEL_COLOURS.get(focus.get("level"), "#ffffff"), "line": {"width": 4}},
                     "text": [plain(focus.get("title"))], "textposition": "top center",
                     "textfont": {"color": "#ffffff", "size": font_px or 13}, "hoverinfo": "text",
                     "name": plain(focus.get("title")), "showlegend": False})
    layout = _geo_layout(showlegend=True, legend={"x": 0, "y": 0, "bgcolor": "rgba(6,17,31,0.7)",
                                                  **({"font": {"size": font_px}} if font_px else {})},
                         **({"height": height} if height else {}))
    _fit_ranges(layout, boundary.get("features", []))
    return {"data": data, "layout": layout}


# Numeric time ticks in every language: Plotly's own date labels are English ("Dec 2, 2026").
TIME_AXIS = {"tickformatstops": [{"dtickrange": [None, 86_400_000], "value": "%H:%M"},
                                 {"dtickrange": [86_400_000, None], "value": "%m-%d"}],
             "hoverformat": "%m-%d %H:%M"}


def series_figure(df: pd.DataFrame, *, thresholds: dict | None = None, lang: str = "zh",
                  title: str = "", height: int = 260, font_px: int | None = None) -> dict:
    """One sensor's readings with its warning thresholds as dashed lines by level (``font_px``:
    every text that high, for a wall)."""
    shapes, notes = [], []
    for lv, value in (thresholds or {}).items():
        if value is None:
            continue
        colour = LEVEL_COLOURS.get(lv, "#aaa")
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": value, "y1": value,
                       "line": {"dash": "dash", "color": colour}})
        notes.append({"xref": "paper", "x": 1, "y": value, "xanchor": "right", "yanchor": "bottom",
                      "showarrow": False, "font": {"color": colour, **({"size": font_px} if font_px else {})},
                      "text": f"{t('alert.level.' + lv, lang) if lv in LEVEL_COLOURS else lv} {value:g}"})
    stamps = pd.to_datetime(df["ts"])
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)  # China Standard Time axis
    data = [{"type": "scatter", "x": [ts.isoformat() for ts in stamps],
             "y": df["value"].tolist(), "mode": "lines", "line": {"color": "#7cc4ff"},
             "name": plain(title) or t("col.value", lang)}]
    layout = {"height": height, "margin": {"l": 40, "r": 10, "t": 30, "b": 30}, "paper_bgcolor": BG,
              "plot_bgcolor": BG, "font": {"color": FG}, "title": {"text": plain(title), "font": {"size": 13}},
              "xaxis": {"gridcolor": GRID, **TIME_AXIS}, "yaxis": {"gridcolor": GRID}, "showlegend": False,
              "shapes": shapes, "annotations": notes}
    if font_px:
        layout["font"]["size"] = layout["title"]["font"]["size"] = font_px
        layout["xaxis"].update(tickfont={"size": font_px}, nticks=6, tickformat="%H:%M")
        layout["yaxis"]["tickfont"] = {"size": font_px}
        layout["margin"] = {"l": 60, "r": 10, "t": 40, "b": 40}
    return {"data": data, "layout": layout}
