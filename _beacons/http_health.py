"""
Probe the load balancers' health URLs and report, signed, to the masters (DNS failover).

Runs on the watcher minions (``paphosting:health:watchers``, the nameservers by default); the
``watcher`` SLS configures it from the pillar (``paphosting.watcher_beacon``). Each run probes
every target concurrently (so a run lasts at most about ``probe_timeout``), feeds the results to a
fall/rise and flap-damping state machine per target (:mod:`paphosting.health`), and emits a
report when a target's state changed, and a heartbeat report every ``heartbeat`` seconds.
Every report is the watcher's complete view, so a master that missed one converges from the next.

Configuration
-------------

.. code-block:: yaml

    beacons:
      http_health:
        - targets:             # load balancer minion id: health URL (required)
            lb1.paphosting.net: http://127.0.1.1:8080/haproxy-health
            lb2.paphosting.net: http://127.0.1.2:8080/haproxy-health
        - probe_interval: 1    # seconds between probes (default 1)
        - probe_timeout: 0.5   # seconds per probe (default 0.5)
        - fall: 3              # consecutive failures before "down" (default 3)
        - rise: 2              # consecutive successes before "up" (default 2)
        - heartbeat: 30        # seconds between full-state reports (default 30)
        - flap:                # more than max_transitions switches in window s: held "down"
            window: 300        # until "up" and stable for hold s (defaults 300, 4, 120)
            max_transitions: 4
            hold: 120
        - key: /etc/salt/pki/minion/minion.pem   # signing key (default: the minion's own key)
        - serves:              # on a nameserver: ask its own DNS server what it hands out
            server: 127.0.0.1@5300
            names: [http0.l.paphosting.nl]
            addresses: {127.0.1.1: lb1.paphosting.net, 127.0.1.2: lb2.paphosting.net}

Salt runs beacons once a second (a fixed tick of the minion's event loop). The beacon keeps its
own clock and probes on the first tick at least 90% of ``probe_interval`` after the previous
probe, so an interval below one second is one second. Salt's generic ``interval`` option is not
used: it counts ticks multiplied by ``loop_interval`` and so means a different time on a minion
whose ``loop_interval`` is not 1.

A probe is ``GET`` on the URL; a 2xx or 3xx answer within ``probe_timeout`` is a success. (Not
``timeout``: the ``beacon.present`` state passes its options on to ``beacons.add``/``list``, where
``timeout`` is how long to wait for the minion.)

Event
-----
Tag ``salt/beacon/<minion id>/http_health/transition`` when a target's state changed (several
targets changing in one run make one event), ``salt/beacon/<minion id>/http_health/heartbeat``
otherwise. Data:

.. code-block:: yaml

    report: '{"changed":["lb1.paphosting.net"],"format":1,"kind":"transition",
              "lbs":{"lb1.paphosting.net":{"detail":"ConnectionRefusedError: ...",
                                           "flapping":false,"since":1700000000.1,"state":"down"},
                     "lb2.paphosting.net":{"detail":"HTTP 200 OK","flapping":false,
                                           "since":1699999000.0,"state":"up"}},
              "rotation":{"digest":"4f0c...","version":7},
              "seq":1699990000000123,"ts":1700000000.1,"watcher":"ns1.paphosting.net"}'
    sig: <base64 RSA PKCS#1 v1.5 SHA-256 signature of the report text, by the minion key>

``state`` is ``up``, ``down`` or ``unknown`` (before the first ``fall``/``rise`` run);
a flapping target is ``down`` with ``flapping: true``. A nameserver's heartbeat also carries
``serving: {"digest": ...}``: the membership its own DNS server answers for the rotation names
(anti-entropy, ``docs/failover.md``), and ``actions: {"digest": ...}``: the operator actions'
journal it keeps (:mod:`paphosting.actions`). ``rotation`` is the newest published
rotation this minion holds: its pillar's (``paphosting_rotation``) or the one a master recorded
with ``rotation.hold`` (:mod:`paphosting.overlay`) (``<cachedir>/paphosting/rotation_held.json``), or null. The masters trust
only the signed text: the beacon's event ``id`` can be set by any minion, the signature cannot.
"""

import importlib
import logging
import os
import sys
import time
import urllib.parse

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype

actions = health = overlay = None  # the pure core, imported by _import_core

