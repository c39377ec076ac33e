# haproxy.cfg rendered from pillar paphosting, checked with haproxy -c on a temporary file, then
# written atomically; a configuration haproxy rejects never replaces the one in place.
# No name: the state writes this minion's haproxy.cfg (under the minion option paphosting_root).
{%- from "loadbalancer/map.jinja" import service_mode %}
include:
  - loadbalancer.package

loadbalancer-haproxy-config:
  haproxy_cfg.managed:
    - user: root
    - group: root
    - mode: "0644"
{%- if service_mode == 'systemd' %}
    - require:
      - pkg: loadbalancer-haproxy-package
{%- endif %}
