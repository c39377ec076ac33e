{#- A watcher's health report (http_health beacon): hand it to the rotation runner, which checks
    its signature and decides. The event's id is not trusted; the signed report names its
    watcher. #}
paphosting-rotation-report:
  runner.rotation.report:
    - args:
      - report: {{ data.get('report') | json }}
      - sig: {{ data.get('sig') | json }}
      - sender: {{ data.get('id') | json }}