# What a watcher's failover job (rotation.apply, and dns_zone on a nameserver) imports: imported
# here, in the minion's main process where the beacon runs, so that each job, a fork of it, finds
# it imported (a tenth of a second of a failover, measured; docs/failover.md). Optional: a watcher
# without dnspython's DNSSEC parts still watches.
PRELOAD = (
    "paphosting.model",
    "paphosting.platformcache",
    "paphosting.saltcontext",
    "paphosting.challenges",
    "paphosting.zonesync",
)

log = logging.getLogger(__name__)

__virtualname__ = "http_health"

DEFAULTS = {"probe_interval": 1.0, "probe_timeout": 0.5, "fall": 3, "rise": 2, "heartbeat": 30.0}
FLAP_DEFAULTS = {"window": 300.0, "max_transitions": 4, "hold": 120.0}
KNOWN = {
    "targets",
    "probe_interval",
    "probe_timeout",
    "fall",
    "rise",
    "heartbeat",
    "flap",
    "key",
    "serves",
}
# Options every beacon takes, handled by Salt itself.
SALT_OPTIONS = {"interval", "enabled", "beacon_module", "disable_during_state_run", "run_once"}


def _import_core():
    """Import the pure core (and :data:`PRELOAD`) as the files on disk hold it now. Unlike the
    other loaders, Salt's beacon loader does not put the synced ``_utils`` on ``sys.path``: add the
    minion's utils folders. Runs whenever Salt loads this module (at the start, and again after a
    ``saltutil.sync_*`` refreshes the beacons), so new code replaces a copy imported before."""
    global actions, health, overlay  # noqa: PLW0603
    for folder in [
        *__opts__.get("utils_dirs", []),
        os.path.join(__opts__["extension_modules"], "utils"),
    ]:
        if os.path.isdir(os.path.join(folder, "paphosting")) and folder not in sys.path:
            sys.path.append(folder)
    importlib.import_module("paphosting.fresh").drop_stale()
    health = importlib.import_module("paphosting.health")
    overlay = importlib.import_module("paphosting.overlay")
    actions = importlib.import_module("paphosting.actions")
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            log.debug("http_health: not preloading %s: %s", name, exc)


def __virtual__():
    try:
        _import_core()
    except ImportError as exc:
        return (
            False,
            f"http_health: the paphosting core is missing (run saltutil.sync_utils): {exc}",
        )
    return __virtualname__


def _merged(config):
    out = {}
    for item in config if isinstance(config, list) else [config]:
        if isinstance(item, dict):
            out.update(item)
    return out


