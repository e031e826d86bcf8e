"""The detector's notes on an alert's history, in both languages.

The lifecycle writes its history notes as ``"<zh> / <en>"`` (``apps/pages/alert.py``'s
``history_note`` shows the page's half); the detector writes its own the same way, built here
from the rule's titles (``title`` in ``rules.yaml``) and its conditions, so a new rule's notes
are translated without a new message.

>>> both("读数恢复正常", "readings normal again")
'读数恢复正常 / readings normal again'
"""
from __future__ import annotations

AGG_ZH = {"last": "当前值", "mean": "均值", "sum": "累计", "integral": "累计量", "max": "最大值",
          "min": "最小值", "rise": "涨幅", "fall": "降幅"}


def _plain(text: str) -> str:
    # the separators of the bilingual note must not appear inside one half
    return text.replace(" / ", "/").replace(" | ", "|")


def both(zh: str, en: str) -> str:
    return f"{_plain(zh)} / {_plain(en)}"


def duration_zh(seconds: float) -> str:
    """A duration in Chinese.

    >>> duration_zh(3600), duration_zh(600), duration_zh(90)
    ('1小时', '10分钟', '90秒')
    """
    for unit, size in (("天", 86400), ("小时", 3600), ("分钟", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}秒"


def condition_zh(agg: str, window: float, op: str, threshold: float, hold: float = 0.0) -> str:
    """A rule condition in Chinese (``Condition.describe`` is the English).

    >>> condition_zh("rise", 3600, ">", 0.8)
    '1小时内涨幅 > 0.8'
    >>> condition_zh("last", 0, ">=", 30, hold=600)
    '当前值 >= 30, 持续10分钟'
    """
    win = "" if agg == "last" else f"{duration_zh(window)}内"
    held = f", 持续{duration_zh(hold)}" if hold else ""
    return f"{win}{AGG_ZH.get(agg, agg)} {op} {threshold:g}{held}"


def cleared(title_zh: str, title_en: str) -> str:
    return both(f"条件解除: {title_zh}", f"condition cleared: {title_en}")


def explained(title_zh: str, title_en: str) -> str:
    return both(f"已由规则「{title_zh}」说明", f"explained by rule {title_en}")


def sensor_agrees(sensor_id: str) -> str:
    return both(f"传感器 {sensor_id} 同时异常", f"sensor {sensor_id} agrees")


def ponding_seen(camera_id: str) -> str:
    return both(f"摄像头 {camera_id} 发现道路积水", f"road ponding seen by {camera_id}")


def in_language(note: str | None, lang: str, rename=None) -> str:
    """A bilingual note's half in ``lang``, with the person's part (after " | ") kept as written;
    a note without the separator is shown as it is. ``rename`` (text -> text), when given, is
    applied to the system's half only (the page names regions there).

    >>> in_language("已签收 / acknowledged | 雨大", "en")
    'acknowledged | 雨大'
    >>> in_language("ponding 42 cm", "zh")
    'ponding 42 cm'
    """
    if not note:
        return ""
    system, sep, person = note.partition(" | ")
    zh, bilingual, en = system.partition(" / ")
    text = (en if lang == "en" else zh) if bilingual else system
    return (rename(text) if rename else text) + sep + person


READINGS_NORMAL = both("读数恢复正常", "readings normal again")
FORECAST_BELOW = both("预测回落至阈值以下", "forecast below threshold again")
REPORTING_AGAIN = both("传感器恢复上报", "reporting again")
