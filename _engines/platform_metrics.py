"""
The master's Prometheus exporter: the failover, the pushes and drift correction as metrics.

Runs inside the salt-master (``engines: [platform_metrics: {}]``, conf/master.d/paphosting.conf)
and serves ``/metrics`` on this master's listener of ``paphosting:metrics:masters`` (the entry
named like this master's id or its ``paphosting_svn:name``, or holding its ``interface``
address). The metrics are computed by :mod:`paphosting.metrics` from the rotation state file, the
push record, the certificates of the live revision and the events of this master's bus; see
docs/monitoring.md.

Configuration (all optional):

.. code-block:: yaml

    engines:
      - platform_metrics:
          refresh: 30   # seconds between looks at the platform pillar (listener, rotations)
"""

import logging
import os
import time

import salt.utils.event

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import certstate, decision, metrics, pillarcompile, secrets
from paphosting.errors import PapError
from paphosting.pushstore import Store

try:
    from prometheus_client import CollectorRegistry, start_http_server

    HAS_PROMETHEUS = True
except ImportError:
    HAS_PROMETHEUS = False

log = logging.getLogger(__name__)

__virtualname__ = "platform_metrics"


def __virtual__():
    if not HAS_PROMETHEUS:
        return (False, "platform_metrics needs the Python package prometheus_client")
    return __virtualname__


def _platform(opts):
    """The platform from the pillar of the first accepted minion (the one platform of this
    master's pillar tree, :func:`paphosting.pillarcompile.minion_platform`), or None while there
    is none."""
    accepted = pillarcompile.accepted_minions(opts)
    if not accepted:
        return None
    try:
        return pillarcompile.minion_platform(opts, accepted[0])[0]
    except PapError as exc:
        log.debug("platform_metrics: no platform in %s's pillar: %s", accepted[0], exc)
        return None


def _listener(platform, opts):
    masters = platform.metrics.get("masters", {})
    names = [opts.get("id"), (opts.get("paphosting_svn") or {}).get("name")]
    for name in names:
        if name in masters:
            return masters[name]
    for name, listener in masters.items():
        configured = platform.masters.get(name)
        if configured is not None and configured.address == opts.get("interface"):
            return listener
    return None


def start(refresh=30):
    """Serve the metrics and follow the event bus until the master stops."""
    opts = __opts__
    store = Store.of(opts)
    state_path = decision.state_path(opts)
    observer = metrics.Observer(
        drift_path=os.path.join(opts["cachedir"], "paphosting", "metrics_drift.json")
    )
    current = {"platform": None}

    def sources():
        platform = current["platform"]
        if platform is None:
            return None
        return {
            "state": decision.load(state_path),
            "config": decision.config_of(platform),
            "heartbeat": platform.health.heartbeat,
            "record": store.record(),
            "minions": sorted(
                {*platform.loadbalancers, *platform.nameservers, *platform.webservers}
            ),
            "drift_interval": platform.schedule["highstate_interval"] + platform.schedule["splay"],
            "certificates": certificates(platform),
        }

    def certificates(platform):
        """``{service: info or None}`` of the services of ``paphosting:acme``, from the live
        revision (decrypted texts are cached by the secrets module: a scrape costs no gpg run
        once each bundle was read)."""
        if platform.acme is None or store.live_revision() is None:
            return {}
        out = {}
        for service in platform.acme.services:
            try:
                bundle = secrets.read(store.live, "tls", service, secrets.keydir(opts))
                out[service] = certstate.certificate_info(bundle)
            except PapError:
                out[service] = None
        return out

    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.MasterCollector(observer, sources))
    serving = None
    looked = 0.0
    with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True) as bus:
        while True:
            # Until the platform is known (no pillar pushed yet), look again every few seconds.
            due = refresh if current["platform"] is not None else min(refresh, 5)
            if time.monotonic() - looked >= due:
                looked = time.monotonic()
                # A compile only when the pillar tree changed (megabytes at a hoster's size).
                gen = pillarcompile.generation(opts)
                if current["platform"] is None or gen != current.get("generation"):
                    try:
                        current["platform"] = _platform(opts) or current["platform"]
                        current["generation"] = gen
                    except Exception as exc:  # noqa: BLE001 - keep serving the last one known
                        log.warning("platform_metrics: the platform pillar does not load: %s", exc)
                platform = current["platform"]
                if platform is not None:
                    observer.nameservers = set(platform.nameservers)
                listener = _listener(platform, opts) if platform is not None else None
                if serving is None and listener is not None:
                    try:
                        start_http_server(listener.port, listener.address, registry=registry)
                        serving = listener
                        log.info(
                            "platform_metrics: /metrics on %s:%s", listener.address, listener.port
                        )
                    except OSError as exc:
                        log.error(
                            "platform_metrics: cannot listen on %s:%s: %s",
                            listener.address,
                            listener.port,
                            exc,
                        )
            event = bus.get_event(wait=1, full=True, auto_reconnect=True)
            if event:
                observer.event(event.get("tag", ""), event.get("data") or {})
