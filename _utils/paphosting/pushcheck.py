"""Validating a pillar revision completely, with the real checkers, before anything is live.

:func:`validate` takes every minion's compiled pillar (:class:`Compiled`, from
:func:`paphosting.pillarcompile.compile_tree`) through :func:`paphosting.model.parse`, then
renders every haproxy config, certificate set, zone and DNS server config and checks each with
the real checker (:func:`checks`, :func:`check_certificates`, :func:`check_zones`). Every problem
names the svn file, the pillar path and the checker's message (:mod:`paphosting.pushproblems`);
one or more raise :class:`Rejected`.
"""

import concurrent.futures
import os
import tempfile
from dataclasses import dataclass, field

from paphosting import dnsserver, haproxy, model, platformcache, secrets, tls
from paphosting.errors import CheckFailed, InvalidPillar, PapError, PillarError
from paphosting.files import write_checked
from paphosting.pushproblems import (
    Problems,
    checker_message,
    failed_sls,
    haproxy_path,
    render_problem,
    svn_path,
)


class Rejected(PapError):
    """A revision failed validation: nothing was made live."""

    def __init__(self, revision, problems):
        self.revision = revision
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self):
        n = len(self.problems)
        head = f"r{self.revision} is invalid ({n} problem{'s' * (n != 1)}):"
        return "\n".join([head] + [f"  - {p}" for p in self.problems])


@dataclass
class Compiled:
    """A minion's pillar as the master compiled it from the revision under test."""

    minion: str
    pillar: dict
    errors: list = field(default_factory=list)  # Salt's render errors (``_errors``)


@dataclass
class Validated:
    """What a successful :func:`validate` checked."""

    minions: list  # minions with a paphosting pillar
    checked: list  # "haproxy.cfg of lb1", "zone paphosting.nl (bind)", ...
    platforms: dict  # minion -> Platform

    def roles(self):
        """``{minion: [roles]}`` for every validated minion."""
        return {m: p.roles(m) for m, p in self.platforms.items()}


def platform_servers(platform):
    """Every minion id the platform names (load balancers, nameservers, webservers)."""
    return set(platform.loadbalancers) | set(platform.nameservers) | set(platform.webservers)


def named_servers(data):
    """The minion ids named under ``paphosting`` in raw (unvalidated) pillar ``data``."""
    out = set()
    root = data.get(model.ROOT) if isinstance(data, dict) else None
    if not isinstance(root, dict):
        return out
    for role in ("loadbalancers", "nameservers", "webservers"):
        servers = root.get(role)
        if isinstance(servers, dict):
            out.update(str(k) for k in servers)
    return out


