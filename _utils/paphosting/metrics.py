"""The platform's own metrics, computed on a master from what it already keeps (docs/monitoring.md).

Plain Python over plain data, no Salt in it: the master's exporter (``_engines/platform_metrics``)
hands it the rotation state (:mod:`paphosting.decision`), the decision's configuration
(:func:`paphosting.decision.config_of`), the push record (:class:`paphosting.pushstore.Store`) and the
events of the master's bus; it gets Prometheus metric families back.

* :func:`rotation_families`: per rotation its members, floor and version; per load balancer each
  watcher's view, the verdict, drains and flap holds; each watcher's last report; the rotation
  version each nameserver holds (from the watchers' reports and the nameservers' applies).
* :func:`push_families`: the live revision and the last push (revision, time, result).
* :class:`Observer`: what only the event bus tells: decisions and their latencies (detection →
  decided → applied), refused reports by reason, drift runs and changes per minion. Counters
  start at zero when the master starts (Prometheus's ``rate``/``increase`` handle the reset);
  the drift runs' last times are kept in a file so that a restart does not hide a silent minion.
"""

import datetime
import re
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from paphosting import decision, files, health

PREFIX = "paphosting"
CHANGED_TAG = "paphosting/rotation/changed"
REJECTED_TAG = "paphosting/rotation/rejected"
DRIFT_TAG_PREFIX = "paphosting/drift/"
JOB_RETURN_RE = re.compile(r"^salt/job/(?P<jid>[^/]+)/ret/(?P<minion>[^/]+)$")
# Seconds; the failover's floor is 3 s (fall x interval) and its target 4-5 s.
LATENCY_BUCKETS = (0.25, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 8, 10, 15, 20, 30, 60, 120)
# What a refused report's reason starts with or contains -> its label (paphosting.decision).
REFUSALS = (
    ("malformed report", "malformed"),
    ("names an invalid minion id", "malformed"),
    ("is not a watcher", "not_a_watcher"),
    ("is not signed", "unsigned"),
    ("no accepted key", "unknown_key"),
    ("bad signature", "bad_signature"),
    ("stale report", "stale"),
    ("in the future", "future"),
    ("duplicate report", "replayed"),
    ("replayed or out-of-order", "replayed"),
    ("about no known load balancer", "unknown_loadbalancer"),
    ("does not render", "pillar_error"),
)
PUSH_OK = ("applied", "tested")
PENDING_LIMIT = 100


def refusal_reason(text):
    """The label of a refused report's reason (one of :data:`REFUSALS`' labels, else ``other``)."""
    text = str(text or "")
    return next((label for needle, label in REFUSALS if needle in text), "other")


def _gauge(name, doc, labels=()):
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))


def _view_state(view, lb, fresh):
    if view is None or lb not in view["lbs"]:
        return "none"
    if not fresh:
        return "stale"
    s = view["lbs"][lb]
    return "flapping" if s.get("flapping") else s.get("state", "none")


