"""The platform model: validate the ``paphosting`` pillar and tell a minion its roles.

The schema is documented in ``docs/pillar.md``.

Salt knows it as ``paphosting`` (``salt '*' paphosting.validate``, ``salt['paphosting.roles']()``
in the SLS files); the file is named ``paphosting_platform.py`` so that it is not mistaken for the
core package ``paphosting`` (``_utils/paphosting/``) that every module imports, as Salt's own
``aptpkg.py`` is known as ``pkg``.
"""

import os

import salt.loader
import salt.pillar
from salt.exceptions import CommandExecutionError, SaltRenderError

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import health, pillarcompile, pushproblems, saltcontext

__virtualname__ = "paphosting"


def __virtual__():
    return __virtualname__


def _platform(pillar=None):
    """The platform of ``pillar`` (a ``paphosting`` value), default this minion's."""
    value = pillar if pillar is not None else __pillar__.get("paphosting")
    return saltcontext.compiled(__opts__, __context__, value).platform


def _saltenv():
    return __opts__.get("pillarenv") or "base"


def _sls_file(name):
    """The file of SLS ``name`` under this minion's ``pillar_roots``, or None."""
    stem = name.replace(".", os.sep)
    for root in (__opts__.get("pillar_roots") or {}).get(_saltenv(), []):
        for rel in (stem + ".sls", os.path.join(stem, "init.sls")):
            if os.path.isfile(os.path.join(root, rel)):
                return os.path.join(root, rel)
    return None


def _render_line(path, name):
    """The line at which ``path`` fails to render on its own (YAML's scanner errors lose it on
    the way into the pillar's ``_errors``), or None."""
    try:
        # Salt's private _pillar_rend=True, for want of a public API: see pillarcompile.render_alone.
        pillarcompile.render_alone(
            path, salt.loader.render(__opts__, __salt__), __opts__, _saltenv(), name
        )
    except SaltRenderError as exc:
        return exc.line_num
    except Exception:  # pylint: disable=broad-except
        return None
    return None


def _render_problems(errors, minion=None):
    """A pillar's ``_errors`` as ``<file>: line N: cannot render: <cause>`` lines."""
    out = []
    for err in errors:
        name = pushproblems.failed_sls(err)
        path = _sls_file(name) if name else None
        text = pushproblems.render_problem(err, _render_line(path, name) if path else None)
        where = path or (f"SLS {name!r}" if name else "pillar")
        out.append(f"{where}: {text}" + (f" [pillar of {minion}]" if minion else ""))
    return out


def _server_render_problems(platform):
    """The render errors of the pillar of every server the platform names (masterless: this
    minion compiles each of their pillars from its own ``pillar_roots``)."""
    opts = dict(__opts__, pillar_safe_render_error=False)
    servers = set(platform.loadbalancers) | set(platform.nameservers) | set(platform.webservers)
    out = []
    for minion in sorted(servers - {__opts__["id"]}):
        pillar = salt.pillar.get_pillar(
            opts,
            dict(__grains__, id=minion),
            minion,
            saltenv=_saltenv(),
            pillarenv=__opts__.get("pillarenv"),
            funcs=__salt__,
        )
        errors = pillar.compile_pillar().get("_errors") or []
        out += _render_problems(errors, minion)
    return out


def _refuse(problems):
    n = len(problems)
    lines = [f"the pillar does not render ({n} error{'s' * (n != 1)}):"]
    raise CommandExecutionError("\n".join(lines + [f"  - {p}" for p in problems]))


def validate(pillar=None, servers=False):
    """
    Validate the platform pillar; return a summary, or fail with every error and its pillar path.

    A pillar that Salt could not render (YAML, Jinja) fails with the file, the line and the cause,
    before the schema is looked at: what did render is incomplete, and its schema errors would
    be consequences.

    pillar
        A ``paphosting`` value to validate instead of this minion's pillar.

    servers
        Masterless only (``file_client: local``): also compile the pillar of every server the
        platform names, as each of them would get it from the top file, and fail on their render
        errors (an SLS only some servers get). ``scripts/validate-pillar`` does this.

    CLI Example:

    .. code-block:: bash

        salt-call paphosting.validate
        salt-call --local paphosting.validate servers=True
    """
    if pillar is None and __pillar__.get("_errors"):
        _refuse(_render_problems(__pillar__["_errors"]))
    platform = _platform(pillar)
    if servers:
        if __opts__.get("file_client") != "local":
            raise CommandExecutionError(
                "servers=True compiles other minions' pillars: masterless only (salt-call --local)"
            )
        problems = _server_render_problems(platform)
        if problems:
            _refuse(problems)
    return {
        "loadbalancers": sorted(platform.loadbalancers),
        "nameservers": sorted(platform.nameservers),
        "webservers": sorted(platform.webservers),
        "services": sorted(platform.services),
        "rotations": sorted(platform.rotations),
        "zones": sorted(platform.zones),
    }


def roles(minion_id=None):
    """
    The platform roles of a minion (``loadbalancer``, ``nameserver``, ``webserver``).

    minion_id
        Defaults to this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call paphosting.roles
    """
    return _platform().roles(minion_id or __opts__["id"])


def root():
    """
    The root prefix of every managed path (minion option ``paphosting_root``, default ``/``).

    CLI Example:

    .. code-block:: bash

        salt-call paphosting.root
    """
    return saltcontext.root(__opts__)


def schedule():
    """
    The drift-correction schedule of the platform (``paphosting:schedule`` with its defaults).

    CLI Example:

    .. code-block:: bash

        salt-call paphosting.schedule
    """
    return _platform().schedule


def watcher_beacon():
    """
    The ``http_health`` beacon configuration of a watcher (targets and timings from
    ``paphosting:loadbalancers`` and ``paphosting:health``), or None when this minion is not a
    watcher. Used by the ``watcher`` SLS.

    CLI Example:

    .. code-block:: bash

        salt-call paphosting.watcher_beacon
    """
    platform = _platform()
    if __opts__["id"] not in platform.health.watchers:
        return None
    return health.beacon_config(platform, __opts__["id"])


def beacon_saved(name="http_health"):
    """
    True when beacon ``name`` is saved in this minion's ``minion.d/beacons.conf`` (where
    ``beacon.present`` with ``save: True`` keeps it, and whence the minion loads it at every
    start). The ``watcher`` SLS uses it to skip the module syncs a fresh watcher needs: reading a
    file costs nothing, asking the running minion (``beacons.list``) a round trip over its event
    bus of 1.5 s and more.

    name
        The beacon's name.

    CLI Example:

    .. code-block:: bash

        salt-call paphosting.beacon_saved
    """
    path = os.path.join(os.path.dirname(__opts__["conf_file"]), "minion.d", "beacons.conf")
    try:
        with open(path, encoding="utf-8") as fh:
            return any(line.rstrip() == f"  {name}:" for line in fh)
    except OSError:
        return False
