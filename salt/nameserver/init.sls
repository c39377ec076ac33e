# The nameserver role: the authoritative DNS server chosen in pillar (BIND 9, NSD or Knot), its
# config and every zone of the platform. See docs/dns.md.
include:
  - nameserver.package
  - nameserver.config
  - nameserver.zones
  - nameserver.service
  - nameserver.exporter
