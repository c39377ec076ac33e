{#- A scheduled highstate had to change something on a minion: record it on this master.
    data['id'] is the minion id the master authenticated (event.send), not a claim in the data. #}
paphosting-drift-record:
  runner.drift.record:
    - args:
      - minion: {{ data['id'] | json }}
      - report: {{ data.get('data', {}) | json }}
