# The DNS server runs (systemd unit, or a process with a pidfile in service mode "process") and is
# reloaded when its config changed.
include:
  - nameserver.config

nameserver-service:
  dns_server.running:
    - name: {{ grains['id'] }}
    - watch:
      - dns_server: nameserver-config