def _positive(value, integer=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if integer and not isinstance(value, int):
        return False
    return value > 0


def validate(config):
    """Check the beacon configuration; ``(True, message)`` or ``(False, what is wrong)``."""
    if not isinstance(config, list):
        return False, "http_health: the configuration must be a list"
    conf = _merged(config)
    unknown = sorted(k for k in conf if k not in KNOWN | SALT_OPTIONS and not k.startswith("_"))
    if unknown:
        return (
            False,
            f"http_health: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(KNOWN))})",
        )
    targets = conf.get("targets")
    if not isinstance(targets, dict) or not targets:
        return False, "http_health: 'targets' must be a mapping of load balancer name to health URL"
    for name, url in targets.items():
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if (
            not isinstance(name, str)
            or parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
        ):
            return False, f"http_health: target {name!r}: {url!r} is not an http(s) URL"
    for key, integer in (
        ("probe_interval", False),
        ("probe_timeout", False),
        ("fall", True),
        ("rise", True),
        ("heartbeat", False),
    ):
        if key in conf and not _positive(conf[key], integer):
            return (
                False,
                f"http_health: '{key}' must be a positive {'integer' if integer else 'number'}",
            )
    flap = conf.get("flap", {})
    if not isinstance(flap, dict) or set(flap) - set(FLAP_DEFAULTS):
        return False, "http_health: 'flap' must be a mapping of window, max_transitions, hold"
    for key in ("window", "max_transitions"):
        if key in flap and not _positive(flap[key], key == "max_transitions"):
            return (
                False,
                f"http_health: 'flap:{key}' must be a positive {'integer' if key == 'max_transitions' else 'number'}",
            )
    if "hold" in flap and not (_positive(flap["hold"]) or flap["hold"] == 0):
        return False, "http_health: 'flap:hold' must be a number of seconds, 0 or more"
    if "key" in conf and not isinstance(conf["key"], str):
        return False, "http_health: 'key' must be the path of a PEM private key"
    serves = conf.get("serves")
    if serves is not None and not (
        isinstance(serves, dict)
        and isinstance(serves.get("server"), str)
        and serves["server"].rpartition("@")[2].isdigit()
        and isinstance(serves.get("names"), list)
        and isinstance(serves.get("addresses"), dict)
    ):
        return (
            False,
            "http_health: 'serves' must be {server: address@port, names: [...], addresses: {...}}",
        )
    return True, "valid"


def _settings(conf):
    flap = dict(FLAP_DEFAULTS, **conf.get("flap", {}))
    return health.Settings(
        fall=conf.get("fall", DEFAULTS["fall"]),
        rise=conf.get("rise", DEFAULTS["rise"]),
        flap_window=float(flap["window"]),
        flap_max_transitions=int(flap["max_transitions"]),
        flap_hold=float(flap["hold"]),
    )


def _held_rotation():
    """``{version, digest}`` of the newest rotation this minion holds, or None: its pillar's
    ``paphosting_rotation``, or the newer one a master recorded with ``rotation.apply`` (the
    beacon sees the pillar of the first master only; see ``docs/masters.md``)."""
    try:
        pillar = overlay.held_of((__pillar__ or {}).get(overlay.KEY))
    except AttributeError:
        pillar = None
    held = overlay.newest_held(pillar, overlay.load_held(overlay.held_path(__opts__["cachedir"])))
    return None if held is None else {"version": held["version"], "digest": held["digest"]}


def _actions():
    """``{"digest": ...}`` of the operator actions' journal this minion keeps (see
    ``paphosting.actions``), or None when it cannot be read."""
    try:
        journal = actions.load_journal(actions.journal_path(__opts__["cachedir"]))
    except actions.BadRecord as exc:
        log.warning("http_health: %s", exc)
        return None
    return {"digest": actions.digest(journal)}


def _serving(serves, timeout=0.5):
    """``{"digest": ...}`` of the membership this nameserver's own DNS server answers for the
    rotation names now (``serves``, from the beacon config), or None when it does not answer:
    what it *serves*, whatever it holds, so a missed job, a failed apply or a hand edit shows in
    its next heartbeat. Plain dnspython here: this runs in the minion's main process, which
    should import as little of the project as it can (a job process inherits what it imported)."""
    address, _, port = serves["server"].rpartition("@")
    served = {}
    for name in serves["names"]:
        query = dns.message.make_query(name.rstrip(".") + ".", "A")
        query.flags &= ~dns.flags.RD
        try:
            resp = dns.query.udp(query, address, port=int(port), timeout=timeout)
        except (dns.exception.DNSException, OSError):
            return None
        found = {
            serves["addresses"].get(rd.address, rd.address)
            for rr in resp.answer
            if rr.rdtype == dns.rdatatype.A
            for rd in rr
        }
        served[name] = {"members": sorted(found)}
    return {"digest": overlay.digest(served)}


def beacon(config):
    """Probe, update the views, and return the report events due now (see the module docstring)."""
    conf = _merged(config)
    name = conf.get("_beacon_name", __virtualname__)
    now = time.time()
    watch = health.watch((__opts__["id"], name), now)
    watch.configure(conf["targets"], _settings(conf))
    if not watch.probe_due(now, conf.get("probe_interval", DEFAULTS["probe_interval"])):
        return []
    results = watch.probe_all(conf.get("probe_timeout", DEFAULTS["probe_timeout"]))
    now = time.time()
    changed = watch.observe(results, now)
    kind = watch.due(changed, now, conf.get("heartbeat", DEFAULTS["heartbeat"]))
    if kind is None:
        return []
    for lb in changed:
        t = watch.trackers[lb]
        log.info("http_health: %s is now %s (%s)", lb, t.state, t.detail)
    key_path = conf.get("key") or os.path.join(__opts__["pki_dir"], "minion.pem")
    serving = _serving(conf["serves"]) if kind == "heartbeat" and conf.get("serves") else None
    acts = _actions() if kind == "heartbeat" else None
    text = watch.report(__opts__["id"], kind, changed, now, _held_rotation(), serving, acts)
    with open(key_path, "rb") as fh:
        sig = health.sign(text, fh.read())
    return [{"tag": kind, "report": text, "sig": sig}]
