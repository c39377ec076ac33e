"""Health of the load balancers as one watcher sees it, and the signed reports it sends.

A watcher (a nameserver by default) probes every load balancer's health URL. Each probe result
goes through a :class:`Tracker`, a small state machine:

* ``unknown`` until ``fall`` consecutive failures (``down``) or ``rise`` consecutive successes
  (``up``); then ``up``/``down`` switch after ``fall`` failures / ``rise`` successes in a row;
* flap damping: more than ``flap_max_transitions`` up/down switches within ``flap_window``
  seconds puts the load balancer on hold; a held load balancer is reported ``down`` (with
  ``flapping: true``) until it has been ``up`` without a switch for ``flap_hold`` seconds.

Damping lives here, in every watcher, so the masters decide from the watchers' latest views alone:
the decision is then a function of those views, the same on both masters whatever order the
events arrive in, and a master that missed events converges from the next heartbeats.

A report is the watcher's complete view, serialised as canonical JSON text (:func:`report_text`)
and signed with the watcher's own Salt minion key (:func:`sign`); the masters verify it against
the key they accepted for that minion (:func:`verify`). The text travels as is, so nothing has to
be re-serialised before verifying.
"""

import base64
import http.client
import json
import math
import urllib.parse
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from paphosting.errors import PapError

UP = "up"
DOWN = "down"
UNKNOWN = "unknown"
STATES = (UP, DOWN, UNKNOWN)

REPORT_FORMAT = 1
TRANSITION = "transition"
HEARTBEAT = "heartbeat"
KINDS = (TRANSITION, HEARTBEAT)

# Longest probe detail kept in a report (an error message or an HTTP status line).
DETAIL_MAX = 200


class BadReport(PapError):
    """A report that is not well-formed (before any question of who sent it)."""


@dataclass(frozen=True)
class Settings:
    """How one watcher turns probe results into a view. Defaults are the model's."""

    fall: int = 3
    rise: int = 2
    flap_window: float = 300.0
    flap_max_transitions: int = 4
    flap_hold: float = 120.0


@dataclass
class Tracker:
    """The state machine of one load balancer, as seen by one watcher."""

    settings: Settings = field(default_factory=Settings)
    raw: str = UNKNOWN
    held: bool = False
    since: float | None = None
    good: int = 0
    bad: int = 0
    detail: str = ""
    switches: deque = field(default_factory=deque)
    last_switch: float | None = None
    been_up: bool = False

    @property
    def state(self):
        """The state reported to the masters: ``down`` while held for flapping."""
        return DOWN if self.held else self.raw

    def observe(self, ok, detail, now):
        """Feed one probe result; return True when the reported state changed."""
        before = self.state
        self.detail = str(detail)[:DETAIL_MAX]
        if ok:
            self.good, self.bad = self.good + 1, 0
        else:
            self.good, self.bad = 0, self.bad + 1
        s = self.settings
        new = self.raw
        if ok and self.raw != UP and self.good >= s.rise:
            new = UP
        elif not ok and self.raw != DOWN and self.bad >= s.fall:
            new = DOWN
        if new != self.raw:
            # A flap is a switch of a load balancer that was up once: the first verdict, and a
            # first "up" after "down" since the watcher started (a platform coming up, its
            # load balancers after its watchers), are its start, not flapping.
            if self.been_up:
                self.switches.append(now)
                self.last_switch = now
            self.raw = new
            self.been_up = self.been_up or new == UP
        while self.switches and self.switches[0] < now - s.flap_window:
            self.switches.popleft()
        if len(self.switches) > s.flap_max_transitions:
            self.held = True
        if self.held and self.raw == UP and now - self.last_switch >= s.flap_hold:
            self.held = False
            self.switches.clear()
        if self.state != before:
            self.since = now
            return True
        return False

    def view(self):
        """This tracker's part of a report."""
        return {
            "state": self.state,
            "flapping": self.held,
            "since": self.since,
            "detail": self.detail,
        }


