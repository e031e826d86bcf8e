"""The alert statuses and their labels, as the national 12345 / 网格化 case handling names them:
open 待处置 → acknowledged 已签收 → dispatched 已派单 → resolved 已处置 → closed 已办结.

The one definition the lifecycle, the CLI, the API, the history and the views use.
"""

from __future__ import annotations

STATUSES: tuple[str, ...] = ("open", "acknowledged", "dispatched", "resolved", "closed")
# Not yet resolved: still somebody's to handle (new evidence updates such an alert).
ACTIVE_STATUSES: tuple[str, ...] = ("open", "acknowledged", "dispatched")
# Handled: resolved or closed (a new occurrence opens a new alert, or reopens this one).
FINISHED_STATUSES: tuple[str, ...] = tuple(s for s in STATUSES if s not in ACTIVE_STATUSES)
STATUS_LABELS: dict[str, tuple[str, str]] = {
    "open": ("待处置", "Open"),
    "acknowledged": ("已签收", "Acknowledged"),
    "dispatched": ("已派单", "Dispatched"),
    "resolved": ("已处置", "Resolved"),
    "closed": ("已办结", "Closed"),
}


def sql_list(values) -> str:
    """``values`` as a SQL list for ``IN``: how the statuses are spelled in the SQL of the
    lifecycle, the detector and the incidents, from the one definition above.

    >>> sql_list(ACTIVE_STATUSES), sql_list(FINISHED_STATUSES)
    ("('open', 'acknowledged', 'dispatched')", "('resolved', 'closed')")
    """
    return "(" + ", ".join("'" + str(v).replace("'", "''") + "'" for v in values) + ")"


ACTIVE_SQL = sql_list(ACTIVE_STATUSES)
FINISHED_SQL = sql_list(FINISHED_STATUSES)
STATUSES_SQL = sql_list(STATUSES)


def status_label(status: str, lang: str = "zh") -> str:
    """The status's label in ``lang`` (zh or en); the status itself when unknown.

    >>> status_label("resolved"), status_label("closed", "en"), status_label("odd")
    ('已处置', 'Closed', 'odd')
    """
    zh, en = STATUS_LABELS.get(status, (status, status))
    return zh if lang == "zh" else en
