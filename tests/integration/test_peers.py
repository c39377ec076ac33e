"""The peers of ``make bench --part peers`` (harness/peers.py) run for real: gdnsd and PowerDNS
started from their rendered configuration on loopback, in front of two real haproxy load
balancers configured by the project's renderer. A dead load balancer is a killed haproxy.

Only the behaviour is checked here (each peer stops handing out a dead load balancer, hands it out
again once it is back, and hands out both when both are dead); how fast is the benchmark's job.
"""

import pytest

from harness import peers, services
from harness.services import LoadBalancer
from harness.wait import wait_until
from paphosting import model
from tests.conftest import require_binary

LB1, LB2 = "lb1.peers.test", "lb2.peers.test"
ROT = "http0.l.paphosting.nl"


@pytest.fixture(scope="module")
def lbs(loopback, tmp_path_factory):
    require_binary("haproxy")
    made = {}
    port = None  # a peer probes every member of a rotation on one port
    for name in (LB1, LB2):
        address = loopback.address()
        port = port or loopback.port(address)
        made[name] = LoadBalancer(name, address, port, tmp_path_factory.mktemp(name))
    yield made
    for lb in made.values():
        lb.stop()


@pytest.fixture(scope="module")
def pillar(lbs, loopback, tmp_path_factory):
    ns = "ns1.peers.test"
    address = loopback.address()
    web = loopback.address()
    pillar = {
        "settings": {"service_mode": "process"},
        "loadbalancers": {
            name: {"address": lb.address, "http_port": lb.port} for name, lb in lbs.items()
        },
        "webservers": {"web1.peers.test": {"address": web}},
        "nameservers": {
            ns: {"address": address, "port": loopback.udp_tcp_port(address), "server": "nsd"}
        },
        "rotations": {ROT: {"ttl": 60, "members": [LB1, LB2]}},
        "services": {
            "www": {
                "type": "stateless",
                "hostnames": ["www.paphosting.nl"],
                "rotation": ROT,
                "servers": [{"name": "web1.peers.test", "port": loopback.port(web)}],
            },
        },
        "zones": {"paphosting.nl": {}},
        "health": {"watchers": [ns], "interval": 1, "timeout": 0.5, "fall": 2, "rise": 2},
        "schedule": {"enabled": False},
    }
    # A running webserver: a load balancer with no server up fails its health endpoint.
    with services.webservers(pillar, tmp_path_factory.mktemp("webapps")):
        for lb in lbs.values():
            lb.configure(pillar).start()
        yield pillar


@pytest.mark.parametrize("kind", peers.KINDS)
def test_a_peer_hands_out_only_the_live_load_balancer(kind, lbs, pillar, loopback, tmp_path):
    for name in peers.BINARIES[kind]:
        require_binary(name)
    platform = model.parse(pillar)
    address = loopback.address()
    peer = peers.Peer(kind, platform, tmp_path, address, loopback.udp_tcp_port(address))
    both = sorted(lb.address for lb in lbs.values())

    def answers(want, what):
        return wait_until(
            lambda: peer.answers(ROT) == want, timeout=45, message=f"{kind} to answer {what}"
        )

    peer.start()
    try:
        answers(both, "both load balancers")
        lbs[LB1].stop()
        answers([lbs[LB2].address], f"{LB2} only, once {LB1} died")
        lbs[LB2].stop()
        answers(both, "both again once both died (fail open)")
        lbs[LB2].start()
        answers([lbs[LB2].address], f"{LB2} only, once it came back")
        lbs[LB1].start()
        answers(both, f"both, once {LB1} came back")
    finally:
        peer.stop()
        for lb in lbs.values():
            lb.start()
    assert not peer.process.running
