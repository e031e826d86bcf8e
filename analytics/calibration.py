"""Calibration: a raw anomaly score -> its tail probability in the sensor's own recent history.

A raw score (a robust z, a Hotelling T², a run length) means different things on different
sensors: |z| = 4 is routine on a vibration channel and unheard of on a water gauge. A
:class:`TailCalibrator` keeps a bounded, slowly forgetting histogram of one sensor's raw scores
on *normal* readings (the detector stops feeding it while the sensor is in an abnormal regime)
and answers ``p(x)``: the share of that history at or above ``x``. Beyond the anchor quantile the
tail is extrapolated as a generalised Pareto tail (peaks over threshold), so rare levels (1e-5) have a
p-value without 1e5 readings of memory. Before ``min_count`` readings a prior tail is used: a
standardised score treated as Laplace-like (5 % above 2, scale 1), so a cold start is
conservative but not blind.

``level_score(p)`` maps a tail probability to the 0..1 score the thresholder cuts: each level's
configured rate lands exactly on its cut, so on normal data each level is exceeded at its
configured rate. The rates are configured per sensor-day (``anomaly.yaml`` ``rates_per_day``),
not per reading: a sensor read once a second has 1,440 times as many chances a day as one read
once a minute, so :func:`per_reading` converts them with the sensor's sampling interval, which
:class:`SamplingInterval` learns online from its timestamps (robust to jitter and gaps).

>>> cal = TailCalibrator()
>>> for i in range(2000):
...     cal.add(abs(((i * 7919) % 1000) / 250.0 - 2.0))   # spread evenly over 0..2
>>> 0.45 < cal.p(1.0) < 0.55, cal.p(6.0) < 1e-3
(True, True)
"""

from __future__ import annotations

import math
from array import array

# Bin edges of raw scores (>= 0): [0, E0) then geometric up to about 1e4 (T² of a site is large);
# small enough at the bottom for a sensor whose noise floor keeps its z-scores well below 1.
_E0 = 0.01
_RATIO = 1.15
_LOG_RATIO = math.log(_RATIO)
N_BINS = 2 + int(math.log(1e4 / _E0) / _LOG_RATIO)  # 100
EDGES = [0.0] + [_E0 * _RATIO ** k for k in range(N_BINS)]  # EDGES[k] is the lower edge of bin k
HALF_LIFE = 5000.0  # readings: the history forgets slowly (a month of minute readings ~ 9 half-lives)
MIN_COUNT = 25.0  # weighted readings before the sensor's own history is trusted
ANCHOR_TAIL = 0.02  # empirical tail down to this share; beyond it, exponential extrapolation
REFRESH = 64  # readings between recomputing the tail table (the hot path only reads it)
P_FLOOR = 1e-12
PRIOR_SCALE = 0.5  # prior mean excess above the anchor, relative to the anchor
PRIOR_EXCESSES = 20.0
# The narrowest tail a history may claim is its raw scores' resolution (the smallest non-zero score
# it has seen, learned online), at most PRIOR_MIN_SCALE in raw-score units (z-like scores: a
# quarter of the noise). A quantised gauge that mostly sits still scores almost only zeros and
# one-step multiples; a tail fitted to them alone is ~0 wide, so its next one-step move gets p ~ 0
# and opens a regime, whose readings are not learned, so the history never corrects (it flagged
# 44 % of such a series' rows). A continuous score (resolution ~0) keeps the tail its history
# shows: a fixed 0.25 floor on every sensor cost SKAB per channel F1 0.64 -> 0.55.
PRIOR_MIN_SCALE = 0.25
MAX_XI = 0.5  # the heaviest tail a history may claim (a Pareto tail of index 2)
# The shape's own shrinkage toward an exponential tail: as if XI_PRIOR_N excesses had shown one.
# Scores are serially correlated (a CUSUM, a slow trend's level residual), so the excesses of a
# short history come in a few clusters and their moments overstate the shape: on SKAB's files
# (360 readings of history at the end of the warm-up, ~13 excesses) a thermocouple's CUSUM claimed
# xi 0.28, which put blue (p ~3e-7 per component of a site) at ~20 times its anchor. 50 excesses
# are 2,500 readings at the 2 % anchor: a long live history keeps most of its shape (SKAB site F1
# 0.67 -> 0.72, per channel 0.39 -> 0.59; at 100 the per-channel detector raised two false alarms
# on the anomaly-free recording, 2.27 a sensor-day: one accelerometer's small level shifts).
XI_PRIOR_N = 50.0


def _bin(x: float) -> int:
    if x < _E0:
        return 0
    k = 1 + int(math.log(x / _E0) / _LOG_RATIO)
    return k if k < N_BINS else N_BINS - 1