class Watch:
    """One watcher's trackers for all its targets, its report sequence and its heartbeat clock.

    ``targets`` maps a load balancer name to its health URL. :meth:`configure` may be called on
    every run: trackers of unchanged targets keep their state; a change of settings starts over.
    """

    def __init__(self, seq_start):
        self.targets = {}
        self.settings = None
        self.trackers = {}
        self.seq = int(seq_start)
        self.last_report = None
        self.last_probe = None

    def configure(self, targets, settings):
        if settings != self.settings:
            self.trackers = {}
            self.settings = settings
        for name in list(self.trackers):
            if self.targets.get(name) != targets.get(name):
                del self.trackers[name]
        self.targets = dict(targets)
        for name in self.targets:
            self.trackers.setdefault(name, Tracker(settings))

    def observe(self, results, now):
        """Feed ``{name: (ok, detail)}``; return the sorted names whose reported state changed."""
        return sorted(
            name
            for name, (ok, detail) in results.items()
            if self.trackers[name].observe(ok, detail, now)
        )

    def probe_due(self, now, interval):
        """True when a probe is due: at least 90% of ``interval`` after the previous one (the
        caller ticks at a fixed rate; the slack keeps a tick's jitter from skipping a probe)."""
        if self.last_probe is not None and now - self.last_probe < 0.9 * interval:
            return False
        self.last_probe = now
        return True

    def probe_all(self, timeout, probe_fn=None):
        """Probe every target concurrently, so one run lasts at most about ``timeout``."""
        probe_fn = probe_fn or probe
        if not self.targets:
            return {}
        names = sorted(self.targets)
        with ThreadPoolExecutor(
            max_workers=min(len(names), 32), thread_name_prefix="http_health"
        ) as pool:
            results = pool.map(lambda n: probe_fn(self.targets[n], timeout), names)
            return dict(zip(names, results, strict=True))

    def due(self, changed, now, heartbeat):
        """The kind of report to send now (transition or heartbeat), or None."""
        if changed:
            return TRANSITION
        if self.last_report is None or now - self.last_report >= heartbeat:
            return HEARTBEAT
        return None

    def report(self, watcher, kind, changed, now, rotation=None, serving=None, actions=None):
        """The next report text (bumps the sequence number and the heartbeat clock)."""
        self.seq += 1
        self.last_report = now
        views = {name: t.view() for name, t in self.trackers.items()}
        return report_text(watcher, self.seq, now, kind, views, changed, rotation, serving, actions)


# The watches of this process. Salt rebuilds the beacon loader (and its __context__) on every
# pillar refresh; the trackers, their flap history and the sequence number must outlive that.
_WATCHES = {}


def watch(key, now):
    """The process-wide :class:`Watch` for ``key``, created on first use.

    Its sequence numbers start at ``now`` in microseconds, so a restarted watcher still sends
    numbers higher than before (one report per microsecond is never reached).
    """
    if key not in _WATCHES:
        _WATCHES[key] = Watch(int(now * 1_000_000))
    return _WATCHES[key]


def probe(url, timeout):
    """GET ``url`` once; ``(ok, detail)``. A 2xx or 3xx status within ``timeout`` seconds is ok."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return False, f"unsupported URL {url!r}"
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn = cls(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(
            "GET", path, headers={"User-Agent": "paphosting-health", "Connection": "close"}
        )
        resp = conn.getresponse()
        resp.read(1024)
        return 200 <= resp.status < 400, f"HTTP {resp.status} {resp.reason}".strip()
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finally:
        conn.close()


def report_text(
    watcher, seq, ts, kind, views, changed=(), rotation=None, serving=None, actions=None
):
    """The canonical JSON text of one report (what is signed and sent).

    ``rotation`` is what the watcher currently holds of the published rotation, as
    ``{"version": N, "digest": "..."}`` (see :func:`paphosting.overlay.digest`), or None.
    ``serving``, on a nameserver's heartbeat: ``{"digest": "..."}``, the digest of the membership
    its own DNS server answers for the rotation names right now (the masters push the current
    rotation again to a nameserver that serves another); absent otherwise.
    ``actions``, on a heartbeat: ``{"digest": "..."}`` of the operator actions' journal the
    watcher keeps (:func:`paphosting.actions.digest`); a master whose journal differs has the two
    compared at once.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    body = {
        "format": REPORT_FORMAT,
        "watcher": watcher,
        "seq": int(seq),
        "ts": float(ts),
        "kind": kind,
        "changed": sorted(changed),
        "lbs": {name: views[name] for name in sorted(views)},
        "rotation": rotation,
    }
    if serving is not None:
        body["serving"] = serving
    if actions is not None:
        body["actions"] = actions
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_report(text):
    """Parse and check the shape of a report text; raise :class:`BadReport` when malformed."""
    if not isinstance(text, str) or not text:
        raise BadReport("the report is missing or not a string")
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise BadReport(f"the report is not JSON: {exc}") from exc
    if not isinstance(body, dict) or body.get("format") != REPORT_FORMAT:
        raise BadReport(f"the report is not a format {REPORT_FORMAT} report")
    if not isinstance(body.get("watcher"), str) or not body["watcher"]:
        raise BadReport("the report names no watcher")
    if not isinstance(body.get("seq"), int) or isinstance(body["seq"], bool) or body["seq"] < 0:
        raise BadReport("the report has no valid sequence number")
    if not _number(body.get("ts")):
        raise BadReport("the report has no valid timestamp")
    if body.get("kind") not in KINDS:
        raise BadReport(f"the report kind {body.get('kind')!r} is not one of {', '.join(KINDS)}")
    rot = body.get("rotation")
    if rot is not None and not (
        isinstance(rot, dict)
        and isinstance(rot.get("version"), int)
        and not isinstance(rot["version"], bool)
        and isinstance(rot.get("digest"), str)
    ):
        raise BadReport("the report's rotation is not {version, digest}")
    serving = body.get("serving")
    if serving is not None and not (
        isinstance(serving, dict) and isinstance(serving.get("digest"), str)
    ):
        raise BadReport("the report's serving is not {digest}")
    acts = body.get("actions")
    if acts is not None and not (isinstance(acts, dict) and isinstance(acts.get("digest"), str)):
        raise BadReport("the report's actions is not {digest}")
    lbs = body.get("lbs")
    if not isinstance(lbs, dict):
        raise BadReport("the report has no load balancer views")
    for name, view in lbs.items():
        if not isinstance(view, dict) or view.get("state") not in STATES:
            raise BadReport(f"the view of {name!r} has no valid state")
        if not isinstance(view.get("flapping"), bool):
            raise BadReport(f"the view of {name!r} has no valid flapping flag")
        if view.get("since") is not None and not _number(view["since"]):
            raise BadReport(f"the view of {name!r} has no valid 'since'")
        if not isinstance(view.get("detail", ""), str):
            raise BadReport(f"the view of {name!r} has no valid detail")
    changed = body.get("changed")
    if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
        raise BadReport("the report's 'changed' is not a list of names")
    return body


