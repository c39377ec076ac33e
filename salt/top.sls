{#- Targeting by role. A minion's roles come from the platform pillar itself: a minion listed
    under paphosting:loadbalancers gets the loadbalancer states, and so on, so adding a server
    to the pillar is all it takes. Watchers (the DNS failover's health probes) default to the
    nameservers. -#}
{%- set pap = pillar.get('paphosting', {}) %}
{%- set watchers = pap.get('health', {}).get('watchers', pap.get('nameservers', {}) | list) %}
{%- set roles = [
      ('loadbalancer', pap.get('loadbalancers', {}) | list),
      ('nameserver', pap.get('nameservers', {}) | list),
      ('webserver', pap.get('webservers', {}) | list),
      ('watcher', watchers),
    ] %}
base:
  '*':
    - minion
{%- for role, minions in roles if minions %}
  '{{ minions | join(",") }}':
    - match: list
    - {{ role }}
{%- endfor %}