def rotation_families(state, config, now, heartbeat, applied=None, started=0):
    """The failover's metrics from this master's rotation ``state`` and decision ``config``.

    ``heartbeat`` is the watchers' heartbeat period (``paphosting:health:heartbeat``);
    ``applied`` is ``{nameserver: version}`` from the nameservers' ``rotation.apply`` returns
    (:meth:`Observer.applied`); ``started``, when the exporter started, stands for the last
    report of a watcher never heard from (a fresh master is not a silent watcher). Returns a list
    of metric families.
    """
    applied = applied or {}
    fresh = decision._fresh_views(state, config, now)
    verdicts = state.get("verdicts", {})
    drains = state.get("drains", {})
    members, notes = decision.membership(config, verdicts, drains)

    version = _gauge("rotation_version", "The rotation version this master publishes.")
    version.add_metric([], state.get("version", 0))
    count = _gauge("rotation_members", "Load balancers a rotation name hands out.", ["rotation"])
    member = _gauge(
        "rotation_member",
        "1 when the load balancer is handed out by the rotation, 0 when it is out.",
        ["rotation", "loadbalancer"],
    )
    configured = _gauge(
        "rotation_configured_members", "Members of the rotation in pillar.", ["rotation"]
    )
    healthy = _gauge(
        "rotation_healthy_members",
        "Members neither drained nor judged down (what the rotation would hand out without its floor).",
        ["rotation"],
    )
    floor = _gauge(
        "rotation_min_members",
        "The rotation's floor: below it every non-drained member is kept (fail open).",
        ["rotation"],
    )
    fail_open = _gauge(
        "rotation_fail_open",
        "1 when the rotation keeps members judged down because it is at its minimum.",
        ["rotation"],
    )
    for name, rot in sorted(config["rotations"].items()):
        now_in = members.get(name, [])
        count.add_metric([name], len(now_in))
        configured.add_metric([name], len(rot["members"]))
        pool = [m for m in rot["members"] if m not in drains]
        up = [m for m in pool if verdicts.get(m, {}).get("verdict", health.UP) == health.UP]
        healthy.add_metric([name], len(up))
        floor.add_metric([name], max(rot["min_members"], config["min_members"]))
        fail_open.add_metric([name], 1 if name in notes else 0)
        for lb in rot["members"]:
            member.add_metric([name, lb], 1 if lb in now_in else 0)

    verdict = _gauge(
        "loadbalancer_up", "The masters' verdict: 1 up, 0 down (by quorum).", ["loadbalancer"]
    )
    drained = _gauge(
        "loadbalancer_drained", "1 while an operator drained the load balancer.", ["loadbalancer"]
    )
    in_rotation = _gauge(
        "loadbalancer_in_rotation",
        "1 when every rotation the load balancer belongs to hands it out.",
        ["loadbalancer"],
    )
    view = _gauge(
        "watcher_view",
        "1 for what a watcher says of a load balancer (state: up, down, flapping; stale: its "
        "last report is too old to count; none: never reported on it).",
        ["loadbalancer", "watcher", "state"],
    )
    flap = _gauge(
        "flap_hold",
        "1 while a watcher holds the load balancer down because it flaps.",
        ["loadbalancer", "watcher"],
    )
    for lb in sorted(config["loadbalancers"]):
        v = verdicts.get(lb, {}).get("verdict", health.UP)
        verdict.add_metric([lb], 1 if v == health.UP else 0)
        drained.add_metric([lb], 1 if lb in drains else 0)
        mine = [n for n, r in config["rotations"].items() if lb in r["members"]]
        in_rotation.add_metric([lb], 1 if all(lb in members.get(n, []) for n in mine) else 0)
        for w in config["watchers"]:
            s = _view_state(state["views"].get(w), lb, w in fresh)
            view.add_metric([lb, w, s], 1)
            flap.add_metric([lb, w], 1 if s == "flapping" else 0)

    last_report = _gauge(
        "watcher_last_report_timestamp_seconds",
        "When this master last accepted a report of the watcher (never: when the exporter started).",
        ["watcher"],
    )
    for w in config["watchers"]:
        last_report.add_metric([w], state["views"].get(w, {}).get("received", started))
    beat = _gauge("watcher_heartbeat_seconds", "Seconds between a watcher's full-state reports.")
    beat.add_metric([], heartbeat)

    served = _gauge(
        "nameserver_rotation_version",
        "The newest rotation version the nameserver holds (its watcher report or its last apply).",
        ["nameserver"],
    )
    for ns in config["nameservers"]:
        held = (state["views"].get(ns, {}).get("rotation") or {}).get("version", 0)
        served.add_metric([ns], max(held, applied.get(ns, 0)))

    last_change = _gauge(
        "rotation_last_change_timestamp_seconds", "When a rotation last changed (0: never)."
    )
    last_change.add_metric([], (state.get("last_change") or {}).get("at", 0))
    return [
        version,
        count,
        member,
        configured,
        healthy,
        floor,
        fail_open,
        verdict,
        drained,
        in_rotation,
        view,
        flap,
        last_report,
        beat,
        served,
        last_change,
    ]


def _epoch(stamp):
    """A push record's ``2026-01-31T12:00:00Z`` as seconds since the epoch (0 when absent)."""
    if not stamp:
        return 0
    try:
        return (
            datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
            .replace(tzinfo=datetime.UTC)
            .timestamp()
        )
    except (TypeError, ValueError):
        return 0


def push_families(record):
    """The pushes' metrics from this master's push record (``svnpillar.json``; ``{}``: none)."""
    live = _gauge("pillar_live_revision", "The pillar revision this master serves (0: none).")
    live.add_metric([], (record.get("live") or {}).get("revision") or 0)
    push = record.get("last_push") or {}
    revision = _gauge("push_last_revision", "The revision of the last push from this master.")
    revision.add_metric([], push.get("revision") or 0)
    when = _gauge("push_last_timestamp_seconds", "When the last push from this master started.")
    when.add_metric([], _epoch(push.get("time")))
    ok = _gauge(
        "push_last_success",
        "1 when the last push from this master was applied everywhere (or tested cleanly), 0 when "
        "it was refused or failed; absent before the first push.",
    )
    result = _gauge(
        "push_last_result", "1 for the outcome of the last push from this master.", ["outcome"]
    )
    if push:
        ok.add_metric([], 1 if push.get("outcome") in PUSH_OK else 0)
        result.add_metric([str(push.get("outcome"))], 1)
    sync = record.get("last_sync") or {}
    synced = _gauge("sync_last_timestamp_seconds", "When this master last ran svnpillar.sync.")
    synced.add_metric([], _epoch(sync.get("time")))
    return [live, revision, when, ok, result, synced]


