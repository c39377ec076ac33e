"""What every execution module of the project needs from the minion, in one place (and the one
shape of a runner's return, :func:`runner_return`).

The minion's root (``paphosting_root``), the platform of a ``paphosting`` pillar value and this
minion's nameserver or load balancer in it, with the core's errors turned into
``CommandExecutionError``. Built once per job, as saltext-vault builds its client in one factory
(``utils/vault/factory.py``) and keeps it in ``__context__``: the modules pass their dunders.

The platform comes from :mod:`paphosting.platformcache` (parsed once per pillar digest, kept on
disk across jobs); ``__context__`` keeps the last one with the pillar value it came from, so the
calls of one job (a state run makes a dozen) do not hash the whole pillar again each time. A
pillar refresh brings a new value, hence a new digest.

:func:`kept`: what a thin module keeps for the life of its process rather than of the module.
Salt loads a module anew whenever it builds a new loader, and a master's reactor builds a new
runner loader every ``reactor_refresh_interval`` (60 s by default): module globals of a runner
are emptied once a minute, in the middle of a long-lived process.
"""

import threading

from salt.exceptions import CommandExecutionError

from paphosting import model, platformcache
from paphosting.errors import PapError

CONTEXT_KEY = "paphosting.platform"

_kept = {}
_kept_lock = threading.Lock()


def kept(name, make):
    """The object this process keeps under ``name``, made by ``make()`` the first time: it
    outlives the module that asked, which Salt may load again (the reactor reloads its runners
    every ``reactor_refresh_interval``). New code (:mod:`paphosting.fresh`) starts afresh."""
    with _kept_lock:
        if name not in _kept:
            _kept[name] = make()
        return _kept[name]


def runner_return(context, ok, text):
    """A runner's return: ``text``; on failure ``{"result": False, "retcode": 1, "comment": text}``
    with ``retcode`` 1 in the runner's ``__context__`` too, so that ``salt-run`` exits non-zero."""
    if not ok:
        context["retcode"] = 1
        return {"result": False, "retcode": 1, "comment": text}
    return text


def root(opts):
    """The root prefix of every managed path: minion option ``paphosting_root``, default ``/``."""
    return opts.get("paphosting_root", "/") or "/"


def compiled(opts, context, paphosting, digest=None):
    """The :class:`~paphosting.zone.Renderer` of the ``paphosting`` pillar value (``.platform``
    the parsed :class:`~paphosting.model.Platform`, ``.digest`` its key), or
    ``CommandExecutionError`` naming the pillar path at fault.

    ``digest``: the value's digest when the caller knows it (``rotation.apply`` passes the
    master's, which a platform prepared in the cache answers even when ``paphosting`` is older).
    Such a lookup is neither read from nor kept in ``context``: there the platform follows the
    digest, not the value."""
    held = context.get(CONTEXT_KEY) if digest is None else None
    if held is not None and held[0] is paphosting:
        return held[1]
    try:
        found = platformcache.load(paphosting, opts.get("cachedir"), digest=digest)
    except PapError as exc:
        raise CommandExecutionError(str(exc)) from exc
    if digest is None:
        context[CONTEXT_KEY] = (paphosting, found)
    return found


def renderer(opts, context, pillar):
    """:func:`compiled` for ``pillar``, a whole pillar (``__pillar__``, or one compiled now)."""
    return compiled(opts, context, pillar.get(model.ROOT))


def nameserver(opts, found, name=None):
    """Nameserver ``name`` (default: this minion) of ``found`` (a platform or its renderer)."""
    name = name or opts["id"]
    if name not in found.nameservers:
        raise CommandExecutionError(f"pillar {model.ROOT}:nameservers: {name} is not a nameserver")
    return found.nameservers[name]


def loadbalancer(opts, found, name=None):
    """Load balancer ``name`` (default: this minion) of ``found`` (a platform or its renderer)."""
    name = name or opts["id"]
    if name not in found.loadbalancers:
        known = ", ".join(sorted(found.loadbalancers)) or "none"
        raise CommandExecutionError(
            f"pillar {model.ROOT}:loadbalancers: {name!r} is not a load balancer (known: {known})"
        )
    return found.loadbalancers[name]


def zones_applied(done, out, keys, what, changed_only=False):
    """Report ``dns_zone.apply_all``'s answer ``done`` in ``out["zones"]``: ``keys`` of each
    zone's entry (with ``changed_only``, of the zones written, reloaded or failed only). When a
    zone failed, ``CommandExecutionError`` "``what`` was not applied to every zone: ..." carries
    ``out`` (the others were applied)."""
    errors = []
    for zone, entry in done.items():
        if not changed_only or entry["written"] or entry["reloaded"] or entry["error"]:
            out["zones"][zone] = {k: entry.get(k) for k in keys}
        if entry.get("error"):
            errors.append(f"{zone}: {entry['error']}")
    if errors:
        raise CommandExecutionError(
            f"{what} was not applied to every zone: " + "; ".join(errors), info=out
        )
    return out
