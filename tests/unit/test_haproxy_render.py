"""The pure haproxy core: rendering from the model, layout, and parsing haproxy's CLI answers."""

import dataclasses
import re

import pytest

from paphosting import haproxy, model
from paphosting.errors import PapError, PillarError
from tests.conftest import output_with_hash_seed
from tests.unit import platforms

LB1, LB2 = "lb1.paphosting.net", "lb2.paphosting.net"
HASH_SEEDS = range(1, 7)


def shop_pillar():
    """Three webservers behind www, and the stateful service shop on web1 and web2."""
    return platforms.pillar(webservers=3, shop=True)


@pytest.fixture
def platform():
    return model.parse(shop_pillar())


def section(text, header):
    """The lines of one section (``backend shop``) of a rendered config."""
    lines = text.splitlines()
    start = lines.index(header)
    out = []
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break
        out.append(line.strip())
    return [line for line in out if line and not line.startswith("#")]


def test_layout_places_every_file_under_the_root():
    assert haproxy.layout() == {
        "config": "/etc/haproxy/haproxy.cfg",
        "pidfile": "/run/haproxy.pid",
        "admin_socket": "/run/haproxy/admin.sock",
        "master_socket": "/run/haproxy-master.sock",
        "peers_socket": "/run/haproxy/peers.sock",
        "log": "/var/log/haproxy.log",
        "certs_dir": "/etc/haproxy/certs",
        "crt_list": "/etc/haproxy/crt-list",
    }
    rooted = haproxy.layout("/srv/lb1")
    assert rooted["config"] == "/srv/lb1/etc/haproxy/haproxy.cfg"
    assert all(p.startswith("/srv/lb1/") for p in rooted.values())


def reordered(pillar):
    """``pillar`` with every mapping of the platform in reverse order (a mapping's order in the
    YAML is not a meaning: the same platform written in another order gets the same config)."""
    return {
        key: dict(reversed(list(value.items()))) if isinstance(value, dict) else value
        for key, value in pillar.items()
    }


def test_render_does_not_depend_on_the_pillar_order(platform):
    assert haproxy.render(model.parse(reordered(shop_pillar())), LB1) == haproxy.render(
        platform, LB1
    )


def test_render_does_not_depend_on_the_hash_seed(platform):
    """Fresh interpreters with different hash seeds render the same config: compared with each
    other (a fixed set of seeds, so the verdict does not hang on this process's random seed) and
    with this process."""
    code = (
        "from paphosting import haproxy, model\n"
        "from tests.unit.test_haproxy_render import shop_pillar\n"
        f"print(haproxy.render(model.parse(shop_pillar()), {LB1!r}), end='')\n"
    )
    renders = {seed: output_with_hash_seed(code, seed) for seed in HASH_SEEDS}
    assert renders == dict.fromkeys(HASH_SEEDS, haproxy.render(platform, LB1))


def test_unknown_load_balancer_names_the_pillar_path(platform):
    with pytest.raises(
        PillarError,
        match=r"pillar paphosting:loadbalancers: 'web1.paphosting.net' is not a load balancer",
    ):
        haproxy.render(platform, "web1.paphosting.net")


def test_frontend_routes_by_host_and_answers_health(platform):
    front = section(haproxy.render(platform, LB1), "frontend http")
    assert "bind 127.0.1.1:8080" in front
    assert "monitor-uri /haproxy-health" in front
    assert "http-request set-var(txn.host) req.hdr(host),field(1,:),lower" in front
    assert "acl host_www var(txn.host) -m str www.paphosting.nl paphosting.nl" in front
    assert "acl host_shop var(txn.host) -m str shop.paphosting.nl" in front
    assert "use_backend www if host_www" in front
    assert not any(line.startswith("default_backend") for line in front)  # unknown host: 503


def test_health_fails_while_no_backend_has_a_server_up(platform):
    front = section(haproxy.render(platform, LB1), "frontend http")
    names = [svc.name for svc in haproxy.services_of(platform, LB1)]
    assert len(names) >= 2
    gate = [line for line in front if line.startswith("acl serving ")]
    assert gate == [f"acl serving nbsrv({name}) gt 0" for name in names]  # or-ed: any serves
    assert front.index("monitor fail if !serving") > front.index("monitor-uri /haproxy-health")


def test_every_server_is_health_checked_with_the_pillar_settings(platform):
    pillar = shop_pillar()
    pillar["services"]["www"]["check"] = {
        "path": "/ping",
        "inter": 500,
        "fall": 4,
        "rise": 5,
        "expect_status": "200",
    }
    www = section(haproxy.render(model.parse(pillar), LB1), "backend www")
    assert "option httpchk GET /ping HTTP/1.1" in www
    assert "http-check send hdr Host www.paphosting.nl" in www
    assert "http-check expect status 200" in www
    assert any(line.startswith("default-server check inter 500 fall 4 rise 5 ") for line in www)
    servers = [line for line in www if line.startswith("server ")]
    assert servers == [
        "server web1.paphosting.net 127.0.2.1:8000",
        "server web2.paphosting.net 127.0.2.2:8000",
        "server web3.paphosting.net 127.0.2.3:8000",
    ]
    defaults = section(haproxy.render(platform, LB1), "defaults")
    assert "option redispatch 1" in defaults
    assert "retry-on conn-failure empty-response response-timeout" in defaults


