# The example platform of docs/architecture.md:
# 2 haproxy load balancers, 3 authoritative nameservers (one each of BIND 9, NSD and Knot),
# 3 webservers, a stateless and a stateful service, and the rotation name http0.l.paphosting.nl.
#
# Every key is documented in docs/pillar.md. Unknown keys are errors, so a typo is reported
# (with its pillar path) instead of being silently ignored.
#
# The addresses are on 127.0.0.0/8 so that `make demo` runs this very file on one machine; on
# real hosts they are the servers' public addresses and the ports are the standard ones.
paphosting:
  settings:
    # systemd on real hosts; "process" runs haproxy and the DNS servers as plain processes with
    # pidfiles (machines without systemd: the tests and the demo).
    service_mode: process

  haproxy:
    http_port: 8080                # port every load balancer listens on for HTTP
    health_path: /haproxy-health   # answered by haproxy itself; probed by the DNS failover

  # Keys are minion ids.
  loadbalancers:
    lb1.paphosting.net:
      address: 127.0.1.1
    lb2.paphosting.net:
      address: 127.0.1.2

  webservers:
    web1.paphosting.net:
      address: 127.0.2.1
    web2.paphosting.net:
      address: 127.0.2.2
    web3.paphosting.net:
      address: 127.0.2.3

  nameservers:
    ns1.paphosting.net:
      # BIND listens only on addresses configured on an interface: on loopback that is
      # 127.0.0.1 (NSD and Knot bind any 127.0.0.0/8 address).
      address: 127.0.0.1
      port: 5300
      control_port: 9953   # rndc, on 127.0.0.1 with a generated key (default 953)
      server: bind
    ns2.paphosting.net:
      address: 127.0.3.2
      port: 5300
      server: nsd
    ns3.paphosting.net:
      address: 127.0.3.3
      port: 5300
      server: knot

  # Rotation names: their A records are the addresses of the member load balancers that are
  # healthy (the failover takes dead ones out, never below min_members).
  rotations:
    http0.l.paphosting.nl:
      ttl: 300
      members: [lb1.paphosting.net, lb2.paphosting.net]
      min_members: 1

  services:
    # Stateless: balanced over all healthy webservers, no cookie.
    www:
      type: stateless
      hostnames: [www.paphosting.nl, paphosting.nl]   # the apex gets A records (no CNAME at an apex)
      rotation: http0.l.paphosting.nl   # the hostnames become CNAMEs to this rotation name
      port: 8000                        # default backend port for the servers below
      check: {path: /health, inter: 2000, fall: 3, rise: 2}
      servers:
        - name: web1.paphosting.net
        - name: web2.paphosting.net
        - name: web3.paphosting.net

    # Stateful: everything goes to the primary while it is up, to the backup when it is down.
    # The cookie names the server and is the same on every load balancer.
    shop:
      type: stateful
      hostnames: [shop.paphosting.nl]
      rotation: http0.l.paphosting.nl
      port: 8000
      failback: manual      # stay on the backup after the primary recovers, until an operator acts
      cookie_name: PAPSRV
      check: {path: /health, inter: 2000, fall: 3, rise: 2}
      servers:
        - {name: web1.paphosting.net, role: primary}
        - {name: web2.paphosting.net, role: backup}

  zones:
    paphosting.nl:
      ttl: 3600
      # ns defaults to every nameserver above; here the public names are spelled out.
      ns: [ns1.paphosting.net, ns2.paphosting.net, ns3.paphosting.net]
      # Signed by every nameserver with one key set the masters make (docs/dnssec.md); off here
      # so that the demo needs no platform GPG key: `dnssec: true`, or {algorithm: 13, nsec3: true}.
      # dnssec: true
      soa:
        rname: hostmaster.paphosting.nl
        refresh: 3600
        retry: 600
        expire: 1209600
        minimum: 300
      records:
        "@":
          - {type: MX, data: "10 mail.paphosting.nl."}
          - {type: TXT, data: '"v=spf1 mx -all"'}
        mail:
          - {type: A, data: 127.0.2.3}

  # DNS failover: who probes the load balancers, and how the masters decide.
  health:
    watchers: [ns1.paphosting.net, ns2.paphosting.net, ns3.paphosting.net]
    interval: 1          # seconds between probes
    timeout: 0.5         # seconds per probe
    fall: 3              # consecutive failures before a watcher calls a load balancer down
    rise: 2              # consecutive successes before it calls it up again
    quorum: majority     # watchers that must agree a load balancer is down
    heartbeat: 30        # seconds between full-state reports
    flap: {window: 300, max_transitions: 4, hold: 120}

  masters:
    nl: {address: 127.0.4.1}
    ch: {address: 127.0.4.2}

  # Prometheus exporters (docs/monitoring.md): each on a management address, never on a public
  # frontend. haproxy's built-in exporter on the load balancers, one exporter per nameserver
  # reading its server's own statistics, one per master for the failover, pushes and drift.
  metrics:
    scrape_interval: 2           # seconds; what Prometheus is told (the lab scrapes this often)
    loadbalancers:
      lb1.paphosting.net: {address: 127.0.5.1, port: 8405}
      lb2.paphosting.net: {address: 127.0.5.2, port: 8405}
    nameservers:
      # stats_port: BIND's statistics channel on 127.0.0.1 (NSD and Knot use their control socket)
      ns1.paphosting.net: {address: 127.0.6.1, port: 9119, stats_port: 8053}
      ns2.paphosting.net: {address: 127.0.6.2, port: 9119}
      ns3.paphosting.net: {address: 127.0.6.3, port: 9119}
    masters:
      nl: {address: 127.0.4.1, port: 9120}
      ch: {address: 127.0.4.2, port: 9120}

  dns:
    max_change_share: 0.3        # refuse applies that change more than 30% of a zone's records
    min_records_for_share: 10    # ... for zones of at least 10 records

  schedule:
    highstate_interval: 1800     # drift correction: seconds between scheduled highstates
    splay: 300
