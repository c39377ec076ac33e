{#- A watcher probes every load balancer's health URL with the http_health beacon and reports to
    the masters (the DNS failover, docs/failover.md). The beacon's configuration comes from the
    pillar (paphosting:loadbalancers, paphosting:health) through paphosting.watcher_beacon; it is
    saved to minion.d/beacons.conf, so it survives a minion restart. -#}
{%- set beacon = salt['paphosting.watcher_beacon']() %}

paphosting-watcher-sync:
  saltutil.sync_beacons:
    - refresh: True

paphosting-watcher-sync-utils:
  saltutil.sync_utils:
    - refresh: True

{%- if beacon %}
paphosting-watcher-beacon:
  beacon.present:
    - name: http_health
    - save: True
{%- for item in beacon %}
    - {{ item | json }}
{%- endfor %}
    - require:
      - saltutil: paphosting-watcher-sync
      - saltutil: paphosting-watcher-sync-utils
{%- else %}
paphosting-watcher-beacon:
  beacon.absent:
    - name: http_health
    - save: True
{%- endif %}
