"""Configuration text shared by tests: the seed's prometheus-adapter rule, as Kapacity's
walk-through gives it (``prometheus-metrics-config.yaml``)."""

SEED_RULES = """
rules:
- seriesQuery: '{__name__=~"^nginx_ingress_controller_requests.*",namespace!=""}'
  seriesFilters: []
  resources:
    template: "<<.Resource>>"
  name:
    matches: ""
    as: "nginx_ingress_controller_requests_rate"
  metricsQuery: "round(sum(rate(<<.Series>>{<<.LabelMatchers>>}[3m])) by (<<.GroupBy>>), 0.001)"
"""


# One forecast target with a fixed per-pod capacity: `web` in `shop`, traffic from the
# `web_requests` query (tests answer it with a stand-in history source).
WEB_TARGET = """
forecasts:
- name: web
  namespace: shop
  traffic: {name: requests, query: web_requests}
  capacity: {perPod: 50}
  leadTime: 15m
  maxReplicas: 20
"""
