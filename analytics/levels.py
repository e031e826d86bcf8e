"""The national four-level warning scale (蓝 IV < 黄 III < 橙 II < 红 I)."""

from __future__ import annotations

LEVELS: tuple[str, ...] = ("blue", "yellow", "orange", "red")
RANK: dict[str | None, int] = {None: 0, "": 0, "blue": 1, "yellow": 2, "orange": 3, "red": 4}
# Short names (maps, chips, tables) and the full labels (notifications, the CLI).
LEVEL_NAMES: dict[str, tuple[str, str]] = {
    "blue": ("蓝色", "Blue"),
    "yellow": ("黄色", "Yellow"),
    "orange": ("橙色", "Orange"),
    "red": ("红色", "Red"),
}
LEVEL_LABELS = {
    "blue": ("蓝色预警 (IV级, 一般)", "Blue (IV, general)"),
    "yellow": ("黄色预警 (III级, 较重)", "Yellow (III, heavier)"),
    "orange": ("橙色预警 (II级, 严重)", "Orange (II, serious)"),
    "red": ("红色预警 (I级, 特别严重)", "Red (I, most serious)"),
}


def rank(level: str | None) -> int:
    """Order of a level; 0 for none.

    >>> rank("red") > rank("orange") > rank("yellow") > rank("blue") > rank(None)
    True
    """
    try:
        return RANK[level]
    except KeyError:
        raise ValueError(f"unknown warning level {level!r}; use one of {', '.join(LEVELS)}") from None


def max_level(*levels: str | None) -> str | None:
    """The most serious of ``levels`` (None when all are none).

    >>> max_level("blue", None, "orange")
    'orange'
    """
    best = None
    for lv in levels:
        if rank(lv) > rank(best):
            best = lv
    return best


def step(level: str | None, by: int = 1) -> str | None:
    """The level ``by`` steps up (negative: down), clamped to the scale.

    >>> step("yellow"), step("red"), step("blue", -1), step(None)
    ('orange', 'red', None, 'blue')
    """
    r = min(max(rank(level) + by, 0), len(LEVELS))
    return LEVELS[r - 1] if r else None
