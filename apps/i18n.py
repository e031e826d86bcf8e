"""Interface strings: Chinese (zh-CN) first, English available via ``?lang=en``."""

from __future__ import annotations

from analytics import LEVEL_NAMES, STATUS_LABELS
from apps.i18n_ops import OPS_MESSAGES

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
    "status.role": {"zh": "角色", "en": "Role"},
    "status.worker": {"zh": "进程", "en": "Worker"},
    "status.health": {"zh": "健康", "en": "Health"},
    "status.health.green": {"zh": "正常", "en": "OK"},
    "status.health.red": {"zh": "异常", "en": "Failing"},
    "status.lag": {"zh": "积压消息", "en": "Lag"},
    "status.last_commit": {"zh": "距上次提交", "en": "Since last commit"},
    "status.heartbeat": {"zh": "距上次心跳", "en": "Since last heartbeat"},
    "status.problem": {"zh": "问题", "en": "Problem"},
    "status.broker_down": {"zh": "消息总线不可达：处理进程暂停，恢复后自动重连。",
                           "en": "The message bus is unreachable: workers wait and reconnect by themselves."},
    "status.log_lost": {"zh": "消息总线于 {at} 丢失了日志（内置内存代理重启）：{worker} 至少有 {n} 条尚未消费的消息随之丢失。"
                              "生产环境请使用 docker/ 中的 Apache Kafka。",
                        "en": "The message bus lost its log at {at} (the embedded memory broker restarted): at least "
                              "{n} message(s) {worker} had not consumed yet were lost. Production uses Apache Kafka "
                              "from docker/."},
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
    # (the levels' and statuses' names are analytics': LEVEL_NAMES, STATUS_LABELS, below)
    "alert.level.none": {"zh": "正常", "en": "Normal"},
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
    "action.ack": {"zh": "签收", "en": "Acknowledge"},
    "action.dispatch": {"zh": "派单", "en": "Dispatch"},
    "action.resolve": {"zh": "处置完成", "en": "Resolve"},
    "action.close": {"zh": "办结", "en": "Close"},
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
    # alerts page and subscriptions page
    "nav.subscriptions": {"zh": "订阅", "en": "Subscriptions"},
    "alerts.title": {"zh": "预警事件处置", "en": "Alert handling"},
    "alerts.region": {"zh": "区域（含下级）", "en": "Region (and below)"},
    "alerts.levels": {"zh": "等级", "en": "Levels"},
    "alerts.statuses": {"zh": "状态", "en": "Statuses"},
    "alerts.count": {"zh": "共 {n} 条，已选 {k} 条", "en": "{n} alerts, {k} selected"},
    "alerts.select_all": {"zh": "全选", "en": "Select all"},
    "alerts.select_none": {"zh": "全不选", "en": "Select none"},
    "alerts.bulk": {"zh": "批量处置：", "en": "Handle selected:"},
    "alerts.none_selected": {"zh": "请先勾选预警", "en": "Select alerts first"},
    "alerts.bulk_done": {"zh": "{action}：成功 {ok} 条，未处理 {bad} 条",
                         "en": "{action}: {ok} done, {bad} refused"},
    "alerts.owner": {"zh": "处置区域", "en": "Handled by"},
    "alerts.note_hint": {"zh": "处置说明（办结必填；派单时填承办单位）",
                         "en": "Note (resolve: required; dispatch: the unit)"},
    "subs.title": {"zh": "预警订阅", "en": "Alert subscriptions"},
    "subs.mine": {"zh": "我的订阅", "en": "My subscriptions"},
    "subs.form_new": {"zh": "新建订阅", "en": "New subscription"},
    "subs.form_edit": {"zh": "编辑订阅 #{id}", "en": "Edit subscription #{id}"},
    "subs.name": {"zh": "名称", "en": "Name"},
    "subs.region": {"zh": "订阅区域（含下级）", "en": "Region (and below)"},
    "subs.themes": {"zh": "主题（不选为全部）", "en": "Themes (none = all)"},
    "subs.min_level": {"zh": "最低等级", "en": "Minimum level"},
    "subs.channels": {"zh": "通知渠道", "en": "Channels"},
    "subs.quiet": {"zh": "免打扰时段（红色预警照常送达）", "en": "Quiet hours (red still goes through)"},
    "subs.escalated_only": {"zh": "仅接收升级到本级的预警", "en": "Only alerts escalated to this region"},
    "subs.save": {"zh": "保存", "en": "Save"},
    "subs.new": {"zh": "新建", "en": "New"},
    "subs.edit": {"zh": "编辑", "en": "Edit"},
    "subs.remove": {"zh": "删除", "en": "Remove"},
    "subs.test": {"zh": "测试发送", "en": "Test delivery"},
    "subs.saved": {"zh": "已保存订阅 #{id}", "en": "Subscription #{id} saved"},
    "subs.secret": {"zh": "Webhook 签名密钥（仅显示一次，请妥善保存）：{secret}",
                    "en": "Webhook signing secret (shown once, keep it): {secret}"},
    "subs.removed": {"zh": "已删除订阅 #{id}", "en": "Subscription #{id} removed"},
    "subs.tested": {"zh": "测试发送 #{id}：{result}", "en": "Test of #{id}: {result}"},
    "subs.empty": {"zh": "暂无订阅", "en": "No subscriptions yet"},
    "subs.all_themes": {"zh": "全部主题", "en": "all themes"},
    "subs.quiet_short": {"zh": "免打扰 {start}–{end}", "en": "quiet {start}–{end}"},
    "subs.escalated_short": {"zh": "仅升级到本级", "en": "escalated here only"},
    "subs.col.rule": {"zh": "条件", "en": "Rule"},
    "subs.col.channels": {"zh": "渠道", "en": "Channels"},
    "inbox.title": {"zh": "站内信", "en": "Inbox"},
    "inbox.unread": {"zh": "未读 {n}", "en": "{n} unread"},
    "inbox.mark_all": {"zh": "全部标为已读", "en": "Mark all read"},
    "inbox.read": {"zh": "标为已读", "en": "Mark read"},
    "inbox.unread_btn": {"zh": "标为未读", "en": "Mark unread"},
    "inbox.unread_only": {"zh": "只看未读", "en": "Unread only"},
    "inbox.empty": {"zh": "收件箱为空", "en": "Inbox empty"},
    "error.signin": {"zh": "请先登录", "en": "Log in first"},
}
MESSAGES.update({f"alert.level.{lv}": {"zh": zh, "en": en} for lv, (zh, en) in LEVEL_NAMES.items()})
MESSAGES.update({f"alert.status.{st}": {"zh": zh, "en": en} for st, (zh, en) in STATUS_LABELS.items()})
MESSAGES.update(OPS_MESSAGES)


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
