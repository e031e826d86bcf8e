"""apps.view_cache: results reused only for the same caller scope and arguments, for the
enabled time, and never outside a scoped request."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from apps import view_cache
from apps.scope import Scope, scoped


class FakeEngine:
    url = "postgresql://example/db"


@pytest.fixture
def cache_on():
    view_cache.enable(0.5)
    try:
        yield
    finally:
        view_cache.enable(0)


def _counting():
    calls = []

    @view_cache.memo
    def query(engine, *, scope: str, theme: str = "all"):
        calls.append((scope, theme))
        return pd.DataFrame({"scope": [scope], "n": [len(calls)]})

    return query, calls


def test_off_by_default_and_outside_a_scoped_request(cache_on):
    query, calls = _counting()
    query(FakeEngine(), scope="440100")
    query(FakeEngine(), scope="440100")
    assert len(calls) == 2  # no scope in context: never cached
    view_cache.enable(0)
    with scoped(Scope(home="440100", roles=frozenset({"operator"}), username="a")):
        query(FakeEngine(), scope="440100")
        query(FakeEngine(), scope="440100")
    assert len(calls) == 4  # disabled: never cached


def test_reused_per_scope_and_arguments_until_it_expires(cache_on):
    query, calls = _counting()
    gz = Scope(home="440100", roles=frozenset({"operator"}), username="gz")
    th = Scope(home="440106", roles=frozenset({"operator"}), username="th")
    with scoped(gz):
        first = query(FakeEngine(), scope="440100")
        first.loc[0, "n"] = 99  # a caller changing its copy does not change the cached one
        again = query(FakeEngine(), scope="440100")
        assert len(calls) == 1 and again.loc[0, "n"] == 1
        query(FakeEngine(), scope="440100", theme="flood")  # other arguments: another entry
        assert len(calls) == 2
    with scoped(th):
        query(FakeEngine(), scope="440100")  # another caller scope: never the Guangzhou result
        assert len(calls) == 3
    time.sleep(0.6)
    with scoped(gz):
        query(FakeEngine(), scope="440100")
    assert len(calls) == 4  # expired


def test_shared_by_callers_row_level_security_cannot_tell_apart(cache_on):
    """Two operators of one region read the same rows (the claim holds home and operator flag);
    a viewer of that region, or a per-user query of another user, does not share their result."""
    query, calls = _counting()
    a = Scope(home="440100", roles=frozenset({"operator"}), username="gz-a")
    b = Scope(home="440100", roles=frozenset({"operator", "viewer"}), username="gz-b")
    viewer = Scope(home="440100", roles=frozenset({"viewer"}), username="gz-v")
    for who in (a, b):
        with scoped(who):
            query(FakeEngine(), scope="440100")
    assert len(calls) == 1
    with scoped(viewer):
        query(FakeEngine(), scope="440100")
    assert len(calls) == 2

    mine = []

    @view_cache.memo(per_user=True)
    def inbox(engine, *, limit: int = 5):
        mine.append(limit)
        return list(mine)

    for who in (a, a, b):
        with scoped(who):
            inbox(FakeEngine())
    assert len(mine) == 2


def test_identical_concurrent_calls_run_once(cache_on):
    calls = []
    started = threading.Event()

    @view_cache.memo
    def slow(engine, *, scope: str):
        calls.append(scope)
        started.set()
        time.sleep(0.2)
        return {"scope": scope}

    scope = Scope(home="440000", roles=frozenset({"admin"}), username="p")
    results = []

    def call():
        with scoped(scope):
            results.append(slow(FakeEngine(), scope="440000"))

    threads = [threading.Thread(target=call) for _ in range(5)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert calls == ["440000"] and results == [{"scope": "440000"}] * 5


def _layouts():
    """A page layout (components) counting its renders, and a settable alerts version."""
    from dash import dcc, html

    renders = []
    version = {"token": "v1"}

    def layout(adcode=None, lang=None, **query):
        renders.append((adcode, lang, query))
        if adcode == "440300":
            raise PermissionError("outside the caller's region")
        return html.Div([html.H1(f"{adcode} {lang}"), dcc.Store(id="p-shown", data={"n": len(renders)})])

    cached = view_cache.page_layout(layout, version=lambda code: ("db", code, version["token"]))
    return cached, renders, version


def test_page_layouts_are_reused_per_home_roles_arguments_and_alerts_version():
    cached, renders, version = _layouts()
    gz = Scope(home="440100", roles=frozenset({"operator"}), username="gz-a")
    gz_b = Scope(home="440100", roles=frozenset({"operator"}), username="gz-b")
    gz_admin = Scope(home="440100", roles=frozenset({"operator", "admin"}), username="gz-c")
    province = Scope(home="440000", roles=frozenset({"operator"}), username="p")
    view_cache.enable(5, 0)
    try:
        with scoped(gz):
            cached(adcode="440100")
            cached(adcode="440100")
        assert len(renders) == 2  # the layout cache is off: every page view renders
        view_cache.enable(5, 5)
        with scoped(gz):
            first = cached(adcode="440100", lang="en")
        with scoped(gz_b):  # another operator of the same region and roles: the same page
            assert cached(adcode="440100", lang="en") is first
        assert len(renders) == 3
        # what a hit returns is what Dash would have sent for the components
        assert first["props"]["children"][0] == {"props": {"children": "440100 en"}, "type": "H1",
                                                 "namespace": "dash_html_components"}
        for who, kwargs in ((gz_admin, {"lang": "en"}), (province, {"lang": "en"}), (gz, {"lang": "zh"}),
                            (gz, {"lang": "en", "theme": "flood"})):
            with scoped(who):
                cached(adcode="440100", **kwargs)
        assert len(renders) == 7  # other roles, home, language, theme: rendered for each
        version["token"] = "v2"  # an alert of the region was raised or handled
        with scoped(gz):
            fresh = cached(adcode="440100", lang="en")
        assert len(renders) == 8 and fresh["props"]["children"][1]["props"]["data"] == {"n": 8}
        with scoped(gz):  # a refusal is never cached: raised (and audited) each time
            for _ in range(2):
                with pytest.raises(PermissionError):
                    cached(adcode="440300")
        assert len(renders) == 10
        outside = cached(adcode="440100", lang="en")  # outside a scoped request: rendered, not cached
        assert len(renders) == 11 and not isinstance(outside, dict)
    finally:
        view_cache.enable(0)


def test_a_page_layout_expires_after_the_layout_time():
    cached, renders, _ = _layouts()
    view_cache.enable(5, 0.3)
    try:
        with scoped(Scope(home="440100", roles=frozenset({"operator"}), username="gz")):
            cached(adcode="440100")
            cached(adcode="440100")
            assert len(renders) == 1
            time.sleep(0.35)
            cached(adcode="440100")
        assert len(renders) == 2
    finally:
        view_cache.enable(0)
