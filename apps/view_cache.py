"""A few seconds' cache of the views' queries, per (caller's scope, query and arguments).

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

_ttl_s = 0.0
_entries: OrderedDict = OrderedDict()
_inflight: dict = {}
_lock = threading.Lock()
stats = {"hits": 0, "misses": 0}


def enable(ttl_s: float) -> None:
    """Cache for ``ttl_s`` seconds from now on in this process (0: off)."""
    global _ttl_s
    _ttl_s = max(0.0, float(ttl_s))
    clear()


def clear() -> None:
    with _lock:
        _entries.clear()


def _private(value):
    """A copy the caller may change without changing the cached result."""
    if hasattr(value, "copy") and hasattr(value, "columns"):  # a pandas DataFrame
        return value.copy()
    if hasattr(value, "copy") and hasattr(value, "index"):  # a pandas Series
        return value.copy()
    if isinstance(value, dict | list):
        return copy.deepcopy(value)
    return value


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
        while True:
            with _lock:
                entry = _entries.get(key)
                if entry is not None and time.monotonic() - entry[0] < _ttl_s:
                    _entries.move_to_end(key)
                    stats["hits"] += 1
                    return _private(entry[1])
                waiting = _inflight.get(key)
                if waiting is None:
                    done = _inflight[key] = threading.Event()
                    stats["misses"] += 1
                    break
            waiting.wait(timeout=30)  # another thread is running the same query
        try:
            value = fn(engine, *args, **kwargs)
            with _lock:
                _entries[key] = (time.monotonic(), value)
                _entries.move_to_end(key)
                while len(_entries) > MAX_ENTRIES:
                    _entries.popitem(last=False)
            return _private(value)
        finally:
            with _lock:
                _inflight.pop(key, None)
            done.set()

    return wrapper
