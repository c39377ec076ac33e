{#- A scheduled highstate had to change something on a minion: record it on this master. The
    runner takes the minion from the signed report, checked against that minion's accepted key:
    data['id'] is the sender's own claim on Salt's batched events path, logged and nothing more. #}
{%- set payload = data.get('data') if data.get('data') is mapping else {} %}
paphosting-drift-record:
  runner.drift.record:
    - args:
      - report: {{ payload.get('report') | json }}
      - sig: {{ payload.get('sig') | json }}
      - sender: {{ data.get('id') | json }}
