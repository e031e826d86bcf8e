"""The app serialises callback answers with plotly's "json" engine (faster on component trees,
see ``apps.app._fast_json``): it must give the same JSON as the "orjson" engine for what views
return — components, figures with numpy arrays, NaN and infinities, timestamps, Chinese text and
markup-like strings."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import plotly.io as pio
from dash import dcc, html
from plotly.io.json import to_json_plotly

from apps.app import _fast_json


def _view():
    return html.Div([
        html.Table([html.Tr([html.Td("粤A·<script>"), html.Td(3.5), html.Td(None)])]),
        dcc.Graph(figure={"data": [{"type": "scatter", "z": np.array([1.0, np.nan, 3.0]),
                                    "x": pd.to_datetime(["2026-12-01 08:00", "2026-12-01 09:00"]),
                                    "y": [float("nan"), math.inf, -math.inf], "n": np.int64(7)}]}),
        dcc.Store(id="s", data={"levels": ["red", "橙色"], "ts": pd.Timestamp("2026-12-01T00:00:00Z")}),
    ], id="page", style={"height": "100%"})


def test_json_engine_gives_the_same_answer_as_orjson():
    before = pio.json.config.default_engine
    try:
        pio.json.config.default_engine = "orjson"
        reference = json.loads(to_json_plotly(_view()))
        _fast_json()
        assert pio.json.config.default_engine == "json"
        assert json.loads(to_json_plotly(_view())) == reference
    finally:
        pio.json.config.default_engine = before
