{#- A minion started (or restarted): bring it the project's modules. The minions do not sync them
    at every highstate (autoload_dynamic_modules: False, conf/minion.d/paphosting.conf), so a new
    minion would otherwise have none until the next push or drift correction. Both masters react;
    a second sync finds nothing new. #}
paphosting-minion-sync:
  local.saltutil.sync_all:
    - tgt: {{ tag.split('/')[2] | json }}
