{#- Drift correction: a highstate on a schedule, on every minion. Interval and splay come from
    paphosting:schedule (defaults in the model: 1800 s, splay 300 s). Each run that had to change
    something reports it on the event bus (drift.highstate); `salt-run drift.report` lists them.
    run_on_start False: Salt 3008 otherwise runs a `seconds` job as soon as it is scheduled and at
    every minion start (all minions at once after a fleet restart); the first run comes after one
    interval plus splay instead. #}
{%- set sched = salt['paphosting.schedule']() %}
{%- if sched.enabled %}
paphosting-minion-drift-schedule:
  schedule.present:
    - name: paphosting-drift
    - function: drift.highstate
    - seconds: {{ sched.highstate_interval }}
    - splay: {{ sched.splay }}
    - run_on_start: False
    - persist: True
{%- else %}
paphosting-minion-drift-schedule:
  schedule.absent:
    - name: paphosting-drift
    - persist: True
{%- endif %}
