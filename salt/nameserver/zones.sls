# Every zone of the platform, on this nameserver. Standalone on purpose: the DNS failover applies
# `nameserver.zones` alone after a rotation change; each zone reloads only when its content changed.
{%- for zone in salt['dns_zone.names']() %}

nameserver-zone-{{ zone }}:
  dns_zone.managed:
    - name: {{ zone }}
{%- endfor %}