class TailCalibrator:
    """Bounded history of one raw score (``N_BINS`` doubles plus a tail table of as many floats)."""

    __slots__ = ("anchor_p", "anchor_x", "bins", "prior", "quantum", "sigma", "since", "tail", "total", "w", "xi")

    def __init__(self) -> None:
        self.bins = array("d", bytes(8 * N_BINS))
        self.w = 1.0  # weight of the next reading; grows so old readings count less (no per-step decay)
        self.total = 0.0
        self.since = REFRESH
        self.tail = array("f", bytes(4 * (N_BINS + 1)))  # single precision: p-values need no more
        self.anchor_x = 2.0
        self.anchor_p = 0.05
        self.xi = 0.0
        self.sigma = 1.0
        self.prior = True
        self.quantum = math.inf  # the smallest non-zero raw score seen (its resolution)

    @property
    def nbytes(self) -> int:
        return self.bins.itemsize * len(self.bins) + self.tail.itemsize * len(self.tail) + 9 * 8

    def count(self) -> float:
        """Effective number of readings in the history (weights relative to the newest)."""
        return self.total / self.w

    def add(self, x: float) -> None:
        """Admit the raw score of a normal reading."""
        if 0.0 < x < self.quantum:
            self.quantum = x
        self.bins[_bin(x)] += self.w
        self.total += self.w
        self.w *= 1.0 + math.log(2.0) / HALF_LIFE
        if self.w > 1e100:  # rescale before floats overflow; relative weights are kept
            s = 1.0 / self.w
            for k in range(N_BINS):
                self.bins[k] *= s
            self.total *= s
            self.w = 1.0
        self.since += 1
        if self.since >= REFRESH or (self.prior and self.total >= MIN_COUNT * self.w):
            self._refresh()

    def _refresh(self) -> None:
        self.since = 0
        if self.total / self.w < MIN_COUNT:
            self.prior = True
            return
        self.prior = False
        acc = 0.0
        bins, tail, total = self.bins, self.tail, self.total
        tail[N_BINS] = 0.0
        for k in range(N_BINS - 1, -1, -1):
            acc += bins[k]
            tail[k] = acc / total
        # anchor: the highest bin edge with at least ANCHOR_TAIL of the history (and 10 readings)
        # above it; the empirical tail is used below it, the fitted tail above
        target = max(ANCHOR_TAIL, 10.0 / (total / self.w))
        k = 1
        while k + 1 < N_BINS and tail[k + 1] >= target:
            k += 1
        # (never below one reading's share: n readings cannot show a rarer tail than 1 / (n + 1))
        self.anchor_x, self.anchor_p = EDGES[k], max(tail[k], 1.0 / (total / self.w + 1.0))
        # Generalised Pareto tail above the anchor, by the method of moments on the excesses
        # (bin mid-points): shape xi > 0 is a heavy tail, 0 an exponential one. xi is never taken
        # below 0 (a short history is no proof of a bounded tail) nor above MAX_XI, and both
        # moments are shrunk toward an exponential tail of scale PRIOR_SCALE as if PRIOR_EXCESSES
        # readings had shown it: a few excesses say little about the tail's shape. The shape is
        # shrunk further toward 0, by n / (n + XI_PRIOR_N) for n excesses (see XI_PRIOR_N).
        s1 = s2 = wt = 0.0
        for j in range(k, N_BINS):
            if bins[j]:
                y = max((EDGES[j] + EDGES[j + 1]) / 2.0 - self.anchor_x, 0.0) if j + 1 <= N_BINS else 0.0
                s1 += bins[j] * y
                s2 += bins[j] * y * y
                wt += bins[j]
        n_ex = wt / self.w
        scale0 = max(PRIOR_SCALE * self.anchor_x, min(self.quantum, PRIOR_MIN_SCALE))
        m = (s1 / self.w + PRIOR_EXCESSES * scale0) / (n_ex + PRIOR_EXCESSES)
        m2 = (s2 / self.w + PRIOR_EXCESSES * 2 * scale0 * scale0) / (n_ex + PRIOR_EXCESSES)
        var = max(m2 - m * m, 1e-24)
        xi = min(max(0.5 * (1.0 - m * m / var) * n_ex / (n_ex + XI_PRIOR_N), 0.0), MAX_XI)
        self.xi = xi
        self.sigma = max(m * (1.0 - xi), 1e-12)  # the mean excess of a GPD is sigma / (1 - xi)

    def p(self, x: float) -> float:
        """Tail probability of raw score ``x`` (1 for x <= 0)."""
        if x <= 0.0:
            return 1.0
        if self.prior:
            return 1.0 if x <= 2.0 else max(0.05 * math.exp(-(x - 2.0)), P_FLOOR)
        if x >= self.anchor_x:
            y = (x - self.anchor_x) / self.sigma
            tail = math.exp(-y) if self.xi < 1e-6 else (1.0 + self.xi * y) ** (-1.0 / self.xi)
            return max(self.anchor_p * tail, P_FLOOR)
        k = _bin(x)
        lo = EDGES[k]
        hi = EDGES[k + 1]
        frac = (x - lo) / (hi - lo)
        return self.tail[k + 1] + (1.0 - frac) * (self.tail[k] - self.tail[k + 1])

    def state(self) -> dict:
        return {"count": round(self.count(), 1), "prior": self.prior, "anchor_x": round(self.anchor_x, 3),
                "anchor_p": self.anchor_p, "xi": round(self.xi, 3),
                "sigma": round(self.sigma, 4)}


