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
