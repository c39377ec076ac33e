"""The namespaces and the fault rules themselves, without Salt (issue 17): two hosts on a bridge,
a TCP listener in one, and what a connecting client sees under each fault. A power-off or a
partition answers nothing (the connect times out); only a killed process answers with a reset. A
lab whose process was killed leaves namespaces that the next lab removes.

Subnet 198.18.171.0/24 (this file's own)."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import types

import pytest

from harness import faults as faultlib
from harness import netns
from harness.wait import wait_until

SUBNET = "198.18.171.0/24"
PORT = 8171


def require_namespaces():
    problem = netns.available()
    if problem:
        pytest.fail(f"the namespace fault suite cannot run: {problem}", pytrace=False)


@pytest.fixture(scope="module")
def net():
    require_namespaces()
    net = netns.Network(SUBNET)
    net.add("a.test", ["198.18.171.10"])
    net.add("b.test", ["198.18.171.11"])
    try:
        net.create()
        yield net
    finally:
        net.delete()


@pytest.fixture
def listener(net):
    """A TCP server in b.test that accepts and closes, until killed."""
    code = textwrap.dedent(
        f"""
        import socket
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("198.18.171.11", {PORT})); s.listen(16)
        while True:
            c, _ = s.accept(); c.close()
        """
    )
    proc = subprocess.Popen(net.wrap("b.test", [sys.executable, "-c", code]))
    wait_until(lambda: connect("198.18.171.11") == "connected", 10, 0.05, "the listener in b.test")
    yield proc
    proc.kill()
    proc.wait()


def connect(address, timeout=1.0):
    try:
        with socket.create_connection((address, PORT), timeout=timeout):
            return "connected"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"error {exc}"


def connect_from(net, host, address, timeout=1.0):
    code = (
        "import socket,sys\n"
        "try:\n"
        f"    socket.create_connection(({address!r}, {PORT}), timeout={timeout}).close(); print('connected')\n"
        "except ConnectionRefusedError: print('refused')\n"
        "except TimeoutError: print('timeout')\n"
    )
    res = net.run(host, [sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    return res.stdout.strip() or res.stderr.strip()


@pytest.fixture
def faults(net):
    f = faultlib.Faults(types.SimpleNamespace(net=net, minions={"a.test": None, "b.test": None}))
    yield f
    f.heal_all()


def test_hosts_reach_each_other_and_the_lab(net, listener):
    assert connect("198.18.171.11") == "connected"
    assert connect_from(net, "a.test", "198.18.171.11") == "connected"


def test_power_off_answers_nothing_and_heals(net, listener, faults):
    with faults.power_off("b.test"):
        assert "drop" in faultlib.rules_of(net, "b.test")
        assert connect("198.18.171.11") == "timeout"
        assert connect_from(net, "a.test", "198.18.171.11") == "timeout"
    assert faultlib.rules_of(net, "b.test") == ""
    assert connect("198.18.171.11") == "connected"


def test_a_killed_process_answers_with_a_reset(net, listener):
    listener.kill()
    listener.wait()
    assert connect("198.18.171.11") == "refused"


def test_partition_between_two_hosts_only(net, listener, faults):
    with faults.partition("a.test", "b.test"):
        assert connect_from(net, "a.test", "198.18.171.11") == "timeout"
        assert connect("198.18.171.11") == "connected"  # the lab (a third host) still reaches b


def test_one_way_partition_drops_one_direction(net, listener, faults):
    # b's packets to a are dropped: a's SYN reaches b, b's SYN-ACK never reaches a.
    with faults.partition("b.test", "a.test", one_way=True):
        rules_a = faultlib.rules_of(net, "a.test")
        assert "198.18.171.11" in rules_a and faultlib.rules_of(net, "b.test") == ""
        assert connect_from(net, "a.test", "198.18.171.11") == "timeout"


def test_faults_on_one_host_stack_and_heal_one_by_one(net, listener, faults):
    loss = faults.loss("b.test", 100)
    off = faults.power_off("b.test")
    off.heal()
    assert connect("198.18.171.11") == "timeout"  # 100 % loss still drops everything
    loss.heal()
    with faults.loss("b.test", 30):
        assert "numgen random mod 100 < 30 drop" in faultlib.rules_of(net, "b.test")
    assert connect("198.18.171.11") == "connected"


def test_a_killed_lab_leaves_nothing_the_next_one_keeps(tmp_path):
    require_namespaces()
    code = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(faultlib.REPO)!r})
        from harness import netns
        net = netns.Network("198.18.172.0/24")
        net.add("x.test", ["198.18.172.10"])
        net.create()
        print(net.tag, flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    tag = proc.stdout.readline().strip()
    assert tag.startswith(netns.PREFIX), tag
    assert any(p.name.startswith(tag) for p in netns.NETNS_DIR.iterdir())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    removed = netns.sweep_stale()
    assert f"{tag}-0-x" in removed and f"{tag}b" in removed, removed
    assert not any(p.name.startswith(tag) for p in netns.NETNS_DIR.iterdir())
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert tag not in links
