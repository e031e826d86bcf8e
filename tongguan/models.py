"""Imports every module that defines tables, so the shared metadata is complete."""

import tongguan.tables  # noqa: F401
import geo.models  # noqa: F401
import ingest.models  # noqa: F401
import analytics.models  # noqa: F401
import analytics.alerting.models  # noqa: F401
import apps.access_models  # noqa: F401
