# Every zone of the platform, on this nameserver; each zone reloads only when its content changed.
# Standalone, to apply the zones alone. (The DNS failover does not use it: it calls dns_zone.apply
# through rotation.apply, the same code, without a state run; docs/failover.md.)
{%- for zone in salt['dns_zone.names']() %}

nameserver-zone-{{ zone }}:
  dns_zone.managed:
    - name: {{ zone }}
{%- endfor %}
