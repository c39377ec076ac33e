"""Render-and-validate measurements: the haproxy config and the zones of a synthetic platform.

:func:`measure` runs in a fresh process (``scripts/bench.py --render-worker``) so that its peak
memory is its own: it builds the synthetic pillar, then times, with the project's own functions,

- ``parse``: :func:`paphosting.model.parse` (schema and validation of the whole platform);
- ``haproxy_render`` and ``haproxy_check``: one load balancer's haproxy.cfg and ``haproxy -c``;
- ``zone_render`` and ``zone_check_<server>``: every zone, and each of the three servers' own
  zone checkers (``named-checkzone``, ``nsd-checkzone``, ``kzonecheck``) on it.

``seconds`` is the sum: what one load balancer's highstate and one zone on every kind of
nameserver need, from the pillar to validated files. The peak memory is the process's maximum
resident set (``ru_maxrss``); the checkers' own peaks are measured separately by re-running them
from a small spawner process (a child of this big process would inherit its high-water mark).
"""

import gc
import os
import resource
import subprocess
import sys
import tempfile
import time

from harness import synthetic
from paphosting import dnsserver, haproxy, model, zone

SERVERS = ("bind", "nsd", "knot")
SERIAL = 2025010100
# Runs a command and prints its peak RSS (kB): the spawner itself is a bare interpreter (~10 MB).
SPAWNER = (
    "import resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def _mb(kb):
    return round(kb / 1024, 1)


def peak_of(argv):
    """Peak resident memory (MB) of ``argv`` run from a bare interpreter; raises on failure."""
    out = subprocess.run(
        [sys.executable, "-S", "-c", SPAWNER, *argv], capture_output=True, text=True, check=True
    )
    code, kb = out.stdout.split()
    if code != "0":
        raise RuntimeError(f"{' '.join(argv)} failed (exit status {code})")
    return _mb(int(kb))


def _checker_argv(kind, zone_name, path):
    return {
        "bind": [dnsserver.binary("named-checkzone"), zone_name, path],
        "nsd": [dnsserver.binary("nsd-checkzone"), zone_name, path],
        "knot": [dnsserver.binary("kzonecheck"), "-o", zone_name, path],
    }[kind]


def _record_count(text):
    return sum(1 for line in text.splitlines() if line and line[0] not in ";$")


def measure(services, records):
    """Time and memory of render + validate for a platform of ``services`` services and ``records``
    extra zone records; a JSON-able dict (see the module docstring)."""
    pillar = synthetic.platform(services, records)
    # Rendered, never run: sized for a production load balancer's limit, not this machine's
    # (10,000 services with three servers each need more descriptors than a container allows).
    pillar.setdefault("haproxy", {})["fd_limit"] = 1048576
    gc.collect()
    t = {}
    clock = time.perf_counter
    start = clock()
    platform = model.parse(pillar)
    t["parse"] = clock() - start
    lb = sorted(platform.loadbalancers)[0]
    mark = clock()
    cfg = haproxy.render(platform, lb)
    t["haproxy_render"] = clock() - mark
    mark = clock()
    haproxy.check_text(cfg)
    t["haproxy_check"] = clock() - mark
    by_kind = {}
    for ns in sorted(platform.nameservers.values(), key=lambda n: n.name):
        by_kind.setdefault(ns.server, ns)
    texts = {}
    t["zone_render"] = 0.0
    for kind in SERVERS:
        t[f"zone_check_{kind}"] = 0.0
    for zname in sorted(platform.zones):
        mark = clock()
        texts[zname] = zone.render(platform, zname, SERIAL)
        t["zone_render"] += clock() - mark
        for kind in SERVERS:
            mark = clock()
            dnsserver.check_zone_text(by_kind[kind], zname, texts[zname])
            t[f"zone_check_{kind}"] += clock() - mark
    seconds = clock() - start
    python_peak = _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    # The checkers' own peaks, outside the timed part.
    peaks = {}
    with tempfile.TemporaryDirectory(prefix="pap-bench-") as d:
        cfg_path = os.path.join(d, "haproxy.cfg")
        with open(cfg_path, "w", encoding="utf-8") as fh:
            fh.write(cfg)
        peaks["haproxy"] = peak_of([haproxy.binary(), "-c", "-dW", "-f", cfg_path])
        for zname, text in texts.items():
            path = os.path.join(d, f"{zname}.zone")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
            for kind in SERVERS:
                peaks[kind] = max(peaks.get(kind, 0.0), peak_of(_checker_argv(kind, zname, path)))
    return {
        "services": services,
        "records": sum(_record_count(text) for text in texts.values()),
        "seconds": round(seconds, 3),
        "peak_mb": max(python_peak, *peaks.values()),
        "python_peak_mb": python_peak,
        "checker_peak_mb": peaks,
        "parts_s": {k: round(v, 3) for k, v in t.items()},
        "haproxy_lines": cfg.count("\n"),
        "load_balancer": lb,
    }