DAY_S = 86400.0
DEFAULT_INTERVAL_S = 60.0  # assumed until a sensor's own timestamps show its interval
INTERVAL_STEPS = 8  # the interval is keyed in eighths of a doubling (9 % apart): points are cached per key
RATE_CAP = 0.1  # a per-reading rate never above this (a sensor read once a week still needs rare levels)


def interval_key(seconds: float) -> int:
    """The cache key of a sampling interval: eighths of a doubling away from a minute (so a
    minute sensor's rates are exactly the configured ones).

    >>> interval_key(60.0), interval_key(1.0), interval_key(1.04), round(key_seconds(-47), 3)
    (0, -47, -47, 1.022)
    """
    return round(INTERVAL_STEPS * math.log2(max(seconds, 1e-6) / DEFAULT_INTERVAL_S))


def key_seconds(key: int) -> float:
    """The interval a key stands for (the middle of its bucket)."""
    return DEFAULT_INTERVAL_S * 2.0 ** (key / INTERVAL_STEPS)


class SamplingInterval:
    """A sensor's typical time between readings, learned online from positive time steps.

    An exponentially weighted mean of log intervals (over about ``MEMORY`` steps) whose every
    move is clamped: after the first few steps no single step moves it by more than ``MAX_MOVE``
    (5 %), so a gap of hours (a sensor offline) or a burst of replays barely shifts it, while
    jitter averages out and a real change of rate (re-configured firmware) is followed within
    tens of readings. Three floats and an int.

    >>> iv = SamplingInterval()
    >>> for dt in [1.0, 1.1, 0.9, 1.0, 2.0, 1.0] * 20 + [18000.0] + [1.0, 0.9, 1.1] * 3:
    ...     iv.add(dt)
    >>> round(iv.seconds, 2), iv.key
    (1.1, -46)
    """

    MEMORY = 16.0
    MAX_MOVE = 0.05

    __slots__ = ("key", "log_s", "n", "seconds")

    def __init__(self) -> None:
        self.log_s = math.log(DEFAULT_INTERVAL_S)
        self.seconds = DEFAULT_INTERVAL_S
        self.n = 0
        self.key = interval_key(DEFAULT_INTERVAL_S)

    def add(self, dt: float) -> None:
        """Admit a positive time step (seconds)."""
        x = math.log(dt)
        n = self.n = self.n + 1
        if n == 1:
            self.log_s = x
        else:
            d = (x - self.log_s) / min(n, self.MEMORY)
            lim = max(self.MAX_MOVE, 2.0 / n)  # wider moves while it has seen few steps
            self.log_s += lim if d > lim else -lim if d < -lim else d
        self.seconds = math.exp(self.log_s)
        self.key = interval_key(self.seconds)


def per_reading(rates_per_day: dict[str, float], interval_s: float) -> dict[str, float]:
    """Rates per sensor-day -> per reading of a sensor read every ``interval_s`` seconds.

    >>> [f"{per_reading({'blue': 0.144}, s)['blue']:.3g}" for s in (60.0, 1.0)]
    ['0.0001', '1.67e-06']
    """
    return {lv: min(float(r) * interval_s / DAY_S, RATE_CAP * float(r) / max(rates_per_day.values()))
            for lv, r in rates_per_day.items()}


def level_points(rates: dict[str, float], cuts: dict[str, float]) -> list[tuple[float, float]]:
    """Anchor points (-log10 p, score) of :func:`level_score`: p = 1 scores 0, each level's tail
    rate scores exactly that level's cut, and one decade past the last level scores 1."""
    pts = sorted((-math.log10(rates[lv]), float(cuts[lv])) for lv in rates if lv in cuts)
    if not pts:
        raise ValueError("need at least one level with both a tail rate and a score cut")
    top_l, top_s = pts[-1]
    last = [(top_l + 1.0, 1.0)] if top_s < 1.0 else []
    return [(0.0, 0.0), *pts, *last]


def level_score(p: float, points: list[tuple[float, float]]) -> float:
    """Piecewise-linear in -log10 p through ``points``; 1.0 past the last one.

    >>> pts = level_points({"blue": 1e-3, "yellow": 1e-5}, {"blue": 0.6, "yellow": 0.9})
    >>> [round(level_score(p, pts), 3) for p in (1.0, 1e-3, 1e-5, 1e-9)]
    [0.0, 0.6, 0.9, 1.0]
    """
    if p >= 1.0:
        return 0.0
    lp = -math.log10(max(p, P_FLOOR))
    prev_l, prev_s = points[0]
    for l_, s_ in points[1:]:
        if lp <= l_:
            return prev_s + (s_ - prev_s) * (lp - prev_l) / (l_ - prev_l)
        prev_l, prev_s = l_, s_
    return 1.0


def score_p(score: float, points: list[tuple[float, float]]) -> float:
    """The inverse of :func:`level_score` (a score back to its tail probability)."""
    prev_l, prev_s = points[0]
    for l_, s_ in points[1:]:
        if score <= s_:
            return 10.0 ** -(prev_l + (l_ - prev_l) * (score - prev_s) / (s_ - prev_s))
        prev_l, prev_s = l_, s_
    return 10.0 ** -prev_l
