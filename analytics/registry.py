"""The model registry: versioned joblib files under ``settings.home/models/`` plus the ``models``
table, which is the index the live detector reads.

Layout: ``models/<kind>/<metric>/<sensor or _all>/v<version>.joblib``. A version is never
overwritten; the latest version of (kind, metric, sensor) is the one in use.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import joblib
import sqlalchemy as sa

from analytics.detectors import SeriesDetector
from analytics.errors import AnalyticsError
from analytics.models import models as models_table

ALL = "_all"


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", part) or ALL


def model_dir(home: Path, kind: str, metric: str, sensor_id: str = "") -> Path:
    return Path(home) / "models" / kind / _safe(metric) / (_safe(sensor_id) if sensor_id else ALL)


def latest_file(home: Path, kind: str, metric: str, sensor_id: str = "") -> tuple[Path, int] | None:
    """The newest version's file on disk, for offline use without a database."""
    d = model_dir(home, kind, metric, sensor_id)
    versions = []
    for p in d.glob("v*.joblib") if d.is_dir() else ():
        m = re.fullmatch(r"v(\d+)\.joblib", p.name)
        if m:
            versions.append((int(m.group(1)), p))
    if not versions:
        return None
    v, p = max(versions)
    return p, v


def save_model(engine, home: Path, kind: str, metric: str, model, *, sensor_id: str = "",
               metrics: dict | None = None, n_train: int = 0) -> int:
    """Write the next version of a model (file first, then its row) and return the version."""
    with engine.begin() as conn:
        # serialise concurrent trainers of the same model on a transaction-level advisory lock
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                     {"k": f"tongguan.models:{kind}:{metric}:{sensor_id}"})
        current = conn.execute(sa.select(sa.func.max(models_table.c.version)).where(
            models_table.c.kind == kind, models_table.c.metric == metric,
            models_table.c.sensor_id == sensor_id)).scalar()
        on_disk = latest_file(home, kind, metric, sensor_id)
        version = max(current or 0, on_disk[1] if on_disk else 0) + 1
        d = model_dir(home, kind, metric, sensor_id)
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"v{version}.joblib"
        tmp = path.with_suffix(".joblib.part")
        joblib.dump({"model": model, "kind": kind, "metric": metric, "sensor_id": sensor_id,
                     "version": version, "created_at": datetime.now(UTC).isoformat()}, tmp)
        tmp.replace(path)
        conn.execute(models_table.insert().values(
            kind=kind, metric=metric, sensor_id=sensor_id, version=version,
            path=str(path.relative_to(Path(home))), metrics=metrics or {}, n_train=int(n_train)))
    return version


def load_file(path: Path):
    try:
        blob = joblib.load(path)
    except Exception as exc:  # joblib raises many kinds on corrupt or foreign files
        raise AnalyticsError(f"cannot load model file {path}: {exc}; retrain with `tongguan analytics train`") from exc
    return blob["model"]


def latest_models(engine, home: Path, kind: str) -> dict[tuple[str, str], tuple[object, int]]:
    """{(metric, sensor_id): (model, version)} of the latest version of every model of ``kind``."""
    q = sa.text("""
        SELECT DISTINCT ON (metric, sensor_id) metric, sensor_id, version, path
        FROM models WHERE kind = :kind ORDER BY metric, sensor_id, version DESC""")
    out = {}
    with engine.connect() as conn:
        rows = conn.execute(q, {"kind": kind}).all()
    for metric, sensor_id, version, path in rows:
        p = Path(home) / path
        if p.is_file():
            out[(metric, sensor_id)] = (load_file(p), int(version))
    return out


def detector_for_offline(metric: str | None, home: Path) -> tuple[SeriesDetector, str | None]:
    """The latest trained anomaly detector for ``metric`` from the registry files, else the
    untrained prior. Returns the detector and a label of its version."""
    if metric:
        found = latest_file(home, "anomaly", metric)
        if found:
            return load_file(found[0]), f"anomaly/{metric}@v{found[1]}"
    return SeriesDetector(metric=metric).prior(), None
