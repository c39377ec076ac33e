"""haproxy on a load balancer of the platform: render haproxy.cfg from pillar, check it, run haproxy.

Named ``haproxy_cfg`` because Salt already ships a module named ``haproxy``. The logic lives in
``_utils/paphosting/haproxy.py``; this module reads the pillar and the minion options and turns
the core's errors into ``CommandExecutionError``. See ``docs/haproxy.md``.

Service management follows the load balancer's ``service_mode`` in the pillar: ``systemd`` uses
Salt's ``service`` module on the ``haproxy`` unit, ``process`` runs haproxy as a plain master-worker
process with a pidfile under the minion option ``paphosting_root``.
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

from paphosting import files, model, platformcache
from paphosting import haproxy as core
from paphosting.errors import PapError

__virtualname__ = "haproxy_cfg"


def __virtual__():
    if core.binary() is None:
        return (False, "haproxy_cfg: haproxy is not installed (Debian package haproxy)")
    return __virtualname__


def _root():
    return __opts__.get("paphosting_root", "/") or "/"


def _platform():
    """The platform, parsed once per pillar digest (:mod:`paphosting.platformcache`)."""
    try:
        return platformcache.load(__pillar__.get(model.ROOT), __opts__.get("cachedir")).platform
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc


def _loadbalancer(platform, lb=None):
    name = lb or __opts__["id"]
    if name not in platform.loadbalancers:
        known = ", ".join(sorted(platform.loadbalancers)) or "none"
        raise CommandExecutionError(
            f"pillar {model.ROOT}:loadbalancers: {name!r} is not a load balancer (known: {known})"
        )
    return platform.loadbalancers[name]


def _mode():
    return _loadbalancer(_platform()).service_mode


def layout():
    """
    The files of haproxy on this minion (config, pidfile, sockets, log), under ``paphosting_root``.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.layout
    """
    return core.layout(_root())


def service_mode(lb=None):
    """
    How haproxy runs on a load balancer: ``systemd`` or ``process`` (pillar ``service_mode``).

    lb
        The load balancer's minion id; defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.service_mode
    """
    return _loadbalancer(_platform(), lb).service_mode


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
        return core.render(platform, name, _root())
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
            core.check_text(text)
        else:
            core.check_file(path or layout()["config"])
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
            text = core.render(platform, name, _root())
            core.check_text(text)
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
            path, text, check=core.check_file, mode=int(str(mode), 8), user=user, group=group
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
        out = core.status(root)
    else:
        running = bool(__salt__["service.status"]("haproxy"))
        out = {"running": running, "pid": None, "workers": [], "reloads": 0}
        if running:
            try:
                procs = core.processes(core.layout(root)["master_socket"])
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
            core.start(_root())
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
    paths = core.layout(root)
    check(path=paths["config"])
    try:
        if _mode() == "process":
            core.reload(root)
        else:
            if __salt__["service.status"]("haproxy"):
                core.wait_peers_synced(paths["admin_socket"])
                before = core.processes(paths["master_socket"])
                if not __salt__["service.reload"]("haproxy"):
                    raise CommandExecutionError("systemctl reload haproxy failed")
                core.wait_reloaded(paths["master_socket"], before)
            elif not __salt__["service.start"]("haproxy"):
                raise CommandExecutionError("systemctl start haproxy failed")
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
        return core.stop(_root())
    was = bool(__salt__["service.status"]("haproxy"))
    if was and not __salt__["service.stop"]("haproxy"):
        raise CommandExecutionError("systemctl stop haproxy failed")
    return was


def _manual_service(service):
    platform = _platform()
    _loadbalancer(platform)
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
    _loadbalancer(platform)
    sock = layout()["admin_socket"]
    out = {}
    try:
        for name, svc in sorted(platform.services.items()):
            if svc.stateful and svc.failback == "manual":
                out[name] = core.FAILOVER_STATES[core.failover_state(sock, name)]
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
        state = core.servers(sock).get(service, {}).get(primary.name, "")
        if not state.startswith("UP"):
            raise CommandExecutionError(
                f"{service}: the primary {primary.name} is {state or 'unknown'} on this load balancer; "
                "traffic stays on the backup"
            )
        before = core.failback(sock, service)
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    return {
        "service": service,
        "primary": primary.name,
        "old": core.FAILOVER_STATES[before],
        "new": core.FAILOVER_STATES[core.FAILED_BACK],
    }


def servers():
    """
    The health of every backend server as this load balancer's haproxy sees it.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.servers
    """
    try:
        return core.servers(layout()["admin_socket"])
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
