"""States for haproxy on a load balancer: its configuration rendered from pillar, and the service.

.. code-block:: yaml

    loadbalancer-haproxy-config:
      haproxy_cfg.managed:
        - name: /etc/haproxy/haproxy.cfg

    loadbalancer-haproxy-running:
      haproxy_cfg.running:
        - name: haproxy
        - watch:
          - haproxy_cfg: loadbalancer-haproxy-config

The configuration is checked with ``haproxy -c`` before it replaces the file in place, and haproxy
is reloaded (seamlessly: master-worker) only when the file changed. See ``docs/haproxy.md``.
"""

import os

from salt.exceptions import CommandExecutionError, SaltInvocationError

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import files

__virtualname__ = "haproxy_cfg"


def __virtual__():
    if "haproxy_cfg.render" not in __salt__:
        return (
            False,
            "haproxy_cfg: the haproxy_cfg execution module is not available (haproxy missing?)",
        )
    return __virtualname__


def _mode(mode):
    text = str(mode).strip()
    try:
        value = int(text, 8)
    except ValueError as exc:
        raise SaltInvocationError(f"mode {mode!r} is not an octal file mode") from exc
    if not 0 <= value <= 0o7777:
        raise SaltInvocationError(f"mode {mode!r} is not an octal file mode")
    return value


def managed(name, lb=None, user="root", group="root", mode="0644"):
    """
    haproxy.cfg rendered from the ``paphosting`` pillar, checked by ``haproxy -c``, written atomically.

    name
        The file. A name that is not an absolute path (a label) means this minion's haproxy.cfg
        under ``paphosting_root`` (``haproxy_cfg.layout``).

    lb
        The load balancer to render for; defaults to this minion's id.

    user, group, mode
        Owner and mode of the file (default ``root``, ``root``, ``0644``).

    An invalid pillar (the error names the pillar path) or a configuration ``haproxy -c`` rejects
    fails the state and leaves the file in place untouched.

    .. code-block:: yaml

        loadbalancer-haproxy-config:
          haproxy_cfg.managed:
            - name: /etc/haproxy/haproxy.cfg
            - user: root
            - group: root
            - mode: "0644"
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        wanted_mode = _mode(mode)
        path = name if os.path.isabs(name) else __salt__["haproxy_cfg.layout"]()["config"]
        text = __salt__["haproxy_cfg.render"](lb)
        current = files.read(path)
        meta = files.owner_mode(path)
        changes = {}
        if current != text:
            changes["diff"] = files.unified_diff(current, text, path)
        if meta is not None:
            for key, old, new in (
                ("user", meta[0], user),
                ("group", meta[1], group),
                ("mode", meta[2], wanted_mode),
            ):
                if new is not None and old != new:
                    changes[key] = {
                        "old": f"{old:04o}" if key == "mode" else old,
                        "new": f"{new:04o}" if key == "mode" else new,
                    }
        if not changes:
            ret.update(result=True, comment=f"{path} is up to date")
            return ret
        # haproxy -c on a temporary file, also under test=True: a prediction that would fail is a failure.
        __salt__["haproxy_cfg.check"](text=text)
        if __opts__["test"]:
            what = "created" if current is None else "updated"
            ret.update(
                result=None,
                changes=changes,
                comment=f"{path} would be {what} (haproxy -c accepts it)",
            )
            return ret
        __salt__["haproxy_cfg.write"](
            path=path, text=text, user=user, group=group, mode=f"{wanted_mode:04o}"
        )
        meta = files.owner_mode(path)
        if files.read(path) != text or (meta is not None and meta[2] != wanted_mode):
            ret["comment"] = f"{path} was written but does not hold the rendered configuration"
            return ret
        what = "created" if current is None else "updated"
        ret.update(result=True, changes=changes, comment=f"{path} {what}; haproxy -c accepted it")
    except (CommandExecutionError, SaltInvocationError) as exc:
        # An invalid pillar, a configuration haproxy rejects, or a failed write: nothing replaced the
        # file in place.
        ret["comment"] = f"{name}: {exc}\nThe haproxy configuration in place was left unchanged."
    return ret


def _certificate_changes(result):
    """The state's ``changes`` from a plan or a deployment (fingerprints and the crt-list diff)."""
    changes = {}
    if result["changes"]:
        changes["certificates"] = result["changes"]
    if result["crt_list"]:
        changes["crt_list"] = {"diff": result["crt_list"]}
    return changes


def _certificate_lines(changes, swapped=()):
    lines = []
    for svc, change in changes.items():
        if change["new"] is None:
            lines.append(f"{svc}: certificate {change['old']} removed")
            continue
        how = (
            "swapped in the running haproxy (runtime API)"
            if svc in swapped
            else "loaded by haproxy at its next (re)load"
        )
        old = f"{change['old']} -> " if change["old"] else ""
        lines.append(f"{svc}: certificate {old}{change['new']} ({how})")
    return lines


