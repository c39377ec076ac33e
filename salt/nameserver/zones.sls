# Every zone of the platform, on this nameserver, as one state: zones are compared by text, the
# changed ones checked by the server's own checker in bulk, written, and reloaded together
# (dns_zone.apply_all). The DNS failover does not use it: it calls dns_zone.apply_all through
# rotation.apply, the same code, without a state run (docs/failover.md).
nameserver-zones:
  dns_zone.managed:
    - zones: all