def sls_files(tree):
    """The ``.sls`` files of an exported tree, as paths relative to it, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.endswith(".sls"):
                out.append(os.path.relpath(os.path.join(dirpath, name), tree))
    return sorted(out)


def sls_name(relpath):
    """The SLS name of a file: ``a/b.sls`` -> ``a.b``, ``a/init.sls`` -> ``a``."""
    stem = relpath[: -len(".sls")] if relpath.endswith(".sls") else relpath
    parts = stem.split(os.sep)
    if parts[-1] == "init" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def checks(platform, minion):
    """The rendered files ``minion`` will run, each ``(label, pillar path, render, check)``.

    ``render()`` returns the text; ``check(text)`` raises :class:`CheckFailed`. Load balancers get
    their haproxy config; nameservers their server config (their zones: :func:`check_zones`).
    """
    out = []
    if minion in platform.loadbalancers:
        out.append(
            (
                f"haproxy.cfg of {minion}",
                (model.ROOT, "loadbalancers", minion),
                lambda: haproxy.render(platform, minion),
                haproxy.check_text,
            )
        )
    ns = platform.nameservers.get(minion)
    if ns is not None:
        out.append(
            (
                f"{ns.server} config of {minion}",
                (model.ROOT, "nameservers", minion),
                lambda: dnsserver.render_config(platform, minion),
                lambda text, s=ns: dnsserver.check_config_before_write(s, text),
            )
        )
    return out


def check_certificates(platform, minion, published):
    """``[(pillar path, relative file, message)]`` for the bundles load balancer ``minion`` would
    serve (``published``: its ``paphosting_secrets:tls``): each checked as the state will
    (:func:`paphosting.tls.check`), then its haproxy.cfg with all of them loaded, by
    ``haproxy -c`` in a temporary root."""
    roots = tls.load_roots(platform.tls.get("trusted_roots", ()))
    good, out = {}, []
    for svc, bundle in sorted(tls.wanted(platform, minion, published).items()):
        try:
            good[svc] = tls.check(platform.services[svc], bundle, roots)
        except tls.CertificateError as exc:
            out.append(
                ((secrets.PILLAR_KEY, tls.KIND, svc), secrets.relpath(tls.KIND, svc), exc.reason)
            )
    if out or not good:
        return out
    with tempfile.TemporaryDirectory(prefix="pap-tls-") as root:
        for svc, cert in good.items():
            write_checked(haproxy.certificate_path(root, svc), cert.bundle, mode=0o600)
        paths = haproxy.layout(root)
        write_checked(paths["crt_list"], haproxy.render_crt_list(platform, minion, good, root))
        text = haproxy.render(platform, minion, root, good)
        try:
            haproxy.check_text(text)
        except CheckFailed as exc:
            message = checker_message(exc, text, "haproxy.cfg with its certificates")
            out.append(((model.ROOT, "loadbalancers", minion), None, message))
    return out


def check_zones(renderer, servers):
    """``{server: {zone: message}}``: for each of ``servers`` (bind, nsd, knot), every zone its
    checker refuses of the platform of ``renderer`` (a :class:`~paphosting.zone.Renderer`, from
    :func:`paphosting.platformcache.load`). Each zone is rendered once (the text does not depend on the
    server) and checked by every server's checker in bulk
    (:func:`paphosting.dnsserver.check_zone_files`): thousands of zones in one or a few checker
    processes. A zone that cannot be rendered is refused by every server."""
    platform = renderer.platform
    unrenderable = {}
    refused = {server: {} for server in servers}
    with tempfile.TemporaryDirectory(prefix="paphosting-push-zones-") as d:
        paths = {}
        for zname in sorted(platform.zones):
            try:
                text = renderer.render(zname, 1)
            except PapError as exc:
                unrenderable[zname] = f"cannot render zone {zname}: {exc}"
                continue
            paths[zname] = os.path.join(d, f"{zname}.zone")
            with open(paths[zname], "w", encoding="utf-8") as fh:
                fh.write(text)
        # The server types' checkers are separate processes: run them side by side.
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(servers) or 1) as pool:
            found = dict(
                zip(
                    servers,
                    pool.map(lambda server: dnsserver.check_zone_files(server, paths), servers),
                    strict=True,
                )
            )
        for server in servers:
            refused[server].update(unrenderable)
            tool = dnsserver.CHECKZONE[server]
            for zname, message in found[server].items():
                with open(paths[zname], encoding="utf-8") as fh:
                    text = fh.read()
                refused[server][zname] = checker_message(
                    CheckFailed(tool, f"zone {zname}", message), text, f"zone {zname} ({server})"
                )
    return refused


def validate(revision, compiled, sources, prefix="", files=(), render_lines=None):
    """Validate every minion's pillar of ``revision``; return a :class:`Validated`.

    compiled
        ``{minion: Compiled}``: each minion's pillar, compiled by Salt from the revision.
    sources
        ``{svn path: data}``: each SLS file of the revision rendered on its own, to name the file
        that holds a pillar path.
    prefix, files
        The svn path of the pillar tree and its SLS files (relative), for render errors.
    render_lines
        ``{SLS file (relative): line}``: where each file that failed to render on its own failed
        (``SaltRenderError.line_num``), for the render errors that do not say.

    Raises :class:`Rejected` listing every problem: Salt render errors, schema errors
    (:func:`paphosting.model.parse`), servers the platform names but the top file gives no
    ``paphosting`` pillar, and rendered files a real checker refuses.
    """
    problems = Problems(sources)
    platforms = {}
    renderers = {}
    named = {}
    render_lines = render_lines or {}
    by_sls = {sls_name(f): f for f in files}
    for minion in sorted(compiled):
        item = compiled[minion]
        for err in item.errors:
            rel = by_sls.get(failed_sls(err))
            problems.add(
                (),
                render_problem(err, render_lines.get(rel)),
                minion,
                files=(svn_path(prefix, rel),) if rel else (svn_path(prefix, "top.sls"),),
            )
        if item.errors or model.ROOT not in item.pillar:
            # What did render is incomplete: its schema errors would be consequences, not causes.
            continue
        try:
            # Every minion of one platform: one parse (platformcache keys it by the digest).
            renderers[minion] = platformcache.load(item.pillar[model.ROOT])
            platforms[minion] = renderers[minion].platform
        except InvalidPillar as exc:
            problems.pillar_errors(exc, minion)
            continue
        for server in platform_servers(platforms[minion]):
            named.setdefault(server, minion)
    for server, by in sorted(named.items()):
        item = compiled.get(server)
        if item is not None and model.ROOT not in item.pillar and not item.errors:
            role = ", ".join(platforms[by].roles(server))
            problems.add(
                (),
                f"{server} is a {role} of the platform but the top file gives it no {model.ROOT} pillar",
                server,
                files=(svn_path(prefix, "top.sls"),),
            )
    checked = []
    done = {}
    for minion in sorted(platforms):
        platform = platforms[minion]
        digest = renderers[minion].digest  # model.digest of its paphosting pillar
        for label, path, render, check in checks(platform, minion):
            # Zones are the same for every nameserver of one server type: check each once.
            key = (digest, label if label.startswith("zone ") else f"{minion}:{label}")
            if key in done:
                if done[key] is not None:
                    problems.add(*done[key][:2], minion)
                continue
            done[key] = None
            try:
                text = render()
            except InvalidPillar as exc:
                done[key] = (exc.errors[0].path, exc.errors[0].reason)
                problems.pillar_errors(exc, minion)
                continue
            except PillarError as exc:
                done[key] = (exc.path, exc.reason)
                problems.add(exc.path, exc.reason, minion)
                continue
            except PapError as exc:
                done[key] = (path, f"cannot render {label}: {exc}")
                problems.add(path, f"cannot render {label}: {exc}", minion)
                continue
            try:
                check(text)
            except CheckFailed as exc:
                if label.startswith("haproxy"):
                    where = haproxy_path(
                        platform, minion, text, exc.output, compiled[minion].pillar
                    )
                else:
                    where = path
                # "haproxy.cfg of lb1" -> "haproxy.cfg": the minions are listed with the problem.
                message = checker_message(exc, text, label.split(" of ")[0])
                done[key] = (where, message)
                problems.add(where, message, minion)
                continue
            checked.append(label)
    # Certificates (docs/tls.md): what each load balancer would serve, checked before it can go
    # live, as its state will check them.
    for minion in sorted(platforms):
        platform = platforms[minion]
        published = (compiled[minion].pillar.get(secrets.PILLAR_KEY) or {}).get(tls.KIND)
        if minion not in platform.loadbalancers or not published:
            continue
        for path, rel, message in check_certificates(platform, minion, published):
            problems.add(path, message, minion, files=(svn_path(prefix, rel),) if rel else None)
        checked += [
            f"certificate {s} ({minion})" for s in sorted(tls.wanted(platform, minion, published))
        ]
    # Zones are the same for every nameserver of one platform: render each once, and check it
    # once per server type, in bulk.
    by_digest = {}
    for minion in sorted(platforms):
        ns = platforms[minion].nameservers.get(minion)
        if ns is not None:
            digest = renderers[minion].digest
            by_digest.setdefault(digest, (renderers[minion], []))[1].append((minion, ns.server))
    for renderer, members in by_digest.values():
        platform = renderer.platform
        servers = sorted({server for _, server in members})
        refused = check_zones(renderer, servers)
        checked += [f"zone {z} ({s})" for s in servers for z in sorted(platform.zones)]
        for minion, server in members:
            for zname, message in refused[server].items():
                problems.add((model.ROOT, "zones", zname), message, minion)
    found = problems.list(everyone=[m for m, c in compiled.items() if model.ROOT in c.pillar])
    if found:
        raise Rejected(revision, found)
    return Validated(minions=sorted(platforms), checked=checked, platforms=platforms)
