# The nameserver's Prometheus exporter (docs/monitoring.md): its server's statistics under common
# metric names, on its listener of paphosting:metrics:nameservers; stopped when it has none.
include:
  - nameserver.service

nameserver-exporter:
  dns_exporter.running:
    - name: {{ grains['id'] }}
    - require:
      - dns_server: nameserver-service
