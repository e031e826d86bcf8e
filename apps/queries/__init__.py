"""The views' queries, as plain functions (tested directly in ``tests/apps``), one module per
subject: ``regions`` (the tree, adcode checks, display boundaries), ``alerts`` (state per region,
lists, ticker), ``rollups`` (readings and video events per region and hour, sensor counts),
``summary`` (the KPI strip, the trend, the city's vital signs) and ``county`` (a county's sensors,
cameras, events, grid activity and one sensor's series).

They read the tables as the migrations define them — the rollup tables, the alerts and their
handling, the sensor/camera registries — never the raw ``readings`` table, except
:func:`sensor_series` (one sensor, bounded time). Each takes an engine and keyword-only
arguments and returns plain Python / pandas values that the pages render.
"""

from apps.queries.alerts import (
    alerts_list,
    alerts_version,
    by_incident,
    escalations_waiting,
    region_state,
    region_state_at,
    thresholds,
    ticker,
)
from apps.queries.county import (
    county_cameras,
    county_event_clusters,
    county_events,
    county_sensors,
    grid_activity,
    sensor_series,
)
from apps.queries.regions import (
    check_region,
    children_geojson,
    children_geojson_bytes,
    clear_caches,
    geojson_url,
    plotly_orientation,
    region_tree,
)
from apps.queries.summary import kpis, open_alerts_value, trend, vitals

__all__ = ["alerts_list", "alerts_version", "by_incident", "check_region", "children_geojson", "children_geojson_bytes", "clear_caches",
           "county_cameras", "county_event_clusters", "county_events", "county_sensors", "escalations_waiting",
           "geojson_url", "grid_activity", "kpis", "open_alerts_value", "plotly_orientation", "region_state", "region_state_at", "region_tree",
           "sensor_series", "thresholds", "ticker", "trend", "vitals"]
