"""Small platforms built in the tests, so that the unit tests do not hang on the shipped example
(pillar/paphosting.sls is documentation: editing it must break no test but the one about it).

``pillar()`` is the smallest platform most tests need: two load balancers, two nameservers (BIND
and NSD), one webserver, the rotation http0.l.paphosting.nl, the zone paphosting.nl and the
stateless service www. A test asks for more with keywords, or edits the fresh dict it gets.
The names and addresses are those of the example, so messages read the same.
"""

LB1, LB2 = "lb1.paphosting.net", "lb2.paphosting.net"
NS1 = "ns1.paphosting.net"
WEB1, WEB2 = "web1.paphosting.net", "web2.paphosting.net"
ROT = "http0.l.paphosting.nl"
ZONE = "paphosting.nl"
EVERY_SERVER = ("bind", "nsd", "knot")  # servers=EVERY_SERVER: ns1 BIND, ns2 NSD, ns3 Knot

_NAMESERVER = {
    "bind": {"address": "127.0.0.1", "port": 5300, "server": "bind"},
    "nsd": {"address": "127.0.3.2", "port": 5300, "server": "nsd"},
    "knot": {"address": "127.0.3.3", "port": 5300, "server": "knot"},
}
_CHECK = {"path": "/health", "inter": 2000, "fall": 3, "rise": 2}


def pillar(
    *,
    servers=("bind", "nsd"),
    webservers=1,
    shop=False,
    masters=False,
    metrics=False,
    **sections,
):
    """A fresh, valid ``paphosting`` pillar value.

    ``servers``: the DNS server of ns1, ns2, ... in turn (each kind at most once: its address
    comes with it); ``webservers``: how many (web1, ...),
    all serving www; ``shop``: add the stateful service shop (web1 primary, web2 backup: needs two
    webservers); ``masters``: the masters nl and ch; ``metrics``: exporters for every load
    balancer, nameserver and master (ns1's BIND statistics channel on 8053). Every other keyword
    replaces that top-level section whole.
    """
    nameservers = {
        f"ns{i}.paphosting.net": dict(_NAMESERVER[server]) for i, server in enumerate(servers, 1)
    }
    webs = {f"web{i}.paphosting.net": {"address": f"127.0.2.{i}"} for i in range(1, webservers + 1)}
    out = {
        "settings": {"service_mode": "process"},
        "haproxy": {"http_port": 8080, "health_path": "/haproxy-health"},
        "loadbalancers": {LB1: {"address": "127.0.1.1"}, LB2: {"address": "127.0.1.2"}},
        "webservers": webs,
        "nameservers": nameservers,
        "rotations": {ROT: {"ttl": 300, "members": [LB1, LB2], "min_members": 1}},
        "services": {
            "www": {
                "type": "stateless",
                "hostnames": ["www.paphosting.nl", "paphosting.nl"],
                "rotation": ROT,
                "port": 8000,
                "check": dict(_CHECK),
                "servers": [{"name": web} for web in webs],
            }
        },
        "zones": {
            ZONE: {
                "ttl": 3600,
                "ns": list(nameservers),
                "soa": {
                    "rname": "hostmaster.paphosting.nl",
                    "refresh": 3600,
                    "retry": 600,
                    "expire": 1209600,
                    "minimum": 300,
                },
                "records": {
                    "@": [
                        {"type": "MX", "data": "10 mail.paphosting.nl."},
                        {"type": "TXT", "data": '"v=spf1 mx -all"'},
                    ],
                    "mail": [{"type": "A", "data": "127.0.2.3"}],
                },
            }
        },
        "health": {
            "watchers": list(nameservers),
            "interval": 1,
            "timeout": 0.5,
            "fall": 3,
            "rise": 2,
            "quorum": "majority",
            "heartbeat": 30,
            "flap": {"window": 300, "max_transitions": 4, "hold": 120},
        },
    }
    if shop:
        out["services"]["shop"] = {
            "type": "stateful",
            "hostnames": ["shop.paphosting.nl"],
            "rotation": ROT,
            "port": 8000,
            "failback": "manual",
            "cookie_name": "PAPSRV",
            "check": dict(_CHECK),
            "servers": [{"name": WEB1, "role": "primary"}, {"name": WEB2, "role": "backup"}],
        }
    if masters or metrics:
        out["masters"] = {"nl": {"address": "127.0.4.1"}, "ch": {"address": "127.0.4.2"}}
    if metrics:
        out["metrics"] = {
            "scrape_interval": 2,
            "loadbalancers": {
                LB1: {"address": "127.0.5.1", "port": 8405},
                LB2: {"address": "127.0.5.2", "port": 8405},
            },
            "nameservers": {
                ns: {"address": f"127.0.6.{i}", "port": 9119} for i, ns in enumerate(nameservers, 1)
            },
            "masters": {
                "nl": {"address": "127.0.4.1", "port": 9120},
                "ch": {"address": "127.0.4.2", "port": 9120},
            },
        }
        if nameservers.get(NS1, {}).get("server") == "bind":
            out["metrics"]["nameservers"][NS1]["stats_port"] = 8053
    out.update(sections)
    return out
