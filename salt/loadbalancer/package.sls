# haproxy from Debian, on real hosts (service_mode systemd). In service_mode process (tests, demo)
# haproxy comes from scripts/setup and nothing is done here.
{%- from "loadbalancer/map.jinja" import service_mode %}
{%- if service_mode == 'systemd' %}

loadbalancer-haproxy-package:
  pkg.installed:
    - name: haproxy
    # Load haproxy_cfg (it needs the haproxy binary) for the states that follow.
    - reload_modules: True
{%- endif %}
