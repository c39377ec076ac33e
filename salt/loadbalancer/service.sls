# haproxy running (systemd unit, or a plain master-worker process in service_mode process),
# reloaded seamlessly only when its configuration changed.
include:
  - loadbalancer.config

loadbalancer-haproxy-running:
  haproxy_cfg.running:
    - name: haproxy
    - watch:
      - haproxy_cfg: loadbalancer-haproxy-config