def test_stateful_cookie_is_the_same_on_every_load_balancer(platform):
    shop = {lb: section(haproxy.render(platform, lb), "backend shop") for lb in (LB1, LB2)}
    assert shop[LB1] == shop[LB2]
    lines = shop[LB1]
    assert "cookie PAPSRV insert indirect nocache httponly" in lines
    assert "server web1.paphosting.net 127.0.2.1:8000 cookie shop-web1_paphosting_net" in lines
    assert (
        "server web2.paphosting.net 127.0.2.2:8000 cookie shop-web2_paphosting_net backup" in lines
    )
    for svc in platform.services.values():
        for srv in svc.servers:
            if svc.stateful:
                for lb in (LB1, LB2):
                    cookie = haproxy.cookie_value(svc.name, srv.name)
                    assert f" cookie {cookie}" in haproxy.render(platform, lb)


def test_manual_failback_keeps_its_state_in_a_peered_one_entry_table(platform):
    text = haproxy.render(platform, LB1, "/srv/lb1")
    assert section(text, "peers paphosting") == [
        "bind unix@/srv/lb1/run/haproxy/peers.sock mode 600",
        f"server {LB1}",
    ]
    assert f"localpeer {LB1}" in section(text, "global")
    shop = section(text, "backend shop")
    assert "stick-table type integer size 1 store gpt0 peers paphosting" in shop
    assert "http-request sc-set-gpt0(0) 1 if !primary_up backup_up" in shop
    assert (
        "use-server web2.paphosting.net if { var(txn.pap_server) -m str web2.paphosting.net }"
        in shop
    )
    assert (
        "use-server web1.paphosting.net if { var(txn.pap_server) -m str web1.paphosting.net }"
        in shop
    )


def test_auto_failback_needs_no_table(platform):
    pillar = shop_pillar()
    pillar["services"]["shop"]["failback"] = "auto"
    text = haproxy.render(model.parse(pillar), LB1)
    assert "peers " not in text and "localpeer" not in text
    shop = section(text, "backend shop")
    assert not any("stick-table" in line for line in shop)
    assert (
        "http-request set-var(txn.pap_server) str(web1.paphosting.net) if primary_up backup_cookie"
        in shop
    )
    assert [line for line in shop if line.startswith("use-server")] == [
        "use-server web1.paphosting.net if { var(txn.pap_server) -m str web1.paphosting.net }"
    ]


def test_several_backups_fail_over_to_the_first_live_one():
    pillar = shop_pillar()
    pillar["services"]["shop"]["servers"].append({"name": "web3.paphosting.net", "role": "backup"})
    shop = section(haproxy.render(model.parse(pillar), LB1), "backend shop")
    picks = [
        line
        for line in shop
        if line.startswith("http-request set-var(txn.pap_server)") and "failed_over" in line
    ]
    assert picks == [
        "http-request set-var(txn.pap_server) str(web2.paphosting.net) if failed_over { srv_is_up(shop/web2.paphosting.net) }",
        "http-request set-var(txn.pap_server) str(web3.paphosting.net) if failed_over"
        " !{ srv_is_up(shop/web2.paphosting.net) } { srv_is_up(shop/web3.paphosting.net) }",
    ]


def test_service_mode_decides_user_and_logging(platform):
    process = section(haproxy.render(platform, LB1), "global")
    assert "log stdout format raw local0" in process
    assert not any(line.startswith("user ") for line in process)
    pillar = shop_pillar()
    pillar["settings"]["service_mode"] = "systemd"
    text = haproxy.render(model.parse(pillar), LB1)
    systemd = section(text, "global")
    assert {"log /dev/log local0", "user haproxy", "group haproxy"} <= set(systemd)
    assert "master-worker" in systemd
    assert (
        "stats socket /run/haproxy/admin.sock mode 600 level admin expose-fd listeners" in systemd
    )
    assert "bind unix@/run/haproxy/peers.sock mode 600 user haproxy group haproxy" in section(
        text, "peers paphosting"
    )


def test_global_timeouts_come_from_the_pillar():
    pillar = shop_pillar()
    pillar["haproxy"].update(
        maxconn=1000, timeout_connect=1500, timeout_client=20000, timeout_server=25000
    )
    text = haproxy.render(model.parse(pillar), LB1)
    assert "maxconn 1000" in section(text, "global")
    assert {"timeout connect 1500", "timeout client 20000", "timeout server 25000"} <= set(
        section(text, "defaults")
    )


def test_by_default_a_request_to_a_silent_backend_waits_at_most_two_seconds():
    """A powered-off backend answers nothing: every attempt that meets it waits ``timeout
    connect``. With the defaults, even a request whose first try and every retry meet it waits
    at most (retries + 1) x timeout connect = 2 s, under the 3 s a client that tries one address
    gives a load balancer (docs/haproxy.md, "A backend that dies without a reset")."""
    pillar = shop_pillar()
    pillar.pop("haproxy", None)
    defaults = section(haproxy.render(model.parse(pillar), LB1), "defaults")
    connect = [int(line.split()[-1]) for line in defaults if line.startswith("timeout connect ")]
    retries = [int(line.split()[-1]) for line in defaults if line.startswith("retries ")]
    assert connect and retries, defaults
    assert (retries[0] + 1) * connect[0] <= 2000
    assert "option redispatch 1" in defaults


