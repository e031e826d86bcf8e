"""The Dash views, one module per page (each registers itself with ``dash.register_page``):
province, city and county (the drill-down), alerts, subscriptions and the services' status."""

__all__: list[str] = []
