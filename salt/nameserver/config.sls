# The DNS server's config, rendered from pillar and checked by the server's own checker.
include:
  - nameserver.package

nameserver-config:
  dns_server.managed:
    - name: {{ grains['id'] }}
    - require:
      - pkg: nameserver-packages
