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
    # navigation and frame
    "nav.province": {"zh": "全省", "en": "Province"},
    "nav.alerts": {"zh": "预警", "en": "Alerts"},
    "nav.status": {"zh": "服务状态", "en": "Status"},
    "nav.wall": {"zh": "大屏", "en": "Wall"},
    "nav.back": {"zh": "返回上级", "en": "Up one level"},
    "region.unknown": {"zh": "未知区域 {adcode}：请检查行政区划代码，或先运行 tongguan geo load",
                       "en": "Unknown region {adcode}: check the adcode, or run tongguan geo load first"},
    "region.wrong_level": {"zh": "{name} 不是{level}级区域", "en": "{name} is not a {level}"},
    "level.province": {"zh": "省", "en": "province"},
    "level.city": {"zh": "市", "en": "city"},
    "level.county": {"zh": "区县", "en": "county"},
    # themes and windows
    "theme.label": {"zh": "主题", "en": "Theme"},
    "theme.all": {"zh": "全部", "en": "All"},
    "window.label": {"zh": "时间范围", "en": "Window"},
    "window.1h": {"zh": "近1小时", "en": "Last hour"},
    "window.6h": {"zh": "近6小时", "en": "Last 6 h"},
    "window.24h": {"zh": "近24小时", "en": "Last 24 h"},
    "window.7d": {"zh": "近7天", "en": "Last 7 days"},
    # warning levels and alert states
    "alert.level.blue": {"zh": "蓝色", "en": "Blue"},
    "alert.level.yellow": {"zh": "黄色", "en": "Yellow"},
    "alert.level.orange": {"zh": "橙色", "en": "Orange"},
    "alert.level.red": {"zh": "红色", "en": "Red"},
    "alert.level.none": {"zh": "正常", "en": "Normal"},
    "alert.status.open": {"zh": "待处置", "en": "Open"},
    "alert.status.acknowledged": {"zh": "已确认", "en": "Acknowledged"},
    "alert.status.dispatched": {"zh": "已派单", "en": "Dispatched"},
    "alert.status.resolved": {"zh": "已办结", "en": "Resolved"},
    "alert.status.closed": {"zh": "已关闭", "en": "Closed"},
    "alert.escalated": {"zh": "升级", "en": "Escalated"},
    "alert.new": {"zh": "新增", "en": "New"},
    # KPI strip
    "kpi.sensors_online": {"zh": "在线感知设备", "en": "Sensors online"},
    "kpi.readings_today": {"zh": "今日感知数据", "en": "Readings today"},
    "kpi.video_today": {"zh": "今日视频事件", "en": "Video events today"},
    "kpi.open_alerts": {"zh": "未闭环预警", "en": "Open alerts"},
    # panels
    "panel.map_province": {"zh": "全省态势一张图", "en": "Province at a glance"},
    "panel.map_city": {"zh": "全市一图统揽", "en": "City at a glance"},
    "panel.map_county": {"zh": "区县感知一张图", "en": "County map"},
    "panel.ranking": {"zh": "地市预警排名", "en": "Cities by warning"},
    "panel.ranking_county": {"zh": "区县预警排名", "en": "Counties by warning"},
    "panel.trend": {"zh": "近24小时趋势", "en": "Last 24 hours"},
    "panel.ticker": {"zh": "实时预警", "en": "Live warnings"},
    "panel.vitals": {"zh": "城市体征", "en": "City vital signs"},
    "panel.alerts": {"zh": "预警事件", "en": "Alerts"},
    "panel.escalations": {"zh": "待本级处置的升级事件", "en": "Escalations waiting"},
    "panel.sensors": {"zh": "感知设备", "en": "Sensors"},
    "panel.events": {"zh": "最新视频事件", "en": "Recent video events"},
    "panel.series": {"zh": "设备时序", "en": "Sensor time series"},
    "trend.readings": {"zh": "感知数据量", "en": "Readings"},
    "trend.alerts": {"zh": "新增预警", "en": "New alerts"},
    "trend.events": {"zh": "视频事件", "en": "Video events"},
    "col.region": {"zh": "区域", "en": "Region"},
    "col.worst": {"zh": "最高等级", "en": "Worst level"},
    "col.open": {"zh": "未闭环", "en": "Open"},
    "col.level": {"zh": "等级", "en": "Level"},
    "col.title": {"zh": "事件", "en": "Alert"},
    "col.status": {"zh": "状态", "en": "Status"},
    "col.time": {"zh": "时间", "en": "Time"},
    "col.theme": {"zh": "主题", "en": "Theme"},
    "col.type": {"zh": "类型", "en": "Type"},
    "col.value": {"zh": "数值", "en": "Value"},
    "col.sensor": {"zh": "设备", "en": "Sensor"},
    "col.metric": {"zh": "指标", "en": "Metric"},
    "col.actions": {"zh": "处置", "en": "Actions"},
    "empty.alerts": {"zh": "暂无预警", "en": "No alerts"},
    "empty.data": {"zh": "暂无数据", "en": "No data yet"},
    "empty.escalations": {"zh": "暂无待处置升级事件", "en": "No escalations waiting"},
    "series.pick": {"zh": "点击地图上的设备查看时序", "en": "Click a sensor on the map to see its series"},
    "series.threshold": {"zh": "阈值", "en": "Threshold"},
    "action.ack": {"zh": "确认", "en": "Acknowledge"},
    "action.dispatch": {"zh": "派单", "en": "Dispatch"},
    "action.resolve": {"zh": "办结", "en": "Resolve"},
    "action.close": {"zh": "关闭", "en": "Close"},
    "action.note": {"zh": "处置说明", "en": "Note"},
    "action.done": {"zh": "已处理：{action}", "en": "Done: {action}"},
    "action.unavailable": {"zh": "预警处置接口尚未就绪", "en": "Alert handling is not available yet"},
    "vital.normal": {"zh": "正常", "en": "normal"},
    "vital.abnormal": {"zh": "异常", "en": "abnormal"},
    "wall.title": {"zh": "城市运行一网统管 · 指挥大屏", "en": "Unified city operations · wall"},
    "legend.sensor": {"zh": "感知设备", "en": "Sensor"},
    "legend.camera": {"zh": "视频点位", "en": "Camera"},
    "legend.event": {"zh": "视频事件", "en": "Video event"},
    "legend.grid": {"zh": "网格活跃度", "en": "Grid activity"},
}


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
