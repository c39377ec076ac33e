"""haproxy on a load balancer of the platform: render haproxy.cfg from pillar, check it, run haproxy.

Named ``haproxy_cfg`` because Salt already ships a module named ``haproxy``. The logic lives in
``_utils/paphosting/haproxy.py``; this module reads the pillar and the minion options and turns
the core's errors into ``CommandExecutionError``. See ``docs/haproxy.md``.

Service management follows the load balancer's ``service_mode`` in the pillar: ``systemd`` uses
Salt's ``service`` module on the ``haproxy`` unit, ``process`` runs haproxy as a plain master-worker
process with a pidfile under the minion option ``paphosting_root``.
"""

import os

from salt.exceptions import CommandExecutionError, SaltInvocationError

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import files, haproxy, model, saltcontext, secrets, tls
from paphosting.errors import PapError

__virtualname__ = "haproxy_cfg"


def __virtual__():
    if haproxy.binary() is None:
        return (False, "haproxy_cfg: haproxy is not installed (Debian package haproxy)")
    return __virtualname__


def _root():
    return saltcontext.root(__opts__)


def _platform():
    return saltcontext.renderer(__opts__, __context__, __pillar__).platform


def _mode():
    return saltcontext.loadbalancer(__opts__, _platform()).service_mode


def _published():
    """This minion's bundles (``paphosting_secrets:tls``, load balancers only)."""
    return (__pillar__.get(secrets.PILLAR_KEY) or {}).get(tls.KIND) or {}


def _certificates(platform, name):
    """The services ``name`` serves over HTTPS: those with a bundle in its pillar and in place
    (``haproxy_cfg.certificates`` runs first). A refused new bundle is not in place, so its
    service stays on plain HTTP; a refused renewal leaves the old bundle in place, so HTTPS
    goes on. Known only on that load balancer itself."""
    if name != __opts__["id"]:
        return ()
    return _in_place(platform, name)


def _in_place(platform, name):
    root = _root()
    return sorted(
        svc
        for svc in tls.wanted(platform, name, _published())
        if os.path.exists(haproxy.certificate_path(root, svc))
    )


def layout():
    """
    The files of haproxy on this minion (config, pidfile, sockets, log), under ``paphosting_root``.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.layout
    """
    return haproxy.layout(_root())


def service_mode(lb=None):
    """
    How haproxy runs on a load balancer: ``systemd`` or ``process`` (pillar ``service_mode``).

    lb
        The load balancer's minion id; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.service_mode
    """
    return saltcontext.loadbalancer(__opts__, _platform(), lb).service_mode


def render(lb=None):
    """
    Render the haproxy.cfg of a load balancer from this minion's pillar (nothing is written).

    lb
        The load balancer's minion id; defaults to this minion's id. Any load balancer of the
        pillar can be rendered from any minion.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.render
        salt-call haproxy_cfg.render lb=lb2.paphosting.net
    """
    platform = _platform()
    name = lb or __opts__["id"]
    try:
        return haproxy.render(platform, name, _root(), _certificates(platform, name))
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc


def check(path=None, text=None):
    """
    Validate an haproxy configuration with the real ``haproxy -c`` (warnings count as errors).

    Returns True, or fails with haproxy's own messages.

    path
        The file to check; defaults to this minion's haproxy.cfg.

    text
        A configuration to check instead of a file (written to a temporary file).

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.check
        salt-call haproxy_cfg.check text="$(salt-call --out=newline_values_only haproxy_cfg.render)"
    """
    if path is not None and text is not None:
        raise SaltInvocationError("give path or text, not both")
    try:
        if text is not None:
            haproxy.check_text(text)
        else:
            haproxy.check_file(path or layout()["config"])
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    return True


def validate(lb=None):
    """
    Render and check with ``haproxy -c`` the configuration of load balancers (nothing is written).

    Works from any minion id, with any pillar tree: the way to validate a pillar change before
    pushing it (see docs/haproxy.md for the masterless command). Returns ``{lb: "valid"}``, or
    fails listing every load balancer whose configuration haproxy rejects, with its messages.

    lb
        One load balancer's minion id; default: every load balancer of the pillar.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.validate
        salt-call haproxy_cfg.validate lb=lb1.paphosting.net
    """
    platform = _platform()
    names = [lb] if lb else sorted(platform.loadbalancers)
    out, errors = {}, []
    for name in names:
        try:
            text = haproxy.render(platform, name, _root(), _certificates(platform, name))
            haproxy.check_text(text)
            out[name] = f"valid ({len(text.splitlines())} lines, haproxy -c accepts it)"
        except PapError as exc:
            errors.append(f"{name}: {exc}")
    if errors:
        raise CommandExecutionError("\n".join(errors))
    return out


