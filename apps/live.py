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


def next_city(tree, adcode: str) -> str:
    """The sibling after ``adcode`` (round and round): the rotating wall's next city."""
    siblings = tree.children(tree.parent(adcode))
    return siblings[(siblings.index(adcode) + 1) % len(siblings)]
