"""Interface strings: Chinese (zh-CN) first, English available via ``?lang=en``. The strings
are data (``apps/messages.yaml``: a new string is one line there); the warning levels' and alert
statuses' labels come from analytics, their one definition."""

from __future__ import annotations

from importlib import resources

from analytics import LEVEL_NAMES, STATUS_LABELS
from apps.errors import AppsError
from tongguan.yamlfile import read_yaml

DEFAULT_LANG = "zh"
LANGS = ("zh", "en")

MESSAGES_FILE = "messages.yaml"  # beside this module


def parse_messages(doc, source: str = MESSAGES_FILE) -> dict[str, dict[str, str]]:
    """The interface strings of ``messages.yaml``: key -> {zh, en}, every key in both languages.

    >>> parse_messages({"a.b": {"zh": "甲", "en": "A"}})
    {'a.b': {'zh': '甲', 'en': 'A'}}
    >>> parse_messages({"a.b": {"zh": "甲"}})
    Traceback (most recent call last):
    ...
    apps.errors.AppsError: messages.yaml: a.b: give both zh and en (got zh)
    """
    if not isinstance(doc, dict) or not doc:
        raise AppsError(f"{source}: expected a mapping of message keys to {{zh, en}}")
    out = {}
    for key, texts in doc.items():
        if not isinstance(texts, dict) or set(texts) != set(LANGS) or not all(
                isinstance(v, str) and v for v in texts.values()):
            got = ", ".join(sorted(texts)) if isinstance(texts, dict) else repr(texts)
            raise AppsError(f"{source}: {key}: give both zh and en (got {got})")
        out[str(key)] = {lang: texts[lang] for lang in LANGS}
    return out


def _vocabulary() -> dict[str, dict[str, str]]:
    """The warning levels' and alert statuses' labels, from analytics (their one definition)."""
    out = {f"alert.level.{lv}": {"zh": zh, "en": en} for lv, (zh, en) in LEVEL_NAMES.items()}
    out.update({f"alert.status.{st}": {"zh": zh, "en": en} for st, (zh, en) in STATUS_LABELS.items()})
    return out


MESSAGES: dict[str, dict[str, str]] = parse_messages(read_yaml(
    resources.files("apps").joinpath(MESSAGES_FILE), "the interface strings", AppsError))
if set(MESSAGES) & set(_vocabulary()):
    raise AppsError(f"{MESSAGES_FILE}: {', '.join(sorted(set(MESSAGES) & set(_vocabulary())))} come from analytics")
MESSAGES.update(_vocabulary())


# The lifecycle's action names and the views' labels for them (action.<name>).
_ACTION_LABELS = {"acknowledge": "ack", "close_false_alarm": "false_alarm"}


def user_message(exc: BaseException, lang: str | None = None) -> str:
    """What a person reads when an action is refused or input is wrong: the error's reason
    (``key``, ``params``: the lifecycle's and the access policy's) in ``lang`` from
    ``refusal.<key>``, statuses (``state``), actions and regions by their labels; the error's own text when it names
    no reason (it is already the person's: e.g. a form's own check).

    >>> from analytics.alerting.lifecycle import next_status
    >>> try:
    ...     next_status("open", "close")
    ... except Exception as exc:
    ...     print(user_message(exc))
    无法办结：该预警当前为「待处置」，尚未处置完成——请先填写处置说明并处置完成，或按误报关闭
    """
    key = getattr(exc, "key", None)
    if not key or f"refusal.{key}" not in MESSAGES:
        return str(exc)
    params = dict(getattr(exc, "params", None) or {})
    lang = norm_lang(lang)
    for name in [k[:-3] for k in params if k.endswith("_zh")]:  # a name given in both languages
        params[name] = params.pop(f"{name}_{lang}", None) or params.pop(f"{name}_zh")
        params.pop(f"{name}_en", None)
    for name in REGION_PARAMS & set(params):
        params[name] = _region_name(str(params[name]), lang)
    if "kind" in params and f"object.{params['kind']}" in MESSAGES:
        params["kind"] = t(f"object.{params['kind']}", lang)
    if "level" in params and f"level.{params['level']}" in MESSAGES:
        params["level"] = t(f"level.{params['level']}", lang)
    if "state" in params:  # an alert's status (``status`` is the HTTP status of an AccessError)
        params["state"] = t(f"alert.status.{params['state']}", lang) if (
            f"alert.status.{params['state']}" in MESSAGES) else params["state"]
    if "action" in params:
        name = _ACTION_LABELS.get(params["action"], params["action"])
        params["action"] = t(f"action.{name}", lang) if f"action.{name}" in MESSAGES else name
    return t(f"refusal.{key}", lang, **params)


REGION_PARAMS = {"owner", "target", "county", "region", "home"}  # reasons' parameters that are adcodes


def _region_name(code: str, lang: str) -> str:
    """A region's name for a message (inside a request, from the app's database); the code
    when it is none (a grid unit) or nothing can be looked up."""
    import flask

    if not (len(code) == 6 and code.isdigit() and flask.has_app_context()):
        return code
    try:
        # geo's tree (cached per engine), not apps.queries: the queries use this module
        from apps.context import engine
        from geo import RegionTree

        return RegionTree.from_db(engine()).name(code, lang=lang)
    except Exception:  # noqa: BLE001 - a name is a nicety; the code still says which region
        return code


def norm_lang(lang: str | None) -> str:
    return lang if lang in LANGS else DEFAULT_LANG


def t(key: str, lang: str | None = None, **fmt) -> str:
    """Translate ``key``; an unknown key is a programming error and raises KeyError.

    >>> t("alert.level.red"), t("alert.level.red", "en")
    ('红色', 'Red')
    >>> t("region.wrong_level", "en", name="Tianhe", level="city")
    'Tianhe is not a city'
    """
    text = MESSAGES[key][norm_lang(lang)]
    return text.format(**fmt) if fmt else text
