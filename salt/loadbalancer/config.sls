# haproxy.cfg rendered from pillar paphosting, checked with haproxy -c on a temporary file, then
# written atomically; a configuration haproxy rejects never replaces the one in place.
# No name: the state writes this minion's haproxy.cfg (under the minion option paphosting_root).
{%- from "loadbalancer/map.jinja" import service_mode %}
include:
  - loadbalancer.package

# The certificates first (docs/tls.md): each service's bundle from paphosting_secrets:tls,
# checked, then swapped in the running haproxy or written for its next reload. haproxy.cfg
# follows the bundles in place (its haproxy -c loads them through the crt-list): a refused new
# certificate leaves its service on plain HTTP, a refused renewal the old certificate serving.
# No requisite between the two: the file order runs them in this order.
loadbalancer-tls-certificates:
  haproxy_cfg.certificates:
    - name: haproxy certificates
{%- if service_mode == 'systemd' %}
    - require:
      - pkg: loadbalancer-haproxy-package
{%- endif %}

loadbalancer-haproxy-config:
  haproxy_cfg.managed:
    - user: root
    - group: root
    - mode: "0644"
{%- if service_mode == 'systemd' %}
    - require:
      - pkg: loadbalancer-haproxy-package
{%- endif %}