def certificates(name):
    """
    Each service's certificate in place on this load balancer, from its pillar
    (``paphosting_secrets:tls``, the bundles of ``secrets/tls/<service>.asc``; docs/tls.md).

    name
        A label.

    A bundle that would change is checked first: the key matches the certificate, the chain is
    complete up to a trusted root, the names cover every hostname of the service, it is valid
    now, and ``haproxy -c`` loads it. A refused bundle fails the state with an error naming the
    service and its pillar path, and the certificate in place (and the one haproxy serves) is
    kept. A changed certificate haproxy already serves is swapped in its memory through the
    runtime API, without a reload; a new one is loaded by the reload its configuration change
    brings. ``changes`` show fingerprints, never a key.

    .. code-block:: yaml

        loadbalancer-tls-certificates:
          haproxy_cfg.certificates:
            - name: haproxy certificates
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        plan = __salt__["haproxy_cfg.certificate_plan"]()
        changes = _certificate_changes(plan)
        if not changes:
            if plan["errors"]:
                ret["comment"] = plan["errors_text"]
            else:
                ret.update(
                    result=True,
                    comment=f"{len(plan['unchanged'])} certificate(s) in place, up to date",
                )
            return ret
        if __opts__["test"]:
            lines = _certificate_lines(plan["changes"])
            if plan["errors"]:
                ret.update(changes=changes, comment="\n".join([plan["errors_text"], *lines]))
                return ret
            ret.update(result=None, changes=changes, comment="would change:\n" + "\n".join(lines))
            return ret
        done = __salt__["haproxy_cfg.deploy_certificates"]()
        changes = _certificate_changes(done)
        lines = _certificate_lines(done["changes"], done["swapped"])
        ret.update(
            result=not done["errors"],
            changes=changes,
            comment="\n".join([*done["errors"], *lines]) or "crt-list updated",
        )
    except (CommandExecutionError, SaltInvocationError) as exc:
        # An invalid pillar or an unreadable bundle in place: nothing was written.
        ret["comment"] = f"{name}: {exc}\nThe certificates in place were left unchanged."
    return ret


def running(name, enable=True):
    """
    haproxy runs, in the load balancer's ``service_mode`` (``systemd`` or a plain ``process``).

    name
        A label (``haproxy``).

    enable
        In mode ``systemd``, also enable the unit at boot.

    Watching a :py:func:`managed` state reloads haproxy seamlessly when (and only when) the
    configuration file changed.

    .. code-block:: yaml

        loadbalancer-haproxy-running:
          haproxy_cfg.running:
            - name: haproxy
            - watch:
              - haproxy_cfg: loadbalancer-haproxy-config
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        mode = __salt__["haproxy_cfg.service_mode"]()
        changes = {}
        if mode == "systemd" and enable and not __salt__["service.enabled"]("haproxy"):
            changes["enabled"] = {"old": False, "new": True}
        status = __salt__["haproxy_cfg.status"]()
        if not status["running"]:
            changes["running"] = {"old": False, "new": True}
        if not changes:
            ret.update(
                result=True, comment=f"haproxy is running ({mode}, master pid {status['pid']})"
            )
            return ret
        if __opts__["test"]:
            ret.update(
                result=None, changes=changes, comment=f"haproxy would be {_said(changes)} ({mode})"
            )
            return ret
        if "enabled" in changes and not __salt__["service.enable"]("haproxy"):
            ret["comment"] = "systemctl enable haproxy failed"
            return ret
        if "running" in changes:
            status = __salt__["haproxy_cfg.start"]()
            if not status["running"]:
                ret["comment"] = "haproxy did not start"
                return ret
            changes["running"]["new"] = True
        ret.update(
            result=True,
            changes=changes,
            comment=f"haproxy {_said(changes)} ({mode}, master pid {status['pid']})",
        )
    except (CommandExecutionError, SaltInvocationError) as exc:
        # haproxy would not start (its log is in the message) or the pillar is invalid.
        ret["comment"] = f"haproxy: {exc}"
    return ret


def _said(changes):
    return " and ".join(
        w for k, w in (("enabled", "enabled"), ("running", "started")) if k in changes
    )


def mod_watch(name, sfun=None, **kwargs):
    """
    Reload haproxy seamlessly because a watched state (the configuration) changed.

    Salt calls this only when :py:func:`running` itself changed nothing (haproxy was already
    running): a freshly started haproxy already read the new file. A watch on any other state
    of this module fails: it would reload nothing. The master re-reads the
    configuration and starts a new worker that takes over the listening sockets; the old worker
    finishes its requests. Changes report the worker pids before and after.
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    if sfun != "running":
        # Only haproxy_cfg.running owns the process; a watch on managed (or anything else) must
        # not reload it behind running's back, and is a mistake in the SLS (as Salt's
        # service.mod_watch says of a watch it cannot trigger).
        ret["comment"] = (
            f"haproxy_cfg.{sfun} does not react to watch: nothing was reloaded "
            "(put the watch on haproxy_cfg.running)"
        )
        return ret
    try:
        before = __salt__["haproxy_cfg.status"]()
        if __opts__["test"]:
            ret.update(
                result=None,
                changes={"workers": {"old": before["workers"], "new": "a new worker"}},
                comment="haproxy would be reloaded: its configuration changed",
            )
            return ret
        after = __salt__["haproxy_cfg.reload"]()
        if not after["running"] or after["workers"] == before["workers"] and before["running"]:
            ret["comment"] = "haproxy did not reload"
            return ret
        ret.update(
            result=True,
            changes={"workers": {"old": before["workers"], "new": after["workers"]}},
            comment=f"haproxy reloaded: its configuration changed (master pid {after['pid']})",
        )
    except (CommandExecutionError, SaltInvocationError) as exc:
        # The configuration was refused at reload (haproxy -c) or haproxy failed: the old worker
        # keeps serving with the old configuration.
        ret["comment"] = f"haproxy was not reloaded: {exc}"
    return ret
