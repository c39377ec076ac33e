{#- A watcher probes every load balancer's health URL with the http_health beacon and reports to
    the masters (the DNS failover, docs/failover.md). The beacon's configuration comes from the
    pillar (paphosting:loadbalancers, paphosting:health) through paphosting.watcher_beacon; it is
    saved to minion.d/beacons.conf, so it survives a minion restart. -#}
{%- set beacon = salt['paphosting.watcher_beacon']() %}

{#- A highstate syncs every custom module before it renders (load_dynamic), but does not refresh
    the running minion's beacon loader: these two make a fresh watcher load the beacon. Once the
    beacon is configured (saved in minion.d/beacons.conf by the state below, loaded from there at
    every start) they are left out, so `test=True` reports no change where there is none (Salt's
    saltutil.sync_* states always say "would have been run" in test mode). Decided when the SLS
    renders, from the file (paphosting.beacon_saved): with an `unless` (first `beacons.list`,
    which asks the running minion over its event bus, then a file read) these states still cost
    1.5-3 s of every nameserver highstate, measured by make bench --part scale. #}
{%- set fresh = not salt['paphosting.beacon_saved']() %}
{%- if fresh %}
paphosting-watcher-sync:
  saltutil.sync_beacons:
    - refresh: True

paphosting-watcher-sync-utils:
  saltutil.sync_utils:
    - refresh: True
{%- endif %}

{%- if beacon %}
paphosting-watcher-beacon:
  beacon.present:
    - name: http_health
    - save: True
{%- for item in beacon %}
    - {{ item | json }}
{%- endfor %}
{%- if fresh %}
    - require:
      - saltutil: paphosting-watcher-sync
      - saltutil: paphosting-watcher-sync-utils
{%- endif %}
{%- else %}
paphosting-watcher-beacon:
  beacon.absent:
    - name: http_health
    - save: True
{%- endif %}
