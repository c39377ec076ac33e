{#- A minion started (or restarted): push it the current rotation, so a nameserver that missed a
    failover while it was down serves the current rotation at once (anti-entropy; the runner
    refuses ids that are no nameserver or watcher, and the push is idempotent). #}
paphosting-rotation-resync:
  runner.rotation.resync:
    - args:
      - minion: {{ tag.split('/')[2] | json }}
