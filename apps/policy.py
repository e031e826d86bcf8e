"""Who may do what: a region inside the caller's scope (``require_region``), and the rule for
handling an alert (``can_handle``).

Handling an alert: the operator role in the region that handles it
(``alert_handling.owner_region``: the county by default, or the ancestor that took it over; a
dispatch down does not change it, and the region dispatched to may resolve). An operator of the city or province may take it over; where the
alert has been escalated to that level, acting on it takes it over implicitly (recorded).

The functions that read for the API still put the scope in their WHERE clauses (it makes the
plans use the region indexes, and it is a second line if row-level security were ever disabled),
and they tell "not in your region" (403) apart from "does not exist" (404) for the API's error
bodies — an alert outside the caller's region is answered 404, so its existence does not leak.
"""

from __future__ import annotations

from apps.errors import AccessError
from apps.scope import Scope
from geo import region_path

# The handling actions a caller can ask for (the API's ``/alerts/<id>/actions``).
ACTIONS = ("acknowledge", "dispatch", "resolve", "close", "false_alarm", "reopen", "take_over")


def tree_for(engine):
    from geo import RegionTree

    return RegionTree.from_db(engine)


def require_region(engine, scope: Scope, adcode: str) -> str:
    """The adcode when it is a known region inside the scope; 404 when unknown, 403 outside."""
    tree = tree_for(engine)
    code = str(adcode or "").strip()
    if code not in tree:
        raise AccessError(f"region {code or '(none)'} not found", 404, "not_found", "region_unknown",
                          adcode=code or "-")
    if not scope.within(tree, code):
        raise AccessError(f"region {code} ({tree.name(code, lang='en')}) is outside your region "
                          f"{scope.home or '(none)'}", 403, "forbidden", "region_outside", region=code,
                          home=scope.home or "-")
    return code


def _rank(alert_row: dict, region: str) -> int:
    """0 county, 1 city, 2 province on the alert's path; -1 when not on it."""
    path = region_path(alert_row.get("adcode"), alert_row.get("city"), alert_row.get("province"))
    return path.index(region) if region in path else -1


class Reason(str):
    """Why an action is refused: the English text the API and the audit log give, with its
    message key and parameters so the views say it in the user's language (``refusal.<key>``)."""

    key: str
    params: dict

    def __new__(cls, text: str, key: str, **params):
        reason = super().__new__(cls, text)
        reason.key, reason.params = key, params
        return reason


def can_handle(engine, scope: Scope, alert_row: dict, action: str) -> tuple[bool, str]:
    """Whether the caller may apply ``action`` to the alert, and why not.

    - only operators handle alerts, and only inside their subtree;
    - ``take_over``: an operator of a region above the one handling it (its city or province);
    - any other action: an operator of the region handling it (the county by default, or the
      ancestor that took it over; dispatching does not change it); the region it is dispatched
      down to may resolve it (``analytics.alerting.lifecycle.may_act``). An operator of an ancestor
      the alert has been escalated to may act too: the action then takes it over first (recorded).
    """
    from analytics.alerting.lifecycle import may_act

    tree = tree_for(engine)
    if not scope.is_operator:
        return False, Reason("handling alerts needs the operator role / 处置预警需要值班员角色", "need_operator")
    if not scope.within(tree, alert_row["adcode"]):
        return False, Reason("the alert is outside your region", "outside_region")
    owner = str(alert_row.get("handling_region") or alert_row["adcode"]).strip()
    mine, theirs = _rank(alert_row, scope.home), _rank(alert_row, owner)
    if action == "take_over":
        if mine < 1:
            return False, Reason("only the alert's city or province can take it over", "take_over_from_below")
        if mine <= theirs:
            return False, Reason(f"the alert is already handled by {owner}", "already_handled", owner=owner)
        return True, ""
    if may_act(alert_row, scope.home, action):  # the owner, or the region it is dispatched to resolving it
        return True, ""
    visible = _rank(alert_row, str(alert_row.get("visible_at") or "").strip())
    if mine >= 1 and mine > theirs and visible >= mine:
        return True, "take_over"
    return False, Reason(f"the alert is handled by region {owner}; an operator of a region above it may take it "
                         "over (it must be escalated to that region to be handled there without taking over)",
                         "handled_by", owner=owner)
