"""The alert statuses and their labels, as the national 12345 / 网格化 case handling names them:
open 待处置 → acknowledged 已签收 → dispatched 已派单 → resolved 已处置 → closed 已办结.

The one definition the lifecycle, the CLI, the API, the history and the views use.
"""

from __future__ import annotations

STATUSES: tuple[str, ...] = ("open", "acknowledged", "dispatched", "resolved", "closed")
# Not yet resolved: still somebody's to handle (new evidence updates such an alert).
ACTIVE_STATUSES: tuple[str, ...] = ("open", "acknowledged", "dispatched")
STATUS_LABELS: dict[str, tuple[str, str]] = {
    "open": ("待处置", "Open"),
    "acknowledged": ("已签收", "Acknowledged"),
    "dispatched": ("已派单", "Dispatched"),
    "resolved": ("已处置", "Resolved"),
    "closed": ("已办结", "Closed"),
}


def status_label(status: str, lang: str = "zh") -> str:
    """The status's label in ``lang`` (zh or en); the status itself when unknown.

    >>> status_label("resolved"), status_label("closed", "en"), status_label("odd")
    ('已处置', 'Closed', 'odd')
    """
    zh, en = STATUS_LABELS.get(status, (status, status))
    return zh if lang == "zh" else en
