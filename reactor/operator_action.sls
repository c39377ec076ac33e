{#- An operator action (drain, restore, failback) one master took, relayed by a nameserver or
    watcher to every master it is connected to: take it here too. The runner verifies the
    masters' signature on the record; the sender is logged and nothing more. #}
{%- set payload = data.get('data') if data.get('data') is mapping else {} %}
paphosting-operator-action:
  runner.rotation.take_action:
    - args:
      - record: {{ payload.get('record') | json }}
      - sig: {{ payload.get('sig') | json }}
      - sender: {{ data.get('id') | json }}
