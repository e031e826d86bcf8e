"""The head links the alerts and subscriptions pages share, built from ``dash.page_registry``:
a page that registers itself with ``nav`` (an i18n key), ``nav_id`` and ``order`` is linked."""

from __future__ import annotations

import dash
from dash import dcc, html

from apps.components import query_string
from apps.i18n import t


def home_href(eng, home: str, lang: str) -> str:
    """The signed-in user's own region view (the province view is not every user's)."""
    from apps import queries

    tree = queries.region_tree(eng)
    return f"/{tree.level(home)}/{home}" + query_string(lang=lang) if home in tree else "/"


def home_name(eng, home: str, lang: str) -> str:
    from apps import queries

    try:
        return queries.region_tree(eng).name(home, lang=lang)
    except Exception:  # noqa: BLE001 - a label must not break the page
        return home


def nav_links(here: str, lang: str, extra: dict | None = None, *, eng=None, home: str = "") -> html.Div:
    """The head links of the alerts and subscriptions pages: the user's region view, every page
    registered with a ``nav`` label (``dash.page_registry``, in ``order``), the language switch."""
    other = "en" if lang == "zh" else "zh"
    q = query_string(lang=lang)
    pages = sorted((p for p in dash.page_registry.values() if p.get("nav")), key=lambda p: p.get("order") or 0)
    return html.Div([
        dcc.Link("↑ " + home_name(eng, home, lang), href=home_href(eng, home, lang), className="head-link",
                 id=f"{here}-home-link"),
        *(dcc.Link(t(p["nav"], lang), href=p["path"] + q, className="head-link", id=f"{here}-{p['nav_id']}-link")
          for p in pages),
        dcc.Link(t("lang.switch", lang), href=with_lang(f"/{here}", extra or {}, other),
                 className="lang-switch", id="lang-switch"),
    ], className="head-links")


def with_lang(path: str, params: dict, lang: str) -> str:
    """``path`` with ``params`` and ``lang`` (left out when Chinese, the default).

    >>> with_lang("/alerts", {"region": "440106", "level": ""}, "en")
    '/alerts?region=440106&lang=en'
    """
    from urllib.parse import urlencode

    q = {k: v for k, v in params.items() if v}
    if lang != "zh":
        q["lang"] = lang
    return path + ("?" + urlencode(q, safe=",") if q else "")
