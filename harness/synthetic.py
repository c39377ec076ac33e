"""Synthetic platform pillars for the benchmark: the example platform with many services or records.

The example platform (``pillar/paphosting.sls``: 2 load balancers, 3 nameservers, 3 webservers)
grows by ``services`` generated services, each with one hostname in ``paphosting.nl``: four in
five stateless over all three webservers, one in five stateful (primary and backup), half of those
with manual failback. ``records`` adds that many A records to ``paphosting.nl``.
"""

import copy

import yaml

from harness import REPO

EXAMPLE = REPO / "pillar" / "paphosting.sls"
ZONE = "paphosting.nl"
WEBSERVERS = ("web1.paphosting.net", "web2.paphosting.net", "web3.paphosting.net")


def example():
    """The example platform (the value of the ``paphosting`` key), freshly loaded."""
    return yaml.safe_load(EXAMPLE.read_text())["paphosting"]


def service(i, check_inter=None, lean=False):
    """The ``i``-th generated service: ``(name, pillar value)``. ``lean``: a stateless service
    has one server (not all three)."""
    name = f"s{i:05d}"
    check = {"path": "/health"}
    if check_inter:
        check["inter"] = check_inter
    if i % 5 == 0:
        primary = WEBSERVERS[i % 3]
        backup = WEBSERVERS[(i + 1) % 3]
        value = {
            "type": "stateful",
            "hostnames": [f"{name}.{ZONE}"],
            "port": 8000,
            "failback": "manual" if i % 10 == 0 else "auto",
            "check": check,
            "servers": [{"name": primary, "role": "primary"}, {"name": backup, "role": "backup"}],
        }
    else:
        value = {
            "type": "stateless",
            "hostnames": [f"{name}.{ZONE}"],
            "port": 8000,
            "check": check,
            "servers": [{"name": WEBSERVERS[i % 3]}] if lean else [{"name": w} for w in WEBSERVERS],
        }
    return name, value


def platform(services=0, records=0, base=None, check_inter=None, lean=False):
    """The example platform (or ``base``) with ``services`` more services and ``records`` more records.

    ``check_inter`` (ms) sets the health-check interval of the generated services: a running
    haproxy with 10,000 backends checking every 2 s would load the machine it is measured on.
    ``lean``: one server per stateless service (see :func:`service`).
    """
    pillar = copy.deepcopy(base if base is not None else example())
    services_map = pillar.setdefault("services", {})
    for i in range(services):
        name, value = service(i, check_inter, lean)
        services_map[name] = value
    if records:
        zone_records = pillar["zones"][ZONE].setdefault("records", {})
        for i in range(records):
            zone_records[f"h{i}"] = [
                {"type": "A", "data": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"}
            ]
    return pillar


def sls(pillar):
    """The pillar SLS text holding ``pillar`` under ``paphosting``."""
    return yaml.safe_dump(
        {"paphosting": pillar}, sort_keys=False, default_flow_style=None, width=1000
    )


def customer(i, rotation="http0.l.paphosting.nl"):
    """The ``i``-th customer: ``(zone name, zone value, service name, service value)``.

    A customer zone as a hoster has them: its apex and ``www`` on the rotation (the apex gets the
    rotation's A/AAAA records, ``www`` a CNAME), mail, SPF, DKIM, a few hosts: ten records.
    """
    zname = f"customer{i:05d}.example"
    zone = {
        "ttl": 3600,
        "records": {
            "@": [
                {"type": "MX", "data": f"10 mail.{zname}."},
                {"type": "TXT", "data": '"v=spf1 mx -all"'},
            ],
            "mail": [{"type": "A", "data": f"198.18.{i >> 8 & 255}.{i & 255}"}],
            "ftp": [{"type": "CNAME", "data": f"www.{zname}."}],
            "dev": [{"type": "A", "data": f"198.19.{i >> 8 & 255}.{i & 255}"}],
            "_dmarc": [{"type": "TXT", "data": '"v=DMARC1; p=none"'}],
            "sel._domainkey": [{"type": "TXT", "data": '"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS"'}],
            "imap": [{"type": "CNAME", "data": f"mail.{zname}."}],
            "smtp": [{"type": "CNAME", "data": f"mail.{zname}."}],
            "_caldav._tcp": [{"type": "SRV", "data": f"0 1 443 mail.{zname}."}],
        },
    }
    sname = f"c{i:05d}"
    service = {
        "type": "stateless",
        "hostnames": [zname, f"www.{zname}"],
        "rotation": rotation,
        "port": 8000,
        "check": {"path": "/health", "inter": 60000},
        "servers": [{"name": WEBSERVERS[i % 3]}],
    }
    return zname, zone, sname, service


def customers(count, base=None):
    """The example platform (or ``base``) with ``count`` customer zones, each with its apex on the
    rotation (see :func:`customer`)."""
    pillar = copy.deepcopy(base if base is not None else example())
    for i in range(count):
        zname, zone, sname, service = customer(i)
        pillar["zones"][zname] = zone
        pillar["services"][sname] = service
    return pillar
