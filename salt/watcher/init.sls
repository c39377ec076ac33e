{#- A watcher probes every load balancer's health URL with the http_health beacon and reports to
    the masters (the DNS failover, docs/failover.md). The beacon's configuration comes from the
    pillar (paphosting:loadbalancers, paphosting:health) through paphosting.watcher_beacon; it is
    saved to minion.d/beacons.conf, so it survives a minion restart. -#}
{%- set beacon = salt['paphosting.watcher_beacon']() %}

{#- A highstate syncs every custom module before it renders (load_dynamic), but does not refresh
    the running minion's beacon loader: these two make a fresh watcher load the beacon. Once the
    beacon is configured (saved in minion.d/beacons.conf by the state below, loaded from there at
    every start) they are skipped, so `test=True` reports no change where there is none (Salt's
    saltutil.sync_* states always say "would have been run" in test mode). The test reads the
    file (paphosting.beacon_saved): `beacons.list` asks the running minion over its event bus,
    which cost 1.5-2.5 s of every highstate (docs/bench.md). #}
paphosting-watcher-sync:
  saltutil.sync_beacons:
    - refresh: True
    - unless:
      - fun: paphosting.beacon_saved

paphosting-watcher-sync-utils:
  saltutil.sync_utils:
    - refresh: True
    - unless:
      - fun: paphosting.beacon_saved

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
