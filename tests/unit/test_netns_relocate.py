"""The pillar of the lab in network namespaces: every host moved to one address of its own in the
lab's subnet (harness.netns.relocate), and the addresses a namespace gets (host_addresses)."""

import ipaddress

import pytest

from harness import faults, netns
from paphosting import model
from tests.unit import platforms

SUBNET = "198.18.99.0/24"


def test_every_host_gets_one_address_of_its_own_in_the_subnet():
    pillar = platforms.pillar(webservers=3, metrics=True)  # mail's address is web3's
    moved, hosts = netns.relocate(pillar, SUBNET)
    platform = model.parse(moved)  # still a valid platform
    net = ipaddress.ip_network(SUBNET)
    assert len(set(hosts.values())) == len(hosts)
    assert all(ipaddress.ip_address(a) in net for a in hosts.values())
    assert str(net.network_address + 1) not in hosts.values()  # the bridge's
    by_host = netns.host_addresses(platform)
    assert set(by_host) == {
        *pillar["loadbalancers"],
        *pillar["webservers"],
        *pillar["nameservers"],
        *pillar["masters"],
    }
    # An exporter listens on its host's address: one address per host.
    assert all(v == [hosts[h]] for h, v in by_host.items())
    # The nameserver on 127.0.0.1 moved too; a zone record naming a host's address follows it.
    assert platform.nameservers["ns1.paphosting.net"].address == hosts["ns1.paphosting.net"]
    mail = moved["zones"]["paphosting.nl"]["records"]["mail"][0]["data"]
    assert mail == hosts["web3.paphosting.net"]
    assert pillar["loadbalancers"]["lb1.paphosting.net"]["address"] == "127.0.1.1"  # not changed


def test_the_fault_platform_has_three_load_balancers_in_its_rotation():
    # The fault suite drops web3 and the exporters, adds lb3: give it all three to act on.
    base = platforms.pillar(webservers=3, metrics=True)
    platform = model.parse(netns.relocate(faults.platform_pillar(base), SUBNET)[0])
    assert sorted(platform.rotations["http0.l.paphosting.nl"].members) == [
        f"lb{i}.paphosting.net" for i in (1, 2, 3)
    ]
    assert set(platform.webservers) == {"web1.paphosting.net", "web2.paphosting.net"}
    assert platform.health.flap_window == 60 and platform.health.flap_max_transitions == 4


def test_a_lab_lives_in_the_benchmarking_range_only():
    with pytest.raises(netns.NetnsError, match="198.18.0.0/15"):
        netns.Network("10.1.0.0/24")
    net = netns.Network(SUBNET)
    with pytest.raises(netns.NetnsError, match="not in the lab's subnet"):
        net.add("x.test", ["198.18.100.5"])
    assert net.add("x.test", ["198.18.99.10"]).startswith(f"{netns.PREFIX}")
    assert net.wrap("x.test", ["true"])[:2] == [
        "nsenter",
        f"--net=/run/netns/{net.hosts['x.test']}",
    ]
