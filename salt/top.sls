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
{#- Roles with the same minion list (watchers default to the nameservers) share one target: a
    top file cannot name the same target twice. #}
{%- set targets = {} %}
{%- for role, minions in roles if minions %}
{%- do targets.setdefault(minions | join(","), []).append(role) %}
{%- endfor %}
base:
  '*':
    - minion
{%- for target, sls in targets.items() %}
  '{{ target }}':
    - match: list
{%- for role in sls %}
    - {{ role }}
{%- endfor %}
{%- endfor %}