def sign(text, private_pem, passphrase=None):
    """Sign ``text`` with a PEM RSA private key (a Salt minion key); base64 signature."""
    key = serialization.load_pem_private_key(
        private_pem, password=passphrase.encode() if passphrase else None
    )
    signature = key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def verify(text, signature, public_pem):
    """True when ``signature`` (base64) is ``text`` signed by the key matching ``public_pem``."""
    if not isinstance(text, str) or not isinstance(signature, str):
        return False
    try:
        key = serialization.load_pem_public_key(public_pem)
        key.verify(
            base64.b64decode(signature, validate=True),
            text.encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def signature_problem(text, signature, public_key_for, minion, role=""):
    """Why ``signature`` does not show that ``minion`` signed the report ``text``, or None.

    ``public_key_for(minion)`` returns the PEM public key the master accepted for that minion
    id, or None; ``role`` ("watcher ") names what the minion is in the message about its key.
    """
    if not signature:
        return f"the report claiming to come from {minion!r} is not signed"
    pem = public_key_for(minion)
    if pem is None:
        return f"no accepted key for {role}{minion!r}"
    if not verify(text, signature, pem):
        return f"bad signature on the report claiming to come from {minion!r}"
    return None


def health_url(lb):
    """The URL a watcher probes for a :class:`paphosting.model.LoadBalancer`."""
    return f"http://{lb.address}:{lb.http_port}{lb.health_path}"


def beacon_config(platform, minion_id=None):
    """The ``http_health`` beacon configuration (a Salt beacon list) for the platform's watchers.

    On a watcher that is also a nameserver (``minion_id``), ``serves`` tells the beacon how to ask
    its own DNS server which load balancers it hands out for the rotation names (anti-entropy):
    ``{"server": "address@port", "names": [rotation names], "addresses": {address: lb id}}``.
    """
    h = platform.health
    extra = []
    ns = platform.nameservers.get(minion_id)
    if ns is not None:
        owners = {}
        for name, lb in sorted(platform.loadbalancers.items()):
            for address in (lb.address, lb.address6):
                if address:
                    owners[address] = name
        extra.append(
            {
                "serves": {
                    "server": f"{ns.address}@{ns.port}",
                    "names": sorted(platform.rotations),
                    "addresses": owners,
                }
            }
        )
    return extra + [
        {"probe_interval": h.interval},
        {"targets": {name: health_url(lb) for name, lb in sorted(platform.loadbalancers.items())}},
        {"probe_timeout": h.timeout},
        {"fall": h.fall},
        {"rise": h.rise},
        {"heartbeat": h.heartbeat},
        {
            "flap": {
                "window": h.flap_window,
                "max_transitions": h.flap_max_transitions,
                "hold": h.flap_hold,
            }
        },
    ]
