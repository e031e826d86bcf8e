"""Interface strings: Chinese (zh-CN) first, English available via ``?lang=en``."""

from __future__ import annotations

DEFAULT_LANG = "zh"
LANGS = ("zh", "en")

MESSAGES: dict[str, dict[str, str]] = {
    "app.title": {"zh": "统管 · 城市运行一网统管", "en": "tongguan · Unified City Management"},
    "status.title": {"zh": "平台服务状态", "en": "Platform service status"},
    "status.service": {"zh": "服务", "en": "Service"},
    "status.state": {"zh": "状态", "en": "State"},
    "status.address": {"zh": "地址", "en": "Address"},
    "status.detail": {"zh": "详情", "en": "Detail"},
    "status.postgres": {"zh": "空间数据库 PostgreSQL + PostGIS", "en": "Spatial database PostgreSQL + PostGIS"},
    "status.kafka": {"zh": "消息总线 (Kafka 协议)", "en": "Message bus (Kafka protocol)"},
    "status.topics": {"zh": "主题与分区", "en": "Topics and partitions"},
    "status.topic": {"zh": "主题", "en": "Topic"},
    "status.partitions": {"zh": "分区数", "en": "Partitions"},
    "status.messages": {"zh": "消息数", "en": "Messages"},
    "status.workers": {"zh": "处理进程", "en": "Workers"},
    "status.no_workers": {"zh": "暂无运行中的处理进程", "en": "No workers running"},
    "status.updated": {"zh": "更新于", "en": "Updated"},
    "state.up": {"zh": "运行中", "en": "up"},
    "state.down": {"zh": "未运行", "en": "down"},
    "lang.switch": {"zh": "English", "en": "中文"},
}


def norm_lang(lang: str | None) -> str:
    return lang if lang in LANGS else DEFAULT_LANG


def t(key: str, lang: str | None = None) -> str:
    """Translate ``key``; an unknown key is a programming error and raises KeyError."""
    return MESSAGES[key][norm_lang(lang)]
