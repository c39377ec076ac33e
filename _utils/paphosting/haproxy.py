"""haproxy on a load balancer: render haproxy.cfg from the platform model, check it, run haproxy.

:func:`render` turns a :class:`paphosting.model.Platform` into the configuration of one load
balancer. It is a pure, deterministic function of the pillar: every load balancer gets the same
backends, the same servers and the same persistence cookie values, so a client holding a cookie
from one haproxy is sent to the same server by any other (see ``docs/haproxy.md``).

:func:`check_file` and :func:`check_text` run the real ``haproxy -c`` (warnings are errors).

In service mode ``process`` haproxy runs as a plain master-worker process (:func:`daemon`,
:func:`start`, :func:`reload`, :func:`stop`): a reload is ``SIGUSR2`` to the master, which re-reads
the configuration and hands the listening sockets to the new worker, so no connection is refused
during a reload. The admin socket (``stats socket``) and the master CLI (``-S``) are reached with
:func:`cli`.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile

from paphosting import daemon as pdaemon
from paphosting import waiting
from paphosting.errors import CheckFailed, PapError, PillarError
from paphosting.model import ROOT
from paphosting.paths import under

# The failover state of a stateful service with manual failback, per load balancer, kept in a
# one-entry stick table (general purpose tag gpt0 of key 1) named after the service's backend.
NEVER_FAILED_OVER = 0
FAILED_OVER = 1
FAILED_BACK = 2
FAILOVER_STATES = {
    NEVER_FAILED_OVER: "normal",
    FAILED_OVER: "failed-over",
    FAILED_BACK: "failed-back",
}

PEERS_SECTION = "paphosting"
FRONTEND = "http"
HTTPS_FRONTEND = "https"
ALPN = "h2,http/1.1"
# Mozilla's "intermediate" configuration (ssl-config.mozilla.org, guideline 5.7, for haproxy 2.6
# with OpenSSL 3): TLS 1.2 and 1.3, forward-secret AEAD ciphers only. The DHE suites use the
# 2048-bit group OpenSSL 3 picks (RFC 7919 ffdhe2048) when no DH parameters are given.
TLS_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
TLS_CIPHERSUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
TLS_OPTIONS = "prefer-client-ciphers ssl-min-ver TLSv1.2 no-tls-tickets"
METRICS_FRONTEND = "metrics"
# sun_path is 108 bytes; haproxy binds "<path>.<pid>.tmp" first and refuses paths over 97 bytes.
SOCKET_PATH_MAX = 97
# Anything haproxy.cfg gives a meaning to (white space, quotes, '#', '\\', braces) or that ends a
# line is refused in a value the renderer interpolates, whatever the model let through.
_TOKEN_RE = re.compile(r"^[A-Za-z0-9._:/%~+=,@!$&*;?\[\]-]+$")
# Cookie names and values also go inside a double-quoted log-format string ('$' and '%' matter).
_COOKIE_RE = re.compile(r"^[A-Za-z0-9._-]+$")


class HaproxyError(PapError):
    """haproxy did not do what was asked (start, reload, a CLI command)."""


class ReloadFailed(PapError):
    """The master could not load the new configuration; the old worker keeps serving."""


def layout(root="/"):
    """The files of haproxy on a load balancer, placed under ``root``.

    ``config``, ``pidfile``, ``admin_socket`` (the ``stats socket``, level admin),
    ``master_socket`` (the master CLI, ``-S``), ``peers_socket`` (the local peer that carries the
    stick tables across a reload), ``log`` (haproxy's output in service mode ``process``),
    ``certs_dir`` (one PEM bundle per service, :func:`certificate_path`) and ``crt_list`` (which
    bundle answers which SNI name, :func:`render_crt_list`).
    The systemd paths are those of Debian's haproxy.service.
    """
    return {
        "config": under(root, "/etc/haproxy/haproxy.cfg"),
        "pidfile": under(root, "/run/haproxy.pid"),
        "admin_socket": under(root, "/run/haproxy/admin.sock"),
        "master_socket": under(root, "/run/haproxy-master.sock"),
        "peers_socket": under(root, "/run/haproxy/peers.sock"),
        "log": under(root, "/var/log/haproxy.log"),
        "certs_dir": under(root, "/etc/haproxy/certs"),
        "crt_list": under(root, "/etc/haproxy/crt-list"),
    }


def certificate_path(root, service):
    """The PEM bundle (chain, then key) of ``service`` on a load balancer."""
    return os.path.join(layout(root)["certs_dir"], f"{service}.pem")


def binary():
    """The haproxy executable, or None."""
    found = shutil.which("haproxy")
    if found:
        return found
    return "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None


# --- rendering --------------------------------------------------------------------------------


def cookie_value(service, server):
    """The persistence cookie value of ``server`` in ``service``.

    A pure function of the pillar, so every load balancer writes the same value and any of them
    sends a client holding it to the same backend. Readable on purpose: operators read cookies.
    """
    return f"{service}-{server}".replace(".", "_")


def _token(value, path):
    text = str(value)
    if not _TOKEN_RE.match(text):
        raise PillarError(path, f"{text!r} cannot be written into haproxy.cfg")
    return text


def _cookie(value, path):
    text = _token(value, path)
    if not _COOKIE_RE.match(text):
        raise PillarError(path, f"{text!r} cannot be a persistence cookie name or value")
    return text


def _socket(path):
    if len(path) > SOCKET_PATH_MAX:
        raise PapError(
            f"socket path {path} is {len(path)} bytes, more than the {SOCKET_PATH_MAX} a unix "
            "socket allows: choose a shorter paphosting_root"
        )
    return path


def services_of(platform, lb_name):
    """The services a load balancer carries: those whose rotation lists it (or that have none)."""
    out = []
    for name in sorted(platform.services):
        svc = platform.services[name]
        rotation = platform.rotations.get(svc.rotation) if svc.rotation else None
        if rotation is None or lb_name in rotation.members:
            out.append(svc)
    return out


# File descriptors haproxy needs beyond two per connection and one per checked server: its
# listeners, a poller and a wake-up pipe per thread (3 each, up to haproxy's 64 threads) and its
# own reserve. haproxy 2.6 asks for 2 x maxconn + servers + 25..30 on two threads.
FD_RESERVE = 256
NR_OPEN_DEFAULT = 1048576  # Linux's fs.nr_open: the most a root process may raise its limit to


def fd_need(platform, lb_name):
    """The file descriptors haproxy on ``lb_name`` asks for at start: it raises its own limit
    (``ulimit-n``) to this and refuses to start when it cannot. Two per connection up to
    ``maxconn`` (the client's and the server's side), one per health-checked server line (each
    server of each service it carries), and :data:`FD_RESERVE`."""
    servers = sum(len(svc.servers) for svc in services_of(platform, lb_name))
    return 2 * int(platform.haproxy["maxconn"]) + servers + FD_RESERVE


def default_fd_limit(service_mode):
    """The file descriptor limit haproxy runs under when the pillar does not say
    (``paphosting:haproxy:fd_limit``): with systemd it starts as root and raises its own limit
    up to the kernel's ``fs.nr_open`` (1048576 unless changed); as a plain process (the tests,
    the demo) it inherits the hard limit of the minion that starts it, read here: the lab's
    masters and minions share one machine."""
    if service_mode == "systemd":
        return NR_OPEN_DEFAULT
    import resource  # noqa: PLC0415 -- only in process mode, where the limit is this machine's

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return NR_OPEN_DEFAULT if hard == resource.RLIM_INFINITY else int(hard)


def _has_failover_table(svc):
    return (
        svc.stateful and svc.failback == "manual" and any(s.role == "backup" for s in svc.servers)
    )


def _stateful(svc, spath):
    """Failover and failback rules of a stateful service (see docs/haproxy.md).

    haproxy's own cookie persistence keeps a client on its server. Where the failover policy
    overrides it, a ``use-server`` rule picks the server, and, since haproxy does not insert its
    cookie for a server picked that way, an ``http-after-response`` rule sets the cookie of the server
    that answered, so that the other load balancers send the client there too.
    """
    be = svc.name
    name = _cookie(svc.cookie_name, spath + ("cookie_name",))
    primary = next(s for s in svc.servers if s.role == "primary")
    backups = [s for s in svc.servers if s.role == "backup"]
    if not backups:
        return []
    cookie = {
        s.name: _cookie(cookie_value(be, s.name), spath + ("servers", s.name)) for s in svc.servers
    }
    lines = []
    if svc.failback == "manual":
        lines += [
            "    # Failover state of this load balancer: gpt0 of key 1 in a one-entry stick table, kept",
            f"    # across reloads by the local peer. {NEVER_FAILED_OVER}: normal, {FAILED_OVER}: failed "
            f"over to the backup until an",
            f"    # operator runs haproxy_cfg.failback {be}, {FAILED_BACK}: failed back by the operator.",
            f"    stick-table type integer size 1 store gpt0 peers {PEERS_SECTION}",
            "    http-request track-sc0 int(1)",
        ]
    lines.append(f"    acl primary_up srv_is_up({be}/{primary.name})")
    lines += [f"    acl backup_up srv_is_up({be}/{s.name})" for s in backups]
    lines += [
        f"    acl backup_cookie req.cook({name}) -m str {' '.join(cookie[s.name] for s in backups)}",
        f"    http-request set-var(txn.pap_cookie) req.cook({name})",
    ]
    if svc.failback == "manual":
        lines += [
            f"    acl failed_over int(1),table_gpt0({be}) eq {FAILED_OVER}",
            f"    acl failed_back int(1),table_gpt0({be}) eq {FAILED_BACK}",
            "    # The primary is down and a backup can take over: fail over, for good.",
            f"    http-request sc-set-gpt0(0) {FAILED_OVER} if !primary_up backup_up",
            "    # Failed over: everything goes to the first live backup, whatever the cookie says.",
        ]
        for i, srv in enumerate(backups):
            earlier = "".join(f" !{{ srv_is_up({be}/{b.name}) }}" for b in backups[:i])
            lines.append(
                f"    http-request set-var(txn.pap_server) str({srv.name}) if failed_over{earlier}"
                f" {{ srv_is_up({be}/{srv.name}) }}"
            )
        lines += [
            "    # Failed back by the operator: a backup's cookie no longer holds while the primary is up.",
            f"    http-request set-var(txn.pap_server) str({primary.name}) if failed_back primary_up backup_cookie",
        ]
    else:
        lines += [
            "    # Automatic failback: back on the primary as soon as it is up, whatever the cookie says.",
            f"    http-request set-var(txn.pap_server) str({primary.name}) if primary_up backup_cookie",
        ]
    targets = backups + [primary] if svc.failback == "manual" else [primary]
    lines += [
        f"    use-server {s.name} if {{ var(txn.pap_server) -m str {s.name} }}" for s in targets
    ]
    lines += [
        f"    http-after-response set-var(txn.pap_set_cookie) str({cookie[s.name]}) if"
        f" {{ var(txn.pap_server) -m str {s.name} }} {{ srv_name {s.name} }}"
        f" !{{ var(txn.pap_cookie) -m str {cookie[s.name]} }}"
        for s in targets
    ]
    lines += [
        f'    http-after-response add-header Set-Cookie "{name}=%[var(txn.pap_set_cookie)]; path=/; HttpOnly"'
        " if { var(txn.pap_set_cookie) -m found }",
        "    http-after-response set-header Cache-Control private if { var(txn.pap_set_cookie) -m found }",
    ]
    return lines


def _backend(svc, lb):
    spath = (ROOT, "services", svc.name)
    check = svc.check
    cpath = spath + ("check",)
    host = _token(svc.hostnames[0], spath + ("hostnames", 0)) if svc.hostnames else None
    lines = [
        f"backend {_token(svc.name, spath)}",
        f"    # {svc.type} service; hostnames: {', '.join(svc.hostnames)}",
        f"    balance {_token(svc.balance, spath + ('balance',))}",
        f"    option httpchk GET {_token(check.path, cpath + ('path',))} HTTP/1.1",
    ]
    if host:
        lines.append(f"    http-check send hdr Host {host}")
    lines += [
        f"    http-check expect status {_token(check.expect_status, cpath + ('expect_status',))}",
        f"    timeout check {int(check.timeout)}",
        f"    default-server check inter {int(check.inter)} fall {int(check.fall)} rise {int(check.rise)}"
        " observe layer4 error-limit 2 on-error mark-down",
        # A request already sent (empty-response, response-timeout) is sent again only if it
        # is a GET or HEAD: a POST must not reach two servers. Connection failures (nothing
        # sent yet) are retried whatever the method.
        "    http-request disable-l7-retry unless METH_GET",
    ]
    if svc.stateful:
        lines.append(
            f"    cookie {_cookie(svc.cookie_name, spath + ('cookie_name',))} insert indirect nocache httponly"
        )
        lines += _stateful(svc, spath)
    # The primary first, then the backups in pillar order (haproxy uses the first live backup).
    servers = sorted(svc.servers, key=lambda s: 0 if s.role in ("active", "primary") else 1)
    for srv in servers:
        p = spath + ("servers", srv.name)
        line = f"    server {_token(srv.name, p)} {_token(srv.address, p + ('address',))}:{int(srv.port)}"
        if svc.stateful:
            line += f" cookie {_cookie(cookie_value(svc.name, srv.name), p)}"
        if srv.role == "backup":
            line += " backup"
        lines.append(line)
    return lines


def _https_services(platform, lb_name, certificates):
    """The services ``lb_name`` serves over HTTPS: ``https`` not ``off`` and a certificate."""
    have = set(certificates or ())
    return [s for s in services_of(platform, lb_name) if s.https != "off" and s.name in have]


def _routing(services):
    lines = ["    http-request set-var(txn.host) req.hdr(host),field(1,:),lower"]
    for svc in services:
        hosts = " ".join(
            _token(h, (ROOT, "services", svc.name, "hostnames", i))
            for i, h in enumerate(svc.hostnames)
        )
        lines.append(f"    acl host_{svc.name} var(txn.host) -m str {hosts}")
    return lines


def render_crt_list(platform, lb_name, certificates, root="/"):
    """The crt-list of ``lb_name``: per service served over HTTPS, its bundle and the SNI names
    it answers (the service's hostnames). The first line is the certificate of a client that
    sends no SNI. Empty when no service is served over HTTPS."""
    lines = []
    for svc in _https_services(platform, lb_name, certificates):
        hosts = " ".join(
            _token(h, (ROOT, "services", svc.name, "hostnames", i))
            for i, h in enumerate(svc.hostnames)
        )
        lines.append(f"{certificate_path(root, svc.name)} {hosts}")
    return "".join(line + "\n" for line in lines)


def _https_frontend(lb, lpath, paths, services, hsts):
    out = [
        "",
        "# HTTPS: SNI picks each service's certificate from the crt-list (docs/tls.md).",
        f"frontend {HTTPS_FRONTEND}",
        f"    bind {_token(lb.address, lpath + ('address',))}:{int(lb.https_port)} ssl"
        f" crt-list {_token(paths['crt_list'], lpath)} alpn {ALPN}",
    ]
    if lb.address6:
        out.append(
            f"    bind [{_token(lb.address6, lpath + ('address6',))}]:{int(lb.https_port)} v6only"
            f" ssl crt-list {_token(paths['crt_list'], lpath)} alpn {ALPN}"
        )
    out += [
        f"    monitor-uri {_token(lb.health_path, lpath + ('health_path',))}",
        *_health_gate(services),
        "    http-request set-header X-Forwarded-Proto https",
        *_routing(services),
        *[f"    use_backend {svc.name} if host_{svc.name}" for svc in services],
    ]
    for svc in hsts:
        out.append(
            f'    http-response set-header Strict-Transport-Security "{svc.hsts.header()}"'
            f" if host_{svc.name}"
        )
    out.append("    # Any other host: no backend, haproxy answers 503.")
    return out


def _health_gate(services):
    """The health endpoint answers 503 while this load balancer can serve no service at all: every
    server of every backend down by its own checks, as after a cut-off from the webservers (they
    pass again only after ``rise`` x ``inter``). The failover then keeps it out of DNS instead of
    handing out an address that answers 503. One service down everywhere does not fail it: every
    load balancer would fail alike, and the failover could no longer tell a dead one. Several
    ``acl`` lines of one name are or-ed, so the gate is one line per service (haproxy allows 64
    words a line, a platform has thousands of services)."""
    if not services:
        return []
    return [
        "    # 503 here while no backend has a server up: nothing to serve (docs/failover.md).",
        *[f"    acl serving nbsrv({svc.name}) gt 0" for svc in services],
        "    monitor fail if !serving",
    ]


def render(platform, lb_name, root="/", certificates=()):
    """The haproxy.cfg of load balancer ``lb_name``: a pure, deterministic function of the pillar
    and of ``certificates``, the services that have a certificate (their bundles are in
    ``paphosting_secrets:tls``, :func:`paphosting.tls.wanted`). Those, unless ``https: off``,
    are served over HTTPS too, and with ``https: redirect`` plain HTTP answers them with a 301
    to HTTPS (the health endpoint excepted). A service without a certificate is served over
    plain HTTP only, whatever its ``https``: it stays reachable until its certificate comes.

    Raises :class:`PillarError` naming ``paphosting:loadbalancers`` when ``lb_name`` is not a load
    balancer, and :class:`PapError` when a socket path under ``root`` is too long.
    """
    lb = platform.loadbalancers.get(lb_name)
    if lb is None:
        known = ", ".join(sorted(platform.loadbalancers)) or "none"
        raise PillarError(
            (ROOT, "loadbalancers"), f"{lb_name!r} is not a load balancer (known: {known})"
        )
    lpath = (ROOT, "loadbalancers", lb_name)
    paths = layout(root)
    hap = platform.haproxy
    services = services_of(platform, lb_name)
    manual = [s for s in services if _has_failover_table(s)]
    systemd = lb.service_mode == "systemd"
    secure = _https_services(platform, lb_name, certificates)

    out = [
        f"# haproxy.cfg of load balancer {lb_name}, rendered by Salt from pillar {ROOT}",
        "# (haproxy_cfg.managed). Do not edit: the next state.apply puts it back. See docs/haproxy.md.",
        "",
        "global",
        "    master-worker",
    ]
    if manual:
        out.append(f"    localpeer {_token(lb_name, lpath)}")
    out += [
        f"    maxconn {int(hap['maxconn'])}",
        f"    stats socket {_socket(paths['admin_socket'])} mode 600 level admin expose-fd listeners",
        "    stats timeout 30s",
        "    hard-stop-after 60s",
    ]
    if systemd:
        out += ["    log /dev/log local0", "    user haproxy", "    group haproxy"]
    else:
        out.append("    log stdout format raw local0")
    if secure:
        out += [
            '    # Mozilla "intermediate": TLS 1.2 and 1.3, forward-secret AEAD ciphers.',
            f"    ssl-default-bind-ciphers {TLS_CIPHERS}",
            f"    ssl-default-bind-ciphersuites {TLS_CIPHERSUITES}",
            f"    ssl-default-bind-options {TLS_OPTIONS}",
            "    tune.ssl.default-dh-param 2048",
        ]
    if manual:
        bind_owner = " user haproxy group haproxy" if systemd else ""
        out += [
            "",
            "# The local peer: the old worker hands its stick tables (the failover state of the",
            "# services with manual failback) to the new one on a reload.",
            f"peers {PEERS_SECTION}",
            f"    bind unix@{_socket(paths['peers_socket'])} mode 600{bind_owner}",
            f"    server {lb_name}",
        ]
    out += [
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    option dontlognull",
        "    option forwardfor",
        "    # A request whose server fails is retried, on another server, without the client noticing.",
        "    option redispatch 1",
        "    retries 3",
        "    retry-on conn-failure empty-response response-timeout",
        f"    timeout connect {int(hap['timeout_connect'])}",
        f"    timeout client {int(hap['timeout_client'])}",
        f"    timeout server {int(hap['timeout_server'])}",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 10s",
        "",
        f"frontend {FRONTEND}",
        f"    bind {_token(lb.address, lpath + ('address',))}:{int(lb.http_port)}",
    ]
    if lb.address6:
        out.append(
            f"    bind [{_token(lb.address6, lpath + ('address6',))}]:{int(lb.http_port)} v6only"
        )
    health = _token(lb.health_path, lpath + ("health_path",))
    out += [
        "    # Answered by haproxy itself: probed by the DNS failover.",
        f"    monitor-uri {health}",
        *_health_gate(services),
        *_routing(services),
    ]
    redirect = [s for s in secure if s.https == "redirect"]
    if redirect:
        port = "" if lb.https_port == 443 else f":{int(lb.https_port)}"
        out.append("    # https: redirect, for the services that have a certificate.")
        out += [
            f"    http-request redirect location https://%[var(txn.host)]{port}%[capture.req.uri]"
            f" code 301 if host_{svc.name} !{{ path {health} }}"
            for svc in redirect
        ]
    for svc in services:
        out.append(f"    use_backend {svc.name} if host_{svc.name}")
    out.append("    # Any other host: no backend, haproxy answers 503.")
    if secure:
        out += _https_frontend(lb, lpath, paths, secure, [s for s in secure if s.hsts])
    out += _metrics_frontend(platform, lb_name)
    for svc in services:
        out += [""] + _backend(svc, lb)
    return "\n".join(out) + "\n"


def _metrics_frontend(platform, lb_name):
    """haproxy's built-in Prometheus exporter on the management listener of ``paphosting:metrics``
    (none when the load balancer has none): its own frontend, never the public one."""
    listener = (platform.metrics or {}).get("loadbalancers", {}).get(lb_name)
    if listener is None:
        return []
    mpath = (ROOT, "metrics", "loadbalancers", lb_name)
    return [
        "",
        "# Prometheus scrapes haproxy's own exporter here (docs/monitoring.md).",
        f"frontend {METRICS_FRONTEND}",
        f"    bind {_token(listener.address, mpath + ('address',))}:{int(listener.port)}",
        "    http-request set-log-level silent",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        '    http-request return status 404 content-type text/plain string "/metrics only\\n"',
    ]


# --- checking ---------------------------------------------------------------------------------


def check_file(path, haproxy="haproxy"):
    """Run ``haproxy -c`` on ``path`` (warnings count as errors); raise :class:`CheckFailed`."""
    exe = shutil.which(haproxy) or (binary() if haproxy == "haproxy" else None)
    if exe is None:
        raise CheckFailed("haproxy -c", path, f"{haproxy} is not installed")
    res = subprocess.run(
        [exe, "-c", "-dW", "-f", path], capture_output=True, text=True, check=False, timeout=60
    )
    output = (res.stdout + res.stderr).strip()
    if res.returncode != 0:
        raise CheckFailed("haproxy -c", path, output)
    return output


def check_text(text, haproxy="haproxy"):
    """Run ``haproxy -c`` on ``text`` written to a temporary file; raise :class:`CheckFailed`."""
    fd, tmp = tempfile.mkstemp(prefix="haproxy-", suffix=".cfg")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        try:
            return check_file(tmp, haproxy)
        except CheckFailed as exc:
            raise CheckFailed(
                exc.tool, "the rendered configuration", exc.output.replace(tmp, "<config>")
            ) from None
    finally:
        os.unlink(tmp)


def check_certificate(path, haproxy="haproxy"):
    """``haproxy -c`` of a configuration that loads the PEM bundle ``path`` on an HTTPS bind
    line, as the load balancer's does: haproxy itself accepts the certificate, chain and key."""
    text = "\n".join(
        [
            "global",
            f"    ssl-default-bind-ciphers {TLS_CIPHERS}",
            f"    ssl-default-bind-ciphersuites {TLS_CIPHERSUITES}",
            f"    ssl-default-bind-options {TLS_OPTIONS}",
            "    tune.ssl.default-dh-param 2048",
            "defaults",
            "    mode http",
            "    timeout connect 1s",
            "    timeout client 1s",
            "    timeout server 1s",
            "frontend certificate_check",
            # haproxy -c parses and loads, never binds: any port will do.
            f"    bind 127.0.0.1:1 ssl crt {path} alpn {ALPN}",
            "",
        ]
    )
    try:
        return check_text(text, haproxy)
    except CheckFailed as exc:
        raise CheckFailed(exc.tool, "the certificate", exc.output) from None


# --- talking to a running haproxy -------------------------------------------------------------


def cli(path, command, timeout=5.0):
    """Send one command to an haproxy CLI socket (admin socket or master CLI); return the answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(command.encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except OSError as exc:
            raise HaproxyError(f"haproxy CLI {path}: {command!r}: {exc}") from exc
    return b"".join(chunks).decode("utf-8", "replace")


def parse_ssl_cert(text):
    """The ``SHA1 FingerPrint`` in ``show ssl cert <file>`` (upper-case hex), or None."""
    m = re.search(r"^SHA1 FingerPrint: ([0-9A-Fa-f]+)", text, re.M)
    return m.group(1).upper() if m else None


def loaded_certificate(admin_socket, path):
    """The SHA-1 fingerprint of the certificate the running haproxy serves from ``path``, or None
    when it did not load that file."""
    return parse_ssl_cert(cli(admin_socket, f"show ssl cert {path}"))


def set_certificate(admin_socket, path, bundle, sha1):
    """Swap the certificate haproxy serves from ``path`` for ``bundle`` in memory, through the
    runtime API (``set ssl cert`` then ``commit ssl cert``): new handshakes use it at once, no
    connection is touched and no process replaced. Checks that haproxy then serves ``sha1``."""
    answer = cli(admin_socket, f"set ssl cert {path} <<\n{bundle.rstrip()}\n", timeout=30.0)
    if "Transaction created" not in answer and "Transaction updated" not in answer:
        cli(admin_socket, f"abort ssl cert {path}")
        raise HaproxyError(f"haproxy refused the certificate for {path}: {answer.strip()}")
    answer = cli(admin_socket, f"commit ssl cert {path}", timeout=30.0)
    if "Success!" not in answer:
        cli(admin_socket, f"abort ssl cert {path}")
        raise HaproxyError(f"haproxy could not commit the certificate for {path}: {answer.strip()}")
    served = loaded_certificate(admin_socket, path)
    if served != sha1:
        raise HaproxyError(f"haproxy serves {served} from {path} after the commit, expected {sha1}")


def parse_processes(text):
    """Parse the master CLI's ``show proc``: ``{"master", "reloads", "failed", "workers": {pid: reloads}}``."""
    out = {"master": None, "reloads": 0, "failed": 0, "workers": {}}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        if fields[1] == "master":
            out["master"] = int(fields[0])
            out["reloads"] = int(fields[2])
            m = re.search(r"\[failed: (\d+)\]", line)
            out["failed"] = int(m.group(1)) if m else 0
        elif fields[1] == "worker":
            out["workers"][int(fields[0])] = int(fields[2])
    return out


def processes(master_socket):
    """The master and its workers (:func:`parse_processes` of ``show proc``)."""
    return parse_processes(cli(master_socket, "show proc"))


def parse_stat(text):
    """Parse ``show stat`` (CSV): ``{backend: {server: status}}``."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        raise HaproxyError(f"unexpected answer to 'show stat': {text[:200]!r}")
    header = lines[0][2:].split(",")
    out = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("svname") in ("FRONTEND", "BACKEND"):
            continue
        out.setdefault(row["pxname"], {})[row["svname"]] = row.get("status", "")
    return out


def servers(admin_socket):
    """The state of every server: ``{backend: {server: status}}`` (``UP``, ``DOWN``, ``MAINT``, ...)."""
    return parse_stat(cli(admin_socket, "show stat"))


def parse_peers_synced(text):
    """True when every peers section in ``show peers`` has finished learning its tables."""
    flags = re.findall(r"^0x[0-9a-f]+: \[[^\]]*\] id=\S+ .*?flags=(0x[0-9a-f]+)", text, re.M)
    return all(int(f, 16) & 0x3 == 0x3 for f in flags)


def peers_synced(admin_socket):
    """True when no peers section is still learning its tables (safe to reload without losing them).

    A fresh haproxy waits up to 5 s to learn its tables from an older process before it calls
    them complete; a reload before then would start the next worker with empty tables.
    """
    return parse_peers_synced(cli(admin_socket, "show peers"))


def wait_peers_synced(admin_socket, timeout=15.0):
    """Wait (bounded) until :func:`peers_synced`; False when it did not happen or nobody answers."""
    try:
        return waiting.until(lambda: peers_synced(admin_socket), timeout)
    except HaproxyError:
        return False


def parse_failover_state(text, service):
    """The failover state in ``show table <service>`` (no entry yet: never failed over)."""
    if not text.startswith("# table:"):
        raise HaproxyError(f"{service}: no failover table: {text.strip()}")
    m = re.search(r"key=1 .*?gpt0=(\d+)", text)
    return int(m.group(1)) if m else NEVER_FAILED_OVER


def failover_state(admin_socket, service):
    """The failover state of a stateful service with manual failback on this load balancer."""
    return parse_failover_state(cli(admin_socket, f"show table {service}"), service)


def failback(admin_socket, service):
    """Send the traffic of ``service`` back to its primary; return the state it was in."""
    before = failover_state(admin_socket, service)
    answer = cli(admin_socket, f"set table {service} key 1 data.gpt0 {FAILED_BACK}").strip()
    if answer:
        raise HaproxyError(f"{service}: set table refused: {answer}")
    return before


# --- service mode "process" ------------------------------------------------------------------


def daemon(root="/", haproxy="haproxy"):
    """haproxy as a plain master-worker process (service mode ``process``)."""
    paths = layout(root)
    exe = shutil.which(haproxy) or binary() or haproxy
    return pdaemon.Daemon(
        name="haproxy",
        command=(
            exe,
            "-W",
            "-f",
            paths["config"],
            "-p",
            paths["pidfile"],
            "-S",
            f"{_socket(paths['master_socket'])},mode,600",
        ),
        pidfile=paths["pidfile"],
        foreground=True,
        reload_signal=signal.SIGUSR2,
        stop_signal=signal.SIGTERM,
        log=paths["log"],
    )


def _log_tail(path, lines=15):
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except FileNotFoundError:
        return ""


def _wait(predicate, timeout, what, log):
    """Wait until ``predicate`` holds, a :class:`HaproxyError` it raises meaning not yet; raise
    one naming ``what``, the last such error and the tail of ``log`` when it does not."""
    last = None

    def holds():
        nonlocal last
        try:
            value = predicate()
        except HaproxyError as exc:
            last = exc
            return False
        last = None
        return value

    if waiting.until(holds, timeout):
        return
    raise HaproxyError(
        f"haproxy: {what} (waited {timeout:g}s){': ' + str(last) if last else ''}\n{_log_tail(log)}"
    )


def status(root="/"):
    """``{"running", "pid", "workers", "reloads"}`` of haproxy in service mode ``process``."""
    d = daemon(root)
    pid = pdaemon.pid(d)
    out = {"running": pid is not None, "pid": pid, "workers": [], "reloads": 0}
    if pid is not None:
        try:
            procs = processes(layout(root)["master_socket"])
            out["workers"] = sorted(procs["workers"])
            out["reloads"] = procs["reloads"]
        except HaproxyError:
            pass
    return out


def start(root="/", wait=15.0):
    """Start haproxy unless it runs; return the master's pid once a worker serves."""
    paths = layout(root)
    d = daemon(root)
    if pdaemon.running(d):
        return pdaemon.pid(d)
    for key in ("admin_socket", "master_socket", "peers_socket", "pidfile", "log"):
        os.makedirs(os.path.dirname(paths[key]), exist_ok=True)
    pid = pdaemon.start(d)

    def ready():
        if not pdaemon.running(d):
            raise HaproxyError("haproxy exited")
        return bool(processes(paths["master_socket"])["workers"]) and os.path.exists(
            paths["admin_socket"]
        )

    try:
        _wait(ready, wait, "did not start", paths["log"])
    except HaproxyError:
        pdaemon.stop(d)
        raise
    return pid


def wait_reloaded(master_socket, before, wait=15.0, log=None):
    """Wait until the master reloaded since ``before`` (:func:`processes`); the new workers' pids.

    Raises :class:`ReloadFailed` when the master could not load the configuration (its old worker
    keeps serving), :class:`HaproxyError` when nothing happened in ``wait`` seconds.
    """
    result = {}

    def reloaded():
        procs = processes(master_socket)
        if procs["failed"] > before["failed"]:
            raise ReloadFailed(
                "haproxy could not load the new configuration; the old worker still serves"
                + (":\n" + _log_tail(log) if log else "")
            )
        new = [p for p, n in procs["workers"].items() if n == 0 and p not in before["workers"]]
        if procs["reloads"] > before["reloads"] and new:
            result["workers"] = sorted(new)
            return True
        return False

    _wait(reloaded, wait, "did not reload", log)
    return result["workers"]


def reload(root="/", wait=15.0):
    """Seamless reload (``SIGUSR2`` to the master); start haproxy when it does not run.

    Returns the pids of the new workers. Waits first until the stick tables are complete (see
    :func:`peers_synced`), then until the new worker serves; raises :class:`ReloadFailed` with the
    log when the master could not load the configuration (the old worker then keeps serving).
    """
    paths = layout(root)
    d = daemon(root)
    if not pdaemon.running(d):
        start(root, wait)
        return sorted(processes(paths["master_socket"])["workers"])
    if not wait_peers_synced(paths["admin_socket"], wait):
        raise HaproxyError(
            f"haproxy: the stick tables did not sync within {wait:g}s; not reloading"
        )
    before = processes(paths["master_socket"])
    pdaemon.reload(d)
    return wait_reloaded(paths["master_socket"], before, wait, paths["log"])


def stop(root="/"):
    """Stop haproxy (the master and its workers); True when it was running."""
    return pdaemon.stop(daemon(root))
