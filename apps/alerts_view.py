"""What the alerts page (/alerts) does, as plain functions of the database and the caller's scope
(the page's callbacks only call these, so they are tested without a browser).

- :func:`region_options`: the region tree picker — the caller's home region and everything below
  it, indented, depth first;
- :func:`filter_alerts`: alerts of a region subtree by theme, levels and statuses (the read goes
  through :func:`apps.queries.alerts_list`, under the request's row-level security);
- :func:`version` and :func:`keep_selection`: the live list — read again only when an alert of
  the caller's region changed, keeping the rows the user selected (by alert id, not position);
- :func:`csv_text`: the filtered list as CSV (the page's export; scoped like the list, audited by it);
- :func:`bulk_action`: one handling action on many alerts, each through the same path as the
  county view's buttons (:func:`apps.handling.handle`: access check, audit, analytics lifecycle).
  An alert the lifecycle or the access check refuses is reported with its reason; the others
  are still handled.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analytics import LEVELS, STATUSES
from apps import queries
from apps.catalogue import ALL_THEMES
from apps.errors import AppsError

BULK_ACTIONS = ("ack", "dispatch", "resolve", "close")
MAX_ROWS = 300


def region_options(engine, home: str, lang: str = "zh") -> list[dict]:
    """Dropdown options of ``home``'s subtree, indented by depth (the region tree picker).

    Each option is ``{"label": "　　天河区", "value": "440106"}``; labels are plain text."""
    tree = queries.region_tree(engine)
    if not home or home not in tree:
        return []
    base = len(tree.path(home))
    out = []
    for code in tree.subtree(home):
        depth = len(tree.path(code)) - base
        out.append({"label": "\u3000" * depth + tree.name(code, lang=lang), "value": code})
    return out


def check_region(engine, home: str, region: str | None) -> str:
    """The region to filter by: ``region`` when it lies in ``home``'s subtree, else an error."""
    region = (region or "").strip() or home
    tree = queries.region_tree(engine)
    if region not in tree:
        raise AppsError(f"unknown region {region!r}; pick one from the region list", "region_unknown",
                        adcode=region)
    if not (home and tree.is_within(region, home)):
        raise AppsError(f"region {region} is outside your region {home}", "region_outside", region=region,
                        home=home)
    return region


def filter_alerts(engine, *, home: str, region: str | None = None, theme: str = ALL_THEMES,
                  levels: list[str] | None = None, statuses: list[str] | None = None,
                  limit: int = MAX_ROWS) -> pd.DataFrame:
    """Alerts of ``region``'s subtree (within ``home``), newest change first.

    ``levels``/``statuses`` empty or None mean all of them."""
    region = check_region(engine, home, region)
    levels = [lv for lv in (levels or []) if lv in LEVELS]
    statuses = [s for s in (statuses or []) if s in STATUSES]
    # The level filter is applied here, so ask for enough rows that it still fills the page.
    df = queries.alerts_list(engine, scope=region, theme=theme or ALL_THEMES, statuses=tuple(statuses) or None,
                          limit=limit * (4 if levels else 1))
    if levels and not df.empty:
        df = df[df["level"].isin(levels)]
    return df.head(limit).reset_index(drop=True)


def version(engine, home: str) -> str:
    """Changes whenever an alert of ``home``'s subtree is raised or changes (the live tick's probe)."""
    return queries.alerts_version(engine, scope=home)


def keep_selection(old_rows: list[dict] | None, selected: list[int] | None, new_rows: list[dict]) -> list[int]:
    """The positions in ``new_rows`` of the alerts selected in ``old_rows``: a live refresh must
    not move the selection onto other alerts (a bulk action would then handle those).

    >>> keep_selection([{"id": "a"}, {"id": "b"}], [1], [{"id": "n"}, {"id": "a"}, {"id": "b"}])
    [2]
    """
    ids = {str(old_rows[i]["id"]) for i in (selected or []) if 0 <= i < len(old_rows or [])}
    return [i for i, r in enumerate(new_rows) if str(r["id"]) in ids]


