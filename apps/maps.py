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
               labels: bool = True, source: str | None = None) -> dict:
    """Choropleth of the children in ``geojson`` coloured by ``state.worst`` (worst open level).

    ``state`` comes from :func:`apps.queries.region_state`; children missing from it are "none".
    Clicking a region yields ``clickData.points[0].location`` = its adcode. Returned as a plain
    figure dict: plotly's graph objects would validate every coordinate of the boundaries on
    each request, which costs more than all the view's queries together. With ``source`` (a URL
    serving the same GeoJSON) the browser loads the boundaries from there, once, cached.
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
        lon, lat, names = [], [], []
        for f, r in zip(features, rows):
            c = _label_point(f)
            if c is None:
                continue
            lon.append(c[0])
            lat.append(c[1])
            names.append(r["name_en"] if lang == "en" and r.get("name_en") else r["name"])
        data.append({"type": "scattergeo", "lon": lon, "lat": lat, "text": names, "mode": "text",
                     "hoverinfo": "skip", "textfont": {"color": "#ffffff", "size": 11}})
    layout = _geo_layout(showlegend=False, dragmode=False, **({"height": height} if height else {}))
    return {"data": data, "layout": layout}


def _label_point(feature: dict) -> tuple[float, float] | None:
    """Where to write a region's name: geo's centroid property, else the bbox centre of its
    largest ring (cheap and good enough for a label)."""
    p = feature.get("properties", {})
    if p.get("label_lon") is not None:
        return p["label_lon"], p["label_lat"]
    if p.get("centroid"):
        return tuple(p["centroid"])[:2]
    geom = feature.get("geometry") or {}
    polys = geom.get("coordinates") or []
    if geom.get("type") == "Polygon":
        polys = [polys]
    best, best_area = None, -1.0
    for poly in polys:
        if not poly:
            continue
        ring = poly[0]
        xs = [pt[0] for pt in ring]
        ys = [pt[1] for pt in ring]
        area = (max(xs) - min(xs)) * (max(ys) - min(ys))
        if area > best_area:
            best, best_area = ((max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2), area
    return best


def trend_figure(df: pd.DataFrame, *, lang: str = "zh", height: int = 220) -> dict:
    """Last 24 h: readings (bars, left axis), video events and new alerts (lines, right axis)."""
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
               selected: str | None = None, focus: dict | None = None) -> dict:
    """The county: its boundary, grid cells shaded by activity, sensors coloured by their worst
    open alert (grey when offline), cameras, and recent video events: raw points are clustered
    when dense, or ``events`` may already be clusters (with ``n``, e.g. per camera).

    Clicking a sensor yields ``clickData.points[0].customdata`` = ["sensor", sensor_id].
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
                     "textfont": {"color": "#ffffff", "size": 13}, "hoverinfo": "text",
                     "name": plain(focus.get("title")), "showlegend": False})
    layout = _geo_layout(showlegend=True, legend={"x": 0, "y": 0, "bgcolor": "rgba(6,17,31,0.7)"},
                         **({"height": height} if height else {}))
    return {"data": data, "layout": layout}


def series_figure(df: pd.DataFrame, *, thresholds: dict | None = None, lang: str = "zh",
                  title: str = "", height: int = 260) -> dict:
    """One sensor's readings with its warning thresholds as dashed lines by level."""
    shapes, notes = [], []
    for lv, value in (thresholds or {}).items():
        if value is None:
            continue
        colour = LEVEL_COLOURS.get(lv, "#aaa")
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": value, "y1": value,
                       "line": {"dash": "dash", "color": colour}})
        notes.append({"xref": "paper", "x": 1, "y": value, "xanchor": "right", "yanchor": "bottom",
                      "showarrow": False, "font": {"color": colour},
                      "text": f"{t('alert.level.' + lv, lang) if lv in LEVEL_COLOURS else lv} {value:g}"})
    stamps = pd.to_datetime(df["ts"])
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)  # China Standard Time axis
    data = [{"type": "scatter", "x": [ts.isoformat() for ts in stamps],
             "y": df["value"].tolist(), "mode": "lines", "line": {"color": "#7cc4ff"},
             "name": plain(title) or t("col.value", lang)}]
    layout = {"height": height, "margin": {"l": 40, "r": 10, "t": 30, "b": 30}, "paper_bgcolor": BG,
              "plot_bgcolor": BG, "font": {"color": FG}, "title": {"text": plain(title), "font": {"size": 13}},
              "xaxis": {"gridcolor": GRID}, "yaxis": {"gridcolor": GRID}, "showlegend": False,
              "shapes": shapes, "annotations": notes}
    return {"data": data, "layout": layout}
