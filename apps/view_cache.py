"""A few seconds' cache of the views' queries, per (caller's scope, query and arguments), and
of the region pages' rendered layouts (:func:`page_layout`).

Why: a duty room has many screens on the same few regions, and each asks every 2 s for the
same live figures (KPIs, the map's levels, new alerts) and, on a page view, for what another
operator of the same region asked a moment ago. Each query costs a pooled connection whose
checkout and checkin switch the row-level-security scope (several round trips to PostgreSQL),
plus the query: on a busy two-core machine those waits, not Python, set how many operators a
server carries. Reusing a result from the last ``ttl_s`` seconds leaves the screens at most
that much staler; the live tick runs every 2 s anyway.

The key is the function, the database, the caller's scope as row-level security sees it and
the arguments, so a result is only reused for a caller who would have read the same rows. What
row-level security sees is the signed claim: home region and operator flag for every regional
table, and the user name for one table only, ``inbox_messages`` (a user's own inbox). So
operators of one region share results (a duty room's dozen screens on Guangzhou ask once), and a
query that reads per-user rows says so with ``@memo(per_user=True)`` to be keyed by user too. Outside a request (workers, the
command line, tests calling the functions) and until ``enable`` is called — ``tongguan serve``
does — nothing is cached. Identical calls that arrive together run once: the others wait.

Per process by design (gunicorn workers do not share it): it holds results seconds old, so a
worker that misses runs the query itself; nothing depends on its contents.
"""

from __future__ import annotations

import copy
import functools
import threading
import time
from collections import OrderedDict

MAX_ENTRIES = 1024
# A city page's layout is ~140 kB of JSON, about 1 MB as Python values: a few dozen per process
# (a duty room's regions × languages × screens) and the oldest make room.
MAX_LAYOUTS = 48

_ttl_s = 0.0
_layout_ttl_s = 0.0
_entries: OrderedDict = OrderedDict()
_layouts: OrderedDict = OrderedDict()
_inflight: dict = {}
_lock = threading.Lock()
stats = {"hits": 0, "misses": 0}


def enable(ttl_s: float, layout_ttl_s: float = 0.0) -> None:
    """Cache query results for ``ttl_s`` seconds and rendered region pages for ``layout_ttl_s``
    seconds from now on in this process (0: off)."""
    global _ttl_s, _layout_ttl_s
    _ttl_s = max(0.0, float(ttl_s))
    _layout_ttl_s = max(0.0, float(layout_ttl_s))
    clear()


def clear() -> None:
    with _lock:
        _entries.clear()
        _layouts.clear()


def _private(value):
    """A copy the caller may change without changing the cached result."""
    if hasattr(value, "copy") and hasattr(value, "columns"):  # a pandas DataFrame
        return value.copy()
    if hasattr(value, "copy") and hasattr(value, "index"):  # a pandas Series
        return value.copy()
    if isinstance(value, dict | list):
        return copy.deepcopy(value)
    return value


def _once(key, compute, ttl_s: float, entries: OrderedDict = _entries, limit: int = MAX_ENTRIES):
    """The entry of ``key`` when younger than the enabled time, else ``compute()`` stored under
    it; identical calls that arrive together compute once, the others wait for that result."""
    while True:
        with _lock:
            entry = entries.get(key)
            if entry is not None and time.monotonic() - entry[0] < ttl_s:
                entries.move_to_end(key)
                stats["hits"] += 1
                return entry[1]
            waiting = _inflight.get(key)
            if waiting is None:
                done = _inflight[key] = threading.Event()
                stats["misses"] += 1
                break
        waiting.wait(timeout=30)  # another thread is computing the same entry
    try:
        value = compute()
        with _lock:
            entries[key] = (time.monotonic(), value)
            entries.move_to_end(key)
            while len(entries) > limit:
                entries.popitem(last=False)
        return value
    finally:
        with _lock:
            _inflight.pop(key, None)
        done.set()


def memo(fn=None, *, per_user: bool = False):
    """Cache ``fn(engine, **kwargs)`` per caller scope for the enabled time (see the module);
    ``per_user``: the query reads rows of the calling user (the inbox), key by user name too."""
    if fn is None:
        return functools.partial(memo, per_user=per_user)

    @functools.wraps(fn)
    def wrapper(engine, *args, **kwargs):
        if _ttl_s <= 0:
            return fn(engine, *args, **kwargs)
        from apps import scope as scope_mod

        scope = scope_mod.current()
        if scope is None or not scope.home:  # not in a scoped request
            return fn(engine, *args, **kwargs)
        key = (fn.__qualname__, str(engine.url), scope.home, scope.is_operator,
               scope.username if per_user else None, repr(args), repr(sorted(kwargs.items())))
        return _private(_once(key, lambda: fn(engine, *args, **kwargs), _ttl_s))

    return wrapper


def page_layout(layout, *, version):
    """Cache a region page's rendered layout (``layout(adcode, **query)``) for the enabled
    layout time, per caller and page state; see the module. What the cache keeps is the layout
    as plain JSON values (what Dash would send), so a hit costs neither building the ~1,000
    components of a city page nor Plotly's encoder walking them.

    The key is the page, the region, every query argument (theme, window, language, screen,
    focus), the caller's home region and roles (two callers share a page only when the access
    rules and row-level security cannot tell them apart) and ``version(adcode)``: the database
    and the token of the region's alerts the live tables follow, a raised or handled alert renders the page anew
    at once. The other figures on a page (KPIs, map colours, ticker, ranking, vital signs) may
    be up to the layout time old: the page's ``shown`` store is cached with them, so the first
    live tick (2 s) compares with what this page shows and sends what changed. Nothing of the
    user (name, CSRF token) is in a page layout; they are in the frame and the cookie.

    A refusal (the region is outside the caller's scope) is an exception, never cached, so it is
    raised and audited every time; outside a scoped request nothing is cached."""

    @functools.wraps(layout)
    def wrapper(adcode=None, **query):
        from apps import scope as scope_mod

        scope = scope_mod.current()
        code = str(adcode or "").strip()
        if (_layout_ttl_s <= 0 or scope is None or not scope.home
                or not (len(code) == 6 and code.isdigit())):
            return layout(adcode, **query)
        key = (layout.__module__, layout.__qualname__, scope.home, tuple(sorted(scope.roles)), code,
               repr(sorted(query.items())), version(code))
        return _once(key, lambda: _as_json(layout(adcode, **query)), _layout_ttl_s, _layouts, MAX_LAYOUTS)

    return wrapper


def _as_json(component):
    """``component`` as the plain JSON values Dash sends for it (shared by every hit: nothing
    changes it, Dash only serialises it)."""
    import json

    from plotly.io.json import to_json_plotly

    return json.loads(to_json_plotly(component))
