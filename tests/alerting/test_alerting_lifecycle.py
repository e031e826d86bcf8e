"""Every lifecycle transition and the refused ones, against the real database."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from analytics.alerting.lifecycle import (
    AlertTransitionError,
    acknowledge,
    close,
    dispatch,
    flag_overdue,
    history,
    may_act,
    next_status,
    reopen,
    reopen_if_returning,
    resolve,
    take_over,
    transition,
)

pytestmark = pytest.mark.integration


def _status(engine, aid):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT status FROM alerts WHERE id = :id"), {"id": aid}).scalar()


def test_full_loop_records_every_step(engine, make_alert, t0):
    aid = make_alert()
    acknowledge(engine, aid, actor="li.county", now=t0 + timedelta(minutes=1))
    a = dispatch(engine, aid, actor="li.county", to_unit="天河区排水所", due_at=t0 + timedelta(hours=2),
                 now=t0 + timedelta(minutes=2))
    assert a["status"] == "dispatched" and a["assigned_unit"] == "天河区排水所"
    assert a["assigned_region"] == "440106"
    resolve(engine, aid, actor="wang.unit", note="清理雨水篦子, 积水已退", now=t0 + timedelta(minutes=50))
    a = close(engine, aid, actor="li.county", note="现场核查", now=t0 + timedelta(minutes=60))
    assert a["status"] == "closed" and not a["false_alarm"]
    steps = [(h["action"], h["actor"], h["status"]) for h in history(engine, aid)]
    assert steps == [("acknowledged", "li.county", "acknowledged"), ("dispatched", "li.county", "dispatched"),
                     ("resolved", "wang.unit", "resolved"), ("closed", "li.county", "closed")]
    notes = [h["note"] for h in history(engine, aid)]
    assert "天河区排水所" in notes[1] and "积水已退" in notes[2]


def test_history_is_append_only(engine, make_alert, t0):
    aid = make_alert()
    acknowledge(engine, aid, actor="a", now=t0)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text("UPDATE alert_history SET actor = 'forged' WHERE alert_id = :id"), {"id": aid})


REFUSED = [
    ([], "close", "not resolved yet"),
    ([], "reopen", "still open"),
    (["acknowledge"], "acknowledge", "already acknowledged"),
    (["dispatch"], "acknowledge", "already dispatched"),
    (["resolve"], "resolve", "already resolved"),
    (["resolve", "close"], "resolve", "already finished"),
    (["resolve", "close"], "acknowledge", "already finished"),
    (["false_alarm"], "reopen", "false alarm"),
    (["resolve", "close"], "take_over", "cannot take over"),
]


def test_refused_transitions_say_why(engine, make_alert, t0):
    kw = {"dispatch": {"to_unit": "排水所", "due_at": t0 + timedelta(hours=1)},
          "resolve": {"note": "done"}, "take_over": {"region": "440100"}}
    for setup, action, message in REFUSED:
        aid = make_alert()
        for step in setup:
            transition(engine, alert_id=aid, action=step, actor="x", now=t0, **kw.get(step, {}))
        before, status = len(history(engine, aid)), _status(engine, aid)
        with pytest.raises(AlertTransitionError, match=message):
            transition(engine, alert_id=aid, action=action, actor="x", now=t0 + timedelta(minutes=1),
                       **kw.get(action, {}))
        # Nothing recorded and nothing changed by a refused action.
        assert (len(history(engine, aid)), _status(engine, aid)) == (before, status), (setup, action)


def test_refused_inputs(engine, make_alert, t0):
    aid = make_alert()
    with pytest.raises(AlertTransitionError, match="resolution note is required"):
        resolve(engine, aid, actor="x", note="  ", now=t0)
    with pytest.raises(AlertTransitionError, match="not in the future"):
        dispatch(engine, aid, actor="x", to_unit="u", due_at=t0 - timedelta(minutes=5), now=t0)
    with pytest.raises(AlertTransitionError, match="actor"):
        acknowledge(engine, aid, actor="", now=t0)
    with pytest.raises(AlertTransitionError, match="dispatch up"):
        dispatch(engine, aid, actor="x", to_unit="u", due_at=t0 + timedelta(hours=1), to_region="440100", now=t0)
    with pytest.raises(AlertTransitionError, match="neither a region"):
        dispatch(engine, aid, actor="x", to_unit="u", due_at=t0 + timedelta(hours=1), to_region="440305", now=t0)
    with pytest.raises(AlertTransitionError, match="only its city or province"):
        take_over(engine, aid, actor="x", region="440106", now=t0)
    assert _status(engine, aid) == "open"


def test_false_alarm_from_open(engine, make_alert, t0):
    aid = make_alert()
    a = close(engine, aid, actor="x", false_alarm=True, note="传感器被遮挡", now=t0)
    assert a["status"] == "closed" and a["false_alarm"]
    assert "false alarm" in history(engine, aid)[-1]["note"]


def test_take_over_then_dispatch_down_to_county_and_grid(engine, make_alert, t0):
    aid = make_alert()
    a = take_over(engine, aid, actor="city.duty", region="440100", now=t0)
    assert a["owner_region"] == "440100" and a["visible_at"] == "440100"
    with pytest.raises(AlertTransitionError, match="already handles"):
        take_over(engine, aid, actor="city.duty", region="440100", now=t0)
    a = dispatch(engine, aid, actor="city.duty", to_unit="天河区应急管理局", due_at=t0 + timedelta(hours=1),
                 now=t0)  # no region: down to the county; the city keeps the case (issue 14)
    assert a["owner_region"] == "440100" and a["assigned_region"] == "440106"
    a = dispatch(engine, aid, actor="county.duty", to_unit="网格员 陈", due_at=t0 + timedelta(hours=1),
                 to_region="440106-1000-0001-0002", now=t0 + timedelta(minutes=5))
    assert a["assigned_region"] == "440106-1000-0001-0002" and a["owner_region"] == "440100"
    assert [h["action"] for h in history(engine, aid)] == ["taken_over", "dispatched", "dispatched"]


def test_city_keeps_what_it_took_over_and_dispatched(engine, make_alert, t0):
    """The closed loop of an escalated alert: the city takes it over and dispatches it down with a
    unit and a due time; the county resolves it; only the city verifies and closes it."""
    aid = make_alert(level="red")
    take_over(engine, aid, actor="gz-operator", region="440100", now=t0)
    due = t0 + timedelta(hours=2)
    a = dispatch(engine, aid, actor="gz-operator", to_unit="天河区排水所", due_at=due, now=t0)
    assert (a["owner_region"], a["assigned_region"], a["assigned_unit"], a["due_at"]) == \
        ("440100", "440106", "天河区排水所", due)
    assert may_act(a, "440106", "resolve") and not may_act(a, "440106", "close")
    assert not may_act(a, "440106", "dispatch") and may_act(a, "440100", "resolve")
    assert not may_act(a, "440104", "resolve")  # another county of the city: nothing
    a = resolve(engine, aid, actor="tianhe-operator", note="泵车排水完成", now=t0 + timedelta(minutes=40))
    assert a["status"] == "resolved" and a["owner_region"] == "440100"
    assert may_act(a, "440100", "close") and not may_act(a, "440106", "close")
    assert not may_act(a, "440106", "resolve")  # no longer dispatched: the assignment no longer counts
    a = close(engine, aid, actor="gz-operator", note="现场核查无积水", now=t0 + timedelta(minutes=50))
    assert a["status"] == "closed"
    assert [(h["action"], h["actor"]) for h in history(engine, aid)] == [
        ("taken_over", "gz-operator"), ("dispatched", "gz-operator"), ("resolved", "tianhe-operator"),
        ("closed", "gz-operator")]


def test_reopen_within_window_only(engine, make_alert, t0):
    aid = make_alert(dedupe_key="rule:ponding|s1")
    resolve(engine, aid, actor="x", note="ok", now=t0)
    a = reopen(engine, aid, actor="system:detect", now=t0 + timedelta(minutes=30))
    assert a["status"] == "open" and a["reopened"] == 1
    resolve(engine, aid, actor="x", note="ok again", now=t0 + timedelta(hours=1))
    close(engine, aid, actor="x", now=t0 + timedelta(hours=1, minutes=5))
    with pytest.raises(AlertTransitionError, match="reopen window"):
        reopen(engine, aid, actor="x", now=t0 + timedelta(hours=5))
    # The detector's helper: within the window it reopens (with the new level), after it returns None.
    with engine.begin() as conn:
        got = reopen_if_returning(conn, dedupe_key="rule:ponding|s1", level="red", now=t0 + timedelta(hours=2))
    assert got is not None and got["id"] == aid and got["level"] == "red" and got["reopened"] == 2
    resolve(engine, aid, actor="x", note="ok", now=t0 + timedelta(hours=3))
    with engine.begin() as conn:
        assert reopen_if_returning(conn, dedupe_key="rule:ponding|s1", now=t0 + timedelta(hours=6)) is None
    # The history tells a person's reopen from the condition coming back.
    notes = [h["note"] for h in history(engine, aid) if h["action"] == "reopened"]
    assert notes == ["重新打开 / reopened", "条件复现, 重新打开 / condition returned, reopened"]


def test_overdue_dispatch_flagged_once(engine, make_alert, t0):
    aid = make_alert()
    other = make_alert()
    dispatch(engine, aid, actor="x", to_unit="u", due_at=t0 + timedelta(minutes=30), now=t0)
    dispatch(engine, other, actor="x", to_unit="u", due_at=t0 + timedelta(hours=3), now=t0)
    assert flag_overdue(engine, now=t0 + timedelta(minutes=20)) == []
    assert flag_overdue(engine, now=t0 + timedelta(minutes=31)) == [aid]
    assert flag_overdue(engine, now=t0 + timedelta(minutes=40)) == []
    h = history(engine, aid)[-1]
    assert h["action"] == "overdue" and "督办" in h["note"]


def test_pure_transition_table():
    assert next_status("acknowledged", "dispatch") == "dispatched"
    assert next_status("dispatched", "dispatch") == "dispatched"  # re-dispatch down
    assert next_status("resolved", "close_false_alarm") == "closed"
    with pytest.raises(AlertTransitionError, match="unknown action"):
        next_status("open", "explode")