def write(path=None, text=None, user="root", group="root", mode="0644"):
    """
    Write haproxy.cfg atomically after ``haproxy -c`` accepted it on a temporary file beside it.

    A configuration haproxy rejects is never written: the file in place stays as it was.
    Returns the unified diff of the change ("" when the text did not change).

    path
        Defaults to this minion's haproxy.cfg.

    text
        The configuration; defaults to :py:func:`render` of this minion.

    user, group, mode
        Owner and mode of the file.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.write
    """
    path = path or layout()["config"]
    text = render() if text is None else text
    try:
        old = files.read(path)
        files.write_checked(
            path, text, check=haproxy.check_file, mode=int(str(mode), 8), user=user, group=group
        )
    except (PapError, OSError, KeyError, ValueError) as exc:
        raise CommandExecutionError(f"{path} left unchanged: {exc}") from exc
    return files.unified_diff(old, text, path) if old != text else ""


def status():
    """
    Whether haproxy runs: ``{"mode", "running", "pid", "workers", "reloads"}``.

    ``pid`` is the master's; ``workers`` the pids of the current workers (a reload replaces them).

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.status
    """
    mode = _mode()
    root = _root()
    if mode == "process":
        out = haproxy.status(root)
    else:
        running = bool(__salt__["service.status"]("haproxy"))
        out = {"running": running, "pid": None, "workers": [], "reloads": 0}
        if running:
            try:
                procs = haproxy.processes(haproxy.layout(root)["master_socket"])
                out.update(
                    pid=procs["master"], workers=sorted(procs["workers"]), reloads=procs["reloads"]
                )
            except PapError:
                pass
    out["mode"] = mode
    return out


def start():
    """
    Start haproxy (no-op when it runs). Returns :py:func:`status`.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.start
    """
    try:
        if _mode() == "process":
            haproxy.start(_root())
        elif not __salt__["service.start"]("haproxy"):
            raise CommandExecutionError("systemctl start haproxy failed")
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    return status()


def reload():
    """
    Reload haproxy seamlessly (master-worker: the new worker takes over the listening sockets, no
    connection is refused); start it when it does not run. Returns :py:func:`status`.

    The configuration is checked with ``haproxy -c`` first: a broken file is never loaded.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.reload
    """
    root = _root()
    paths = haproxy.layout(root)
    check(path=paths["config"])
    process = _mode() == "process"
    if not process and not __salt__["service.status"]("haproxy"):
        return start()
    try:
        if process:
            haproxy.reload(root)
        else:
            haproxy.wait_peers_synced(paths["admin_socket"])
            before = haproxy.processes(paths["master_socket"])
            if not __salt__["service.reload"]("haproxy"):
                raise CommandExecutionError("systemctl reload haproxy failed")
            haproxy.wait_reloaded(paths["master_socket"], before)
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    return status()


def stop():
    """
    Stop haproxy. Returns True when it was running.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.stop
    """
    if _mode() == "process":
        return haproxy.stop(_root())
    was = bool(__salt__["service.status"]("haproxy"))
    if was and not __salt__["service.stop"]("haproxy"):
        raise CommandExecutionError("systemctl stop haproxy failed")
    return was


def _manual_service(service):
    platform = _platform()
    saltcontext.loadbalancer(__opts__, platform)
    svc = platform.services.get(service)
    if svc is None or not svc.stateful or svc.failback != "manual":
        manual = sorted(
            n for n, s in platform.services.items() if s.stateful and s.failback == "manual"
        )
        raise CommandExecutionError(
            f"pillar {model.ROOT}:services: {service!r} is not a stateful service with failback "
            f"manual (those are: {', '.join(manual) or 'none'})"
        )
    return svc


def failover_status():
    """
    The failover state, on this load balancer, of every stateful service with manual failback:
    ``normal`` (on the primary), ``failed-over`` (on the backup until an operator runs
    :py:func:`failback`) or ``failed-back``.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.failover_status
    """
    platform = _platform()
    saltcontext.loadbalancer(__opts__, platform)
    sock = layout()["admin_socket"]
    out = {}
    try:
        for name, svc in sorted(platform.services.items()):
            if svc.stateful and svc.failback == "manual":
                out[name] = haproxy.FAILOVER_STATES[haproxy.failover_state(sock, name)]
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    return out


def failback(service):
    """
    Manual failback: send the traffic of a stateful service back to its primary.

    The operator's action for a service with ``failback: manual`` after its primary recovered.
    Through the admin socket, the service's failover state on this load balancer becomes
    ``failed-back``: every request, whatever its cookie, goes to the primary while it is up.
    Run it on every load balancer (target them all). Refused while the primary is down.

    service
        The service's name in pillar ``paphosting:services``.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' haproxy_cfg.failback shop
    """
    svc = _manual_service(service)
    primary = next(s for s in svc.servers if s.role == "primary")
    sock = layout()["admin_socket"]
    try:
        state = haproxy.servers(sock).get(service, {}).get(primary.name, "")
        if not state.startswith("UP"):
            raise CommandExecutionError(
                f"{service}: the primary {primary.name} is {state or 'unknown'} on this load balancer; "
                "traffic stays on the backup"
            )
        before = haproxy.failback(sock, service)
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    return {
        "service": service,
        "primary": primary.name,
        "old": haproxy.FAILOVER_STATES[before],
        "new": haproxy.FAILOVER_STATES[haproxy.FAILED_BACK],
    }