def _name(tree, adcode: str, lang: str) -> str:
    if tree is None or not adcode:
        return adcode
    try:
        return tree.name(adcode, lang=lang)
    except Exception:  # noqa: BLE001 - a grid id or unknown code is shown as it is
        return adcode


@dataclass(frozen=True)
class Outcome:
    alert_id: str
    ok: bool
    message: str  # the new status, or why it was refused


def bulk_action(engine, *, alert_ids: list[str], action: str, actor: str, note: str | None = None,
                lang: str = "zh") -> list[Outcome]:
    """Apply ``action`` to each alert; a refusal (lifecycle or access) is reported in ``lang``, not raised."""
    from apps import handling
    from apps.i18n import user_message
    from tongguan import TongguanError

    if action not in BULK_ACTIONS:
        raise AppsError(f"unknown action {action!r}; use one of {', '.join(BULK_ACTIONS)}")
    out = []
    for aid in dict.fromkeys(str(a) for a in alert_ids if a):
        try:
            status = handling.handle(engine, alert_id=aid, action=action, actor=actor, note=note)
            out.append(Outcome(aid, True, str(status)))
        except TongguanError as exc:
            out.append(Outcome(aid, False, user_message(exc, lang)))
    return out


def table_rows(df: pd.DataFrame, lang: str = "zh", engine=None) -> list[dict]:
    """Rows for the page's DataTable (plain strings: the table renders text, never HTML)."""
    from analytics import status_label
    from apps.catalogue import theme_label
    from apps.components import alert_title, fmt_when
    from apps.i18n import t

    tree = queries.region_tree(engine) if engine is not None else None  # names of the handling regions
    rows = []
    for r in df.to_dict("records"):
        owner = str(r.get("owner_region") or "").strip()
        rows.append({
            "id": str(r["id"]),
            "level": r["level"],
            "level_label": t(f"alert.level.{r['level']}", lang) if r["level"] in LEVELS else str(r["level"]),
            "region": str(r.get("region_name_en" if lang == "en" else "region_name") or r["adcode"]),
            "adcode": r["adcode"],
            "title": str(alert_title(r, lang)),
            "theme": theme_label(r["theme"], lang) if r.get("theme") else "",
            "status": r["status"],
            "status_label": status_label(r["status"], lang),
            "owner": _name(tree, owner, lang),
            "last_seen": fmt_when(r.get("last_seen")),
        })
    return rows


CSV_COLUMNS = ("id", "level_label", "region", "adcode", "title", "theme", "status_label", "owner", "last_seen")


def csv_text(rows: list[dict], lang: str = "zh") -> str:
    """The table's rows as CSV with a header in the page's language (a spreadsheet opens it as
    UTF-8: the text starts with a byte-order mark). Cells are text: one that a spreadsheet would
    run as a formula (=, +, -, @) is quoted with a leading apostrophe.

    >>> print(csv_text([{"id": "a1", "level_label": "红色", "region": "天河区", "adcode": "440106",
    ...                  "title": "=1+1", "theme": "内涝", "status_label": "待处置", "owner": "天河区",
    ...                  "last_seen": "06-01 12:00:00"}], "en").lstrip("\ufeff"))
    id,Level,Region,Adcode,Alert,Theme,Status,Handled by,Time
    a1,红色,天河区,440106,'=1+1,内涝,待处置,天河区,06-01 12:00:00
    <BLANKLINE>
    """
    import csv
    import io

    from apps.i18n import t

    names = {"id": "id", "level_label": t("col.level", lang), "region": t("col.region", lang),
             "adcode": t("col.adcode", lang), "title": t("col.title", lang), "theme": t("col.theme", lang),
             "status_label": t("col.status", lang), "owner": t("alerts.owner", lang), "last_seen": t("col.time", lang)}
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow([names[c] for c in CSV_COLUMNS])
    for r in rows:
        cells = [str(r.get(c, "") if r.get(c) is not None else "") for c in CSV_COLUMNS]
        out.writerow(["'" + v if v[:1] in ("=", "+", "-", "@") else v for v in cells])
    return "\ufeff" + buf.getvalue()