def tls_families(certificates):
    """The certificates live on this master: ``{service: certstate.certificate_info or None}``
    (None: the service has no certificate yet)."""
    not_after = _gauge(
        "tls_certificate_not_after_seconds",
        "When the certificate of a service, live on this master, expires (seconds since the epoch).",
        ["service"],
    )
    missing = _gauge(
        "tls_certificate_missing",
        "1 for a service of paphosting:acme without a certificate on this master.",
        ["service"],
    )
    for service, info in sorted(certificates.items()):
        if info is None:
            missing.add_metric([service], 1)
        else:
            not_after.add_metric([service], info["not_after"])
    return [not_after, missing]


class Observer:
    """What the master's event bus tells, kept as Prometheus counters and histograms.

    Feed every event to :meth:`event`; register :attr:`registry`'s metrics with the exporter.
    ``drift_path`` keeps each minion's last drift run across restarts.
    """

    def __init__(self, drift_path=None, nameservers=(), now=None):
        self.started = time.time() if now is None else now
        self.registry = CollectorRegistry(auto_describe=True)
        self.nameservers = set(nameservers)
        self._lock = threading.Lock()
        self._pending = {}  # jid -> the change event's times
        self._applied = {}
        self._drift_path = drift_path
        self._drift_last = self._load_drift()
        r = self.registry
        self.decisions = Counter(
            f"{PREFIX}_rotation_decisions",
            "Rotation changes this master decided, by cause (report, drain, restore).",
            ["cause"],
            registry=r,
        )
        self.detect_to_decide = Histogram(
            f"{PREFIX}_failover_detection_to_decision_seconds",
            "From the watcher's report that tipped the verdict to this master's decision.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decide_to_apply = Histogram(
            f"{PREFIX}_failover_decision_to_applied_seconds",
            "From this master's decision to a nameserver's rotation.apply return.",
            ["nameserver"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.detect_to_apply = Histogram(
            f"{PREFIX}_failover_detection_to_applied_seconds",
            "From the watcher's report to a nameserver's rotation.apply return.",
            ["nameserver"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.refused = Counter(
            f"{PREFIX}_rotation_refused_reports",
            "Health reports this master refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.apply_failures = Counter(
            f"{PREFIX}_rotation_apply_failures",
            "rotation.apply jobs of this master's decisions that failed on a minion.",
            ["minion"],
            registry=r,
        )
        self.drift_runs = Counter(
            f"{PREFIX}_drift_runs",
            "Scheduled drift-correction highstates that returned to this master.",
            ["minion"],
            registry=r,
        )
        self.drift_changes = Counter(
            f"{PREFIX}_drift_changes",
            "States a drift-correction highstate had to change (drift found).",
            ["minion"],
            registry=r,
        )
        self.drift_failures = Counter(
            f"{PREFIX}_drift_failed_states",
            "States that failed in a drift-correction highstate.",
            ["minion"],
            registry=r,
        )

    # --- persistence of the drift runs' times -------------------------------------------------

    def _load_drift(self):
        if not self._drift_path:
            return {}
        data = files.read_json(self._drift_path, {}, dict)
        return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float))}

    def _save_drift(self):
        if self._drift_path:
            files.write_json(self._drift_path, self._drift_last, mode=0o644)

    # --- events -----------------------------------------------------------------------------

    def event(self, tag, data, now=None):
        """Take one event of the master's bus (``tag``, its ``data``) received at ``now``."""
        now = time.time() if now is None else now
        data = data if isinstance(data, dict) else {}
        if tag == CHANGED_TAG:
            self._changed(data, now)
        elif tag == REJECTED_TAG:
            # A flood is fired once a second per kind and sender, with how many it stands for.
            count = data.get("count", 1)
            count = count if isinstance(count, int) and 1 <= count <= 1_000_000 else 1
            self.refused.labels(refusal_reason(data.get("reason"))).inc(count)
        else:
            m = JOB_RETURN_RE.match(tag)
            if m:
                self._job_return(m["jid"], m["minion"], data, now)

    def _changed(self, data, now):
        cause = str(data.get("cause", "")).split(" ")[0] or "unknown"
        cause = cause if cause in ("drain", "restore") else "report"
        self.decisions.labels(cause).inc()
        at = data.get("at") if isinstance(data.get("at"), (int, float)) else now
        detected = data.get("detected")
        detected = detected if isinstance(detected, (int, float)) else None
        if detected is not None:
            self.detect_to_decide.observe(max(0.0, at - detected))
        if data.get("jid"):
            with self._lock:
                self._pending[str(data["jid"])] = {"at": at, "detected": detected}
                while len(self._pending) > PENDING_LIMIT:
                    self._pending.pop(next(iter(self._pending)))

    def _job_return(self, jid, minion, data, now):
        fun = data.get("fun")
        ret = data.get("return")
        ok = data.get("success", True) and data.get("retcode", 0) in (0, None)
        if fun == "rotation.apply":
            with self._lock:
                times = self._pending.get(jid)
            if not ok:
                if times is not None:
                    self.apply_failures.labels(minion).inc()
                return
            version = ((ret or {}).get("held") or {}).get("version") if isinstance(ret, dict) else 0
            if minion in self.nameservers or not self.nameservers:
                with self._lock:
                    self._applied[minion] = max(self._applied.get(minion, 0), version or 0)
                if times is not None:
                    self.decide_to_apply.labels(minion).observe(max(0.0, now - times["at"]))
                    if times["detected"] is not None:
                        self.detect_to_apply.labels(minion).observe(
                            max(0.0, now - times["detected"])
                        )
        elif fun == "drift.highstate" and isinstance(ret, dict) and not ret.get("skipped"):
            self.drift_runs.labels(minion).inc()
            self.drift_changes.labels(minion).inc(len(ret.get("changed") or []))
            self.drift_failures.labels(minion).inc(len(ret.get("failed") or []))
            with self._lock:
                self._drift_last[minion] = now
                self._save_drift()

    # --- what the collector reads -----------------------------------------------------------

    def applied(self):
        """``{nameserver: the newest rotation version its rotation.apply returned}``."""
        with self._lock:
            return dict(self._applied)

    def drift_families(self, minions, interval):
        """Each minion's last drift run (0: none seen) and the drift schedule's interval."""
        last = _gauge(
            "drift_last_run_timestamp_seconds",
            "When the minion's last scheduled drift-correction highstate returned (never seen: when "
            "the exporter started).",
            ["minion"],
        )
        with self._lock:
            known = dict(self._drift_last)
        for m in sorted(set(minions) | set(known)):
            last.add_metric([m], known.get(m, self.started))
        every = _gauge(
            "drift_interval_seconds", "Seconds between scheduled drift-correction highstates."
        )
        every.add_metric([], interval)
        return [last, every]


class MasterCollector:
    """A Prometheus collector of everything above, read at every scrape.

    ``sources()`` returns ``{"state", "config", "heartbeat", "record", "minions",
    "drift_interval", "certificates"}`` (see :func:`rotation_families`, :func:`push_families`,
    :func:`tls_families`,
    :meth:`Observer.drift_families`), or None while the master knows no platform yet.
    """

    def __init__(self, observer, sources):
        self.observer = observer
        self.sources = sources

    def describe(self):
        return []

    def collect(self):
        loaded = _gauge("master_platform_loaded", "1 when the exporter knows the platform pillar.")
        src = self.sources()
        loaded.add_metric([], 1 if src else 0)
        yield loaded
        if src:
            yield from rotation_families(
                src["state"],
                src["config"],
                time.time(),
                src["heartbeat"],
                self.observer.applied(),
                self.observer.started,
            )
            yield from push_families(src["record"])
            yield from tls_families(src.get("certificates") or {})
            yield from self.observer.drift_families(src["minions"], src["drift_interval"])
        yield from self.observer.registry.collect()


# Per role: the scrape job, and the target label that names the server (the metrics' own labels
# never use it: haproxy's have "server" for a backend server, the masters' "loadbalancer").
JOBS = {
    "loadbalancers": ("paphosting-loadbalancers", "loadbalancer"),
    "nameservers": ("paphosting-nameservers", "nameserver"),
    "masters": ("paphosting-masters", "master"),
}


def scrape_configs(platform):
    """Prometheus's ``scrape_configs`` for every exporter of ``paphosting:metrics``: one job per
    role, each target labelled with its server's name (:data:`JOBS`)."""
    metrics = platform.metrics or {}
    interval = f"{metrics.get('scrape_interval', 15.0):g}s"
    out = []
    for role, (job, label) in JOBS.items():
        listeners = metrics.get(role) or {}
        if not listeners:
            continue
        out.append(
            {
                "job_name": job,
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "static_configs": [
                    {
                        "targets": [f"{listener.address}:{listener.port}"],
                        "labels": {label: name},
                    }
                    for name, listener in sorted(listeners.items())
                ],
            }
        )
    return out
