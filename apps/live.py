"""Live updates without reload: every 2 s the views ask what changed and send only that.

The pure helpers here decide what changed (tested directly); the pages wrap them in callbacks
that answer with ``dash.no_update`` or a ``Patch`` so an unchanged screen costs a few bytes.
"""

from __future__ import annotations

import pandas as pd

LIVE_INTERVAL_MS = 2000


def changed_values(old: dict | None, new: dict) -> dict:
    """The entries of ``new`` that differ from ``old`` (all of them when ``old`` is None).

    >>> changed_values({"a": "1", "b": "2"}, {"a": "1", "b": "3"})
    {'b': '3'}
    >>> changed_values(None, {"a": "1"})
    {'a': '1'}
    """
    if not old:
        return dict(new)
    return {k: v for k, v in new.items() if old.get(k) != v}


def ticker_merge(shown_ids: list, new_ids: list, limit: int) -> tuple[list[int], list]:
    """A ticker showing ``shown_ids`` (alert ids, top first) receives ``new_ids`` (newest first)
    on top: which shown lines to delete first (an alert escalated after it was shown as new
    moves to the top instead of appearing twice), and the ids on screen after, at most
    ``limit`` (the lines below it are deleted).

    Returns (indices to delete, highest first, so the earlier ones stay valid; ids after).

    >>> ticker_merge(["a2", "a1"], ["a3", "a1"], 3)
    ([1], ['a3', 'a1', 'a2'])
    >>> ticker_merge(["a2", "a1"], ["a3", "a3"], 2)
    ([], ['a3', 'a2'])
    """
    fresh = list(dict.fromkeys(new_ids))
    moving = set(fresh)
    drop = [i for i, a in enumerate(shown_ids) if a in moving]
    kept = [a for a in shown_ids if a not in moving]
    return sorted(drop, reverse=True), (fresh + kept)[:limit]


def ticker_order(df: pd.DataFrame) -> pd.DataFrame:
    """The ticker's rows newest first by the moment each line shows (``at``: escalated_at for an
    escalation, first_seen for a new alert), one line per alert.

    >>> t0 = pd.Timestamp("2026-12-02T08:00Z")
    >>> d = pd.DataFrame({"id": ["a", "b"], "kind": ["new", "escalated"], "first_seen": [t0, t0 - pd.Timedelta("2h")],
    ...                   "escalated_at": [pd.NaT, t0 + pd.Timedelta("5min")]})
    >>> ticker_order(d)["id"].tolist()
    ['b', 'a']
    """
    if df.empty:
        return df.assign(at=df.get("first_seen"))
    at = df["escalated_at"].where(df["kind"] == "escalated", df["first_seen"])
    out = df.assign(at=at).sort_values("at", ascending=False, kind="stable")
    return out.drop_duplicates("id").reset_index(drop=True)


def newest_change(df: pd.DataFrame, previous: str | None) -> str | None:
    """ISO time of the newest change in the ticker rows (or ``previous`` when there are none)."""
    if df.empty:
        return previous
    stamps = [df["first_seen"].max()]
    if "escalated_at" in df and df["escalated_at"].notna().any():
        stamps.append(df["escalated_at"].max())
    newest = max(pd.Timestamp(s) for s in stamps if pd.notna(s))
    if previous and pd.Timestamp(previous) >= newest:
        return previous
    return newest.isoformat()


def map_levels(state: pd.DataFrame, codes: list[str]) -> list[str]:
    """Worst level per map location, in the map's order."""
    by = dict(zip(state["adcode"], state["worst"])) if not state.empty else {}
    return [by.get(c, "none") for c in codes]


def ranking_rows(state: pd.DataFrame) -> list[list]:
    """What a ranking shows of the region state (order, worst level, counts): the live tick
    re-renders the ranking when this changes, from the state that also colours the map."""
    if state.empty:
        return []
    cols = ["adcode", "worst", "open", "red", "orange", "yellow", "blue"]
    return [[r[0], r[1], *(int(v) for v in r[2:])] for r in state[cols].itertuples(index=False)]


def rotation_ring(tree, home: str, current: str) -> list[str]:
    """The regions a rotating wall shows in turn, all inside the caller's region ``home``.

    The province's operators rotate over the regions beside ``current`` (the cities of the
    province, or the counties of one city); a city's or county's operators over their own
    region and the regions below it (Guangzhou, then each of its districts, round again), never
    outside it. A county operator's ring is the county alone: the wall stays.
    """
    if tree.level(home) == "province":
        parent = tree.parent(current)
        if parent and tree.is_within(parent, home):
            return list(tree.children(parent))
        return [current]
    return [home] + [c for c in tree.children(home) if tree.level(c) in ("city", "county")]


def next_in_ring(ring: list[str], current: str) -> str:
    """The region after ``current`` in ``ring`` (round and round; the first when it is not in it).

    >>> next_in_ring(["a", "b", "c"], "c"), next_in_ring(["a", "b"], "x"), next_in_ring(["a"], "a")
    ('a', 'a', 'a')
    """
    if current not in ring:
        return ring[0]
    return ring[(ring.index(current) + 1) % len(ring)]