def test_ipv6_address_gets_its_own_bind():
    pillar = shop_pillar()
    pillar["loadbalancers"][LB1]["address6"] = "::1"
    assert "bind [::1]:8080 v6only" in section(
        haproxy.render(model.parse(pillar), LB1), "frontend http"
    )


def test_a_load_balancer_carries_only_the_services_of_its_rotations():
    pillar = shop_pillar()
    pillar["rotations"]["http1.l.paphosting.nl"] = {"members": [LB2]}
    pillar["services"]["shop"]["rotation"] = "http1.l.paphosting.nl"
    platform = model.parse(pillar)
    assert [s.name for s in haproxy.services_of(platform, LB1)] == ["www"]
    assert "backend shop" not in haproxy.render(platform, LB1)
    assert "backend shop" in haproxy.render(platform, LB2)


@pytest.mark.parametrize(
    "value",
    [
        "www.example.test\n    bind 0.0.0.0:80",
        "a b",
        "x#y",
        'x"y',
        "x'y",
        "x\\y",
        "x{y}",
        "",
        "x\ty",
    ],
)
def test_renderer_refuses_what_would_inject_configuration(platform, value):
    """Defence in depth: whatever a model object holds, nothing haproxy-significant is written."""
    svc = platform.services["www"]
    bad = dataclasses.replace(svc, hostnames=(value,))
    tampered = dataclasses.replace(platform, services=dict(platform.services, www=bad))
    with pytest.raises(PillarError, match=re.escape("pillar paphosting:services:www:hostnames:0:")):
        haproxy.render(tampered, LB1)


def test_too_long_socket_path_is_a_clear_error(platform):
    with pytest.raises(PapError, match="choose a shorter paphosting_root"):
        haproxy.render(platform, LB1, "/" + "r" * 100)


SHOW_PROC = """#<PID>          <type>          <reloads>       <uptime>        <version>
19552           master          1 [failed: 0]   0d00h00m03s     2.6.12-1+deb12u4
# workers
19672           worker          0               0d00h00m02s     2.6.12-1+deb12u4
19554           worker          1               0d00h00m03s     2.6.12-1+deb12u4
# programs

"""

SHOW_STAT = """# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight
http,FRONTEND,,,0,1,4096,1,0,0,0,0,0,,,,,OPEN,
shop,web1.test,0,0,0,1,,1,0,0,,0,,0,0,0,0,DOWN,1
shop,web2.test,0,0,0,1,,1,0,0,,0,,0,0,0,0,UP,1
shop,BACKEND,0,0,0,1,410,1,0,0,0,0,,0,0,0,0,UP,1
"""

SHOW_PEERS = """0x5611d8bb7830: [25/Nov/2026:20:57:33] id=paphosting disabled=0 flags=0x1103 resync_timeout=3s task_calls=3
  0x5611d8bb79a0: id=lb1(local,inactive) addr=unix:0 last_status=ESTA last_hdshk=1s
"""


def test_parse_show_proc():
    assert haproxy.parse_processes(SHOW_PROC) == {
        "master": 19552,
        "reloads": 1,
        "failed": 0,
        "workers": {19672: 0, 19554: 1},
    }


def test_parse_show_stat():
    assert haproxy.parse_stat(SHOW_STAT) == {"shop": {"web1.test": "DOWN", "web2.test": "UP"}}


def test_parse_show_peers():
    assert haproxy.parse_peers_synced(SHOW_PEERS)
    assert not haproxy.parse_peers_synced(SHOW_PEERS.replace("flags=0x1103", "flags=0x11"))
    assert haproxy.parse_peers_synced("")  # no peers section: nothing to wait for


def test_parse_failover_state():
    empty = "# table: shop, type: integer, size:1, used:0\n\n"
    assert haproxy.parse_failover_state(empty, "shop") == haproxy.NEVER_FAILED_OVER
    failed = "# table: shop, type: integer, size:1, used:1\n0x55: key=1 use=0 exp=0 gpt0=1\n\n"
    assert haproxy.parse_failover_state(failed, "shop") == haproxy.FAILED_OVER
    with pytest.raises(haproxy.HaproxyError, match="no failover table"):
        haproxy.parse_failover_state("No such table\n", "www")


def test_every_backend_sends_a_request_again_only_if_it_is_a_get(platform):
    """`retry-on empty-response response-timeout` sends a request the server took again; a POST
    must not reach two servers (tests/integration/test_haproxy_retries.py shows it live)."""
    text = haproxy.render(platform, LB1)
    backends = [line for line in text.splitlines() if line.startswith("backend ")]
    assert backends
    for header in backends:
        assert "http-request disable-l7-retry unless METH_GET" in section(text, header), header
