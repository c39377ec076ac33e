# The Debian packages of this nameserver's DNS server (and its checkers).
{%- set ns = salt['dns_server.info']() %}

nameserver-packages:
  pkg.installed:
    - pkgs: {{ ns.packages | tojson }}
