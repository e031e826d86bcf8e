"""Video-event surges: counts per place (grid cell), event type and window against a learned
baseline for that place and hour of day.

The baseline is a Poisson rate per (place, type, hour); a window whose count is improbably high
under it (upper-tail probability below ``p_value``) and at least ``min_events`` is a surge. The
estimator learns rates from history (``fit``) and falls back to a prior rate for places it has not
seen, so it works from the first day.
"""

from __future__ import annotations

from collections import defaultdict, deque

import numpy as np
import pandas as pd
from scipy.stats import poisson
from sklearn.base import BaseEstimator

from analytics.features import hour_of_day
from analytics.policy import load_policy

# Window and level policy per event type (policy.yaml: surge); types not listed use "default".
SURGE_POLICY = load_policy().surge


class SurgeDetector(BaseEstimator):
    """Learned per-(place, type, hour) event rates; see the module docstring.

    ``prior_rate``: events per hour assumed where history is missing; ``smoothing``: hours of the
    prior blended into each learned rate (so one quiet week does not make any event a surge).
    """

    def __init__(self, prior_rate: float = 0.2, smoothing: float = 2.0, p_value: float = 1e-3):
        self.prior_rate = prior_rate
        self.smoothing = smoothing
        self.p_value = p_value

    def fit(self, X: pd.DataFrame, y=None):
        """``X``: columns place, type, ts (epoch seconds) of historical events."""
        self.rates_ = {}
        self.type_rates_ = {}
        if len(X):
            ts = X["ts"].to_numpy(dtype=float)
            hours = ((ts + 8 * 3600) % 86400 // 3600).astype(int)
            span_days = max((ts.max() - ts.min()) / 86400.0, 1.0)
            counts = pd.Series(1, index=pd.MultiIndex.from_arrays([X["place"], X["type"], hours])).groupby(level=[0, 1, 2]).sum()
            for (place, etype, hour), n in counts.items():
                # events per hour at that hour of day, shrunk towards the prior
                self.rates_[(place, etype, int(hour))] = (n + self.prior_rate * self.smoothing) / (span_days + self.smoothing)
            # places never seen: the type's mean rate per place with events (cameras move, cells are new)
            per_type = X.groupby("type")["place"].nunique()
            for etype, n in X.groupby("type").size().items():
                self.type_rates_[etype] = max(self.prior_rate, n / span_days / 24.0 / per_type[etype])
        self.n_events_ = len(X)
        return self

    def prior(self):
        self.rates_ = {}
        self.type_rates_ = {}
        self.n_events_ = 0
        return self

    def rate(self, place: str, etype: str, hour: int) -> float:
        found = self.rates_.get((place, etype, hour))
        return found if found is not None else self.type_rates_.get(etype, self.prior_rate)

    def assess(self, place: str, etype: str, t: float, count: int) -> tuple[bool, float, float]:
        """(surge?, expected count in the window, upper-tail probability) for ``count`` events in
        the window ending at ``t``."""
        pol = SURGE_POLICY.get(etype, SURGE_POLICY["default"])
        expected = self.rate(place, etype, hour_of_day(t)) * pol["window_s"] / 3600.0
        p = float(poisson.sf(count - 1, expected))  # P(N >= count)
        return (count >= pol["min_events"] and p < self.p_value), expected, p


class SurgeWindows:
    """Sliding event windows per (place, type) — the streaming state of surge detection.

    Bounded whatever the cameras send: a window keeps at most ``MAX_WINDOW_EVENTS`` events (a
    count that high is a surge by any policy, so the count saturating there changes no decision),
    and every ``SWEEP_EVERY`` events the places whose last event has left its window are dropped,
    so events scattered over ever new places (or made-up coordinates) do not pile up keys."""

    MAX_WINDOW_EVENTS = 10_000
    SWEEP_EVERY = 4096

    def __init__(self):
        self.events: dict[tuple[str, str], deque] = defaultdict(deque)
        self._since_sweep = 0

    def add(self, place: str, etype: str, t: float) -> int:
        pol = SURGE_POLICY.get(etype, SURGE_POLICY["default"])
        q = self.events[(place, etype)]
        q.append(t)
        while q and (q[0] <= t - pol["window_s"] or len(q) > self.MAX_WINDOW_EVENTS):
            q.popleft()
        self._since_sweep += 1
        if self._since_sweep >= self.SWEEP_EVERY:
            self._since_sweep = 0
            self._sweep(t)
        return len(q)

    def _sweep(self, now: float) -> None:
        for key in [k for k, q in self.events.items()
                    if not q or q[-1] <= now - SURGE_POLICY.get(k[1], SURGE_POLICY["default"])["window_s"]]:
            del self.events[key]

    def count(self, place: str, etype: str, now: float) -> int:
        pol = SURGE_POLICY.get(etype, SURGE_POLICY["default"])
        q = self.events.get((place, etype))
        if not q:
            return 0
        while q and q[0] <= now - pol["window_s"]:
            q.popleft()
        return len(q)


def place_of(lon: float, lat: float, county: str = "", grid_id: str | None = None, cell_deg: float = 0.01) -> str:
    """The grid cell of a point: the geo grid id when known, else a ~1 km lon/lat cell in its county.

    >>> place_of(113.3245, 23.1291, "440106")
    '440106:11332:2312'
    """
    if grid_id:
        return grid_id
    return f"{county}:{int(np.floor(lon / cell_deg))}:{int(np.floor(lat / cell_deg))}"
