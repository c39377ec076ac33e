# The webserver role. On real hosts the sites are deployed by their own means and nothing is done
# here. In service_mode process (the demo, tests) every webserver runs the demo web application
# (files/webapp.py: answers which server served the request and counts the session's requests)
# on each port its services use, as a plain background process with a pidfile.
{%- set me = grains['id'] %}
{%- set web = salt['pillar.get']('paphosting:webservers:' ~ me, {}) %}
{%- set mode = salt['pillar.get']('paphosting:settings:service_mode', 'systemd') %}
{%- if mode == 'process' and web %}
{%-   set root = salt['config.get']('paphosting_root', '/') or '/' %}
{%-   set app = salt['file.join'](root, 'opt/paphosting/webapp.py') %}
{%-   set rundir = salt['file.join'](root, 'run/paphosting') %}
{%-   set logdir = salt['file.join'](root, 'var/log/paphosting') %}
{%-   set host = '[' ~ web['address'] ~ ']' if ':' in web['address'] else web['address'] %}
{%-   set ports = [] %}
{%-   for name, svc in salt['pillar.get']('paphosting:services', {}).items() %}
{%-     set raw = svc.get('servers') or [] %}
{%-     set servers = [] %}
{%-     if raw is mapping %}
{%-       for sname, srv in raw.items() %}{% do servers.append(dict(srv or {}, name=sname)) %}{% endfor %}
{%-     else %}
{%-       do servers.extend(raw) %}
{%-     endif %}
{%-     for srv in servers if srv.get('name') == me %}
{%-       set port = srv.get('port', svc.get('port', 80)) %}
{%-       if port not in ports %}{% do ports.append(port) %}{% endif %}
{%-     endfor %}
{%-   endfor %}

webserver-webapp-directories:
  file.directory:
    - names:
      - {{ salt['file.dirname'](app) }}
      - {{ rundir }}
      - {{ logdir }}
    - makedirs: True

webserver-webapp-file:
  file.managed:
    - name: {{ app }}
    - source: salt://webserver/files/webapp.py
    - mode: "0755"
    - require:
      - file: webserver-webapp-directories
{%-   for port in ports | sort %}
{%-     set pidfile = salt['file.join'](rundir, 'webapp-' ~ port ~ '.pid') %}

webserver-webapp-{{ port }}-running:
  cmd.run:
    - name: >-
        setsid -f {{ grains['pythonexecutable'] }} {{ app }} --name {{ me }}
        --address {{ web['address'] }} --port {{ port }} --pidfile {{ pidfile }}
        >> {{ salt['file.join'](logdir, 'webapp-' ~ port ~ '.log') }} 2>&1 < /dev/null
    - unless: test -s {{ pidfile }} && kill -0 "$(cat {{ pidfile }})"
    - require:
      - file: webserver-webapp-file

webserver-webapp-{{ port }}-healthy:
  http.wait_for_successful_query:
    - name: http://{{ host }}:{{ port }}/health
    - status: 200
    - wait_for: 15
    - request_interval: 0.2
    - require:
      - cmd: webserver-webapp-{{ port }}-running
{%-   endfor %}
{%- endif %}