def servers():
    """
    The health of every backend server as this load balancer's haproxy sees it.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.servers
    """
    try:
        return haproxy.servers(layout()["admin_socket"])
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc


# --- certificates (docs/tls.md) ---------------------------------------------------------------


def _deployed(root):
    folder = haproxy.layout(root)["certs_dir"]
    out = {}
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return out
    for fname in names:
        if fname.endswith(".pem") and not fname.startswith("."):
            out[fname[: -len(".pem")]] = files.read(os.path.join(folder, fname))
    return out


def _plan():
    platform = _platform()
    lb = saltcontext.loadbalancer(__opts__, platform)
    root = _root()
    try:

        def roots():
            return tls.load_roots(platform.tls.get("trusted_roots", ()))

        return tls.plan(platform, lb.name, _published(), _deployed(root), roots, root)
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc


def certificate_plan():
    """
    What this load balancer's certificates need, from its pillar (``paphosting_secrets:tls``)
    and the bundles in place; nothing is written. Fingerprints only, never a key.

    Returns ``{"changes": {service: {"old", "new"}}, "crt_list": diff, "errors": [...],
    "unchanged": {service: fingerprint}}``. A bundle that would be written is checked first (key
    matches, chain complete, names cover the service's hostnames, valid now): each refused one
    is an error naming the service and its pillar path.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.certificate_plan
    """
    plan = _plan()
    path = layout()["crt_list"]
    old = files.read(path)
    return {
        "changes": plan.changes(),
        "crt_list": files.unified_diff(old, plan.crt_list, path) if old != plan.crt_list else "",
        "errors": [str(e) for e in plan.errors],
        "errors_text": plan.errors_text(),
        "unchanged": plan.unchanged,
    }


def _in_running(paths, path):
    """Whether the running haproxy loaded the bundle ``path`` (False when it does not run)."""
    if not os.path.exists(paths["admin_socket"]):
        return False
    try:
        return haproxy.loaded_certificate(paths["admin_socket"], path) is not None
    except PapError:
        return False


def deploy_certificates():
    """
    Put this load balancer's certificates in place: each changed bundle is checked
    (:py:func:`certificate_plan`), then loaded by ``haproxy -c`` from a temporary file beside
    its place, then, when the running haproxy already serves that file, swapped in its memory
    through the runtime API (``set ssl cert`` and ``commit ssl cert`` on the admin socket: no
    reload, no connection touched), and only then renamed into place (mode 0600). A new
    service's bundle is loaded by the reload its haproxy.cfg change brings. The crt-list is
    rewritten, bundles of services gone are removed.

    Returns ``{"changes", "crt_list", "swapped", "errors"}``; a refused bundle leaves the one in
    place (and in memory) as it was.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.deploy_certificates
    """
    plan = _plan()
    paths = layout()
    root = _root()
    errors = plan.errors_text().splitlines() if plan.errors else []
    swapped, done = [], {}
    changes = plan.changes()
    os.makedirs(paths["certs_dir"], mode=0o700, exist_ok=True)
    for svc, cert in plan.updates.items():
        path = haproxy.certificate_path(root, svc)

        def check(tmp, path=path, cert=cert, svc=svc):
            haproxy.check_certificate(tmp)
            if _in_running(paths, path):
                haproxy.set_certificate(paths["admin_socket"], path, cert.bundle, cert.sha1)
                swapped.append(svc)

        try:
            files.write_checked(path, cert.bundle, check=check, mode=0o600)
            done[svc] = changes[svc]
        except (PapError, OSError) as exc:
            errors.append(
                f"pillar {':'.join(tls.pillar_path(svc))}: service {svc}: {exc} "
                "(the certificate in place is kept)"
            )
    for svc in plan.removals:
        try:
            os.unlink(haproxy.certificate_path(root, svc))
            done[svc] = changes[svc]
        except FileNotFoundError:
            pass
    # The bundles really in place (a write haproxy refused left none for a new service).
    platform = _platform()
    crt_list = haproxy.render_crt_list(
        platform, __opts__["id"], _in_place(platform, __opts__["id"]), root
    )
    old = files.read(paths["crt_list"])
    diff = ""
    if old != crt_list:
        files.write_checked(paths["crt_list"], crt_list, mode=0o644)
        diff = files.unified_diff(old, crt_list, paths["crt_list"])
    return {"changes": done, "crt_list": diff, "swapped": sorted(swapped), "errors": errors}


def certificates():
    """
    The certificate of each service on this load balancer: in place (fingerprint, names,
    issuer, not after) and what the running haproxy serves (SHA-1, as ``show ssl cert``).

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.certificates
    """
    paths = layout()
    out = {}
    for svc, text in _deployed(_root()).items():
        path = haproxy.certificate_path(_root(), svc)
        info = tls.describe(text)
        served = None
        if os.path.exists(paths["admin_socket"]):
            try:
                served = haproxy.loaded_certificate(paths["admin_socket"], path)
            except PapError:
                served = None
        info["served_sha1"] = served
        out[svc] = info
    return out
