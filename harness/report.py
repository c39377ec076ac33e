"""The shapes of ``build/demo/report.json`` and ``build/bench/results.json``, checked by script.

Both files may carry more fields than these; the ones listed here are promised (issue 7, docs/demo.md,
docs/bench.md). :func:`demo_problems` and :func:`bench_problems` return a list of sentences, empty
when the document has the promised shape. ``make demo`` and ``make bench`` check what they write
with them, and so can anyone::

    .venv/bin/python -m harness.report build/demo/report.json build/bench/results.json
"""

import json
import math
import sys

LATENCY_KEYS = ("trials", "p50_s", "p95_s", "floor_s")


def percentile(values, q):
    """The ``q`` quantile (0..1) of ``values``, interpolated between the closest ranks."""
    data = sorted(values)
    if not data:
        return 0.0
    pos = q * (len(data) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def _type_name(kind):
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }[kind]


def _is(value, kind):
    """JSON types: a bool is not a number, an int is a number, a number is finite."""
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    return isinstance(value, kind)


def _field(doc, key, kind, path, problems):
    """Check ``doc[key]`` is of ``kind``; return the value or None."""
    where = f"{path}.{key}" if path else key
    if not isinstance(doc, dict):
        problems.append(f"{path or 'the document'} must be a mapping")
        return None
    if key not in doc:
        problems.append(f"{where} is missing")
        return None
    value = doc[key]
    if not _is(value, kind):
        problems.append(f"{where} must be {_type_name(kind)}, got {value!r}")
        return None
    return value


def _rows(doc, key, fields, problems, required=True):
    rows = _field(doc, key, list, "", problems)
    if rows is None:
        return []
    if not rows and required:
        problems.append(f"{key} must not be empty")
    for i, row in enumerate(rows):
        for name, kind in fields:
            _field(row, name, kind, f"{key}[{i}]", problems)
    return rows


def demo_problems(doc):
    """What is wrong with a ``build/demo/report.json`` document (empty list: nothing).

    ``{"passed": bool, "steps": [{"name": str, "passed": bool, "detail": str}],
    "lb_failover_s": float, "detection_floor_s": float, "client_errors": int}``; ``passed`` must be
    true exactly when every step passed.
    """
    problems = []
    passed = _field(doc, "passed", bool, "", problems)
    steps = _rows(doc, "steps", (("name", str), ("passed", bool), ("detail", str)), problems)
    for key in ("lb_failover_s", "detection_floor_s"):
        value = _field(doc, key, float, "", problems)
        if value is not None and value < 0:
            problems.append(f"{key} must not be negative, got {value}")
    errors = _field(doc, "client_errors", int, "", problems)
    if errors is not None and errors < 0:
        problems.append(f"client_errors must not be negative, got {errors}")
    flags = [s.get("passed") for s in steps if isinstance(s, dict)]
    if (
        passed is not None
        and steps
        and all(isinstance(f, bool) for f in flags)
        and passed != all(flags)
    ):
        problems.append(
            f"passed is {passed} but {'every' if all(flags) else 'not every'} step passed"
        )
    return problems


def bench_problems(doc, complete=True):
    """What is wrong with a ``build/bench/results.json`` document (empty list: nothing).

    ``{"failover": {"trials": int, "p50_s": float, "p95_s": float, "floor_s": float},
    "recovery": {same keys}, "render": [{"services": int, "records": int, "seconds": float,
    "peak_mb": float}], "noop_highstate": [{"role": str, "services": int, "seconds": float,
    "floor_seconds": float}], "client_errors": {"backend_kill": int, "lb_kill": int}, "peers":
    {"trials": int, "systems": {"paphosting" | "gdnsd" | "pdns": {"failover": {same keys as
    failover}, "recovery": {same keys}}}}, "tls": see :func:`_tls`}``.
    ``complete``: the lists must not be empty (a run of some parts only may leave them so).
    """
    problems = []
    for key in ("failover", "recovery"):
        part = _field(doc, key, dict, "", problems)
        if part is None:
            continue
        _field(part, "trials", int, key, problems)
        for name in LATENCY_KEYS[1:]:
            _field(part, name, float, key, problems)
        if (
            _is(part.get("p50_s"), float)
            and _is(part.get("p95_s"), float)
            and part["p95_s"] < part["p50_s"]
        ):
            problems.append(f"{key}.p95_s ({part['p95_s']}) is below {key}.p50_s ({part['p50_s']})")
    _rows(
        doc,
        "render",
        (("services", int), ("records", int), ("seconds", float), ("peak_mb", float)),
        problems,
        complete,
    )
    _rows(
        doc,
        "noop_highstate",
        (("role", str), ("services", int), ("seconds", float), ("floor_seconds", float)),
        problems,
        complete,
    )
    errors = _field(doc, "client_errors", dict, "", problems)
    if errors is not None:
        for key in ("backend_kill", "lb_kill"):
            _field(errors, key, int, "client_errors", problems)
    if "peers" in doc or complete:
        _peers(doc, problems)
    if "scale" in doc or complete:
        _scale(doc, problems)
    if "faults" in doc or complete:
        _faults(doc, problems)
    if "dnssec" in doc or complete:
        _dnssec(doc, problems)
    if "tls" in doc or complete:
        _tls(doc, problems)
    return problems


FAULT_CLIENT_KEYS = (
    "requests",
    "failed",
    "p50_ms",
    "p99_ms",
    "baseline_p50_ms",
    "baseline_p99_ms",
    "added_p50_ms",
    "added_p99_ms",
)


def _faults(doc, problems):
    """``"faults": {"power_off_failover": {latency keys}, "kill_failover": {same},
    "connect_timeout_s": float, "window_s": float, "clients_per_kind": int, "clients":
    {<fault kind>: {"fault": str, "browser": {client keys, "baseline_p50_ms", "baseline_p99_ms",
    "added_p50_ms", "added_p99_ms"}, "one_address": {same}}}}``; at least one fault kind."""
    part = _field(doc, "faults", dict, "", problems)
    if part is None:
        return
    for key in ("power_off_failover", "kill_failover"):
        _latency(_field(part, key, dict, "faults", problems), f"faults.{key}", problems)
    _field(part, "connect_timeout_s", float, "faults", problems)
    _field(part, "window_s", float, "faults", problems)
    _field(part, "clients_per_kind", int, "faults", problems)
    clients = _field(part, "clients", dict, "faults", problems)
    if clients is None:
        return
    if not clients:
        problems.append("faults.clients needs at least one fault kind")
    for kind, row in clients.items():
        path = f"faults.clients.{kind}"
        if not isinstance(row, dict):
            problems.append(f"{path} is not a mapping")
            continue
        _field(row, "fault", str, path, problems)
        for who in ("browser", "one_address"):
            figures = _field(row, who, dict, path, problems)
            if figures is None:
                continue
            keys = FAULT_CLIENT_KEYS
            for key in keys:
                _field(
                    figures,
                    key,
                    int if key in ("requests", "failed") else float,
                    f"{path}.{who}",
                    problems,
                )


DNSSEC_ROW = (
    ("services", int),
    ("records", int),
    ("sign_full_s", float),
    ("verify_s", float),
    ("failover_unsigned_s", float),
    ("failover_signed_s", float),
    ("failover_signatures", int),
)


def _dnssec(doc, problems):
    """``"dnssec": {"signing": [{"services", "records", "sign_full_s", "verify_s",
    "failover_unsigned_s", "failover_signed_s", "failover_signatures"}]}``."""
    part = _field(doc, "dnssec", dict, "", problems)
    if part is None:
        return
    _rows(part, "signing", DNSSEC_ROW, problems, True)
    failover = part.get("failover")
    if failover is not None:
        # {"signed"|"unsigned": {"failover": summary, "recovery": summary}}
        if not isinstance(failover, dict):
            problems.append("dnssec.failover: expected a mapping")
            return
        for name, row in failover.items():
            for key in ("failover", "recovery"):
                got = row.get(key) if isinstance(row, dict) else None
                if not isinstance(got, dict) or not isinstance(got.get("p50_s"), float):
                    problems.append(f"dnssec.failover.{name}.{key}: expected a summary with p50_s")


def _tls(doc, problems):
    """``"tls": {"issue_to_every_lb_s": float, "renewals": [{"to_every_lb_s": float,
    "handshakes": int, "failed_handshakes": int}], "swap_failed_handshakes": int,
    "requests_per_s": {lb: {"http": float, "https": float, "ratio": float}}}``: the certificate
    figures of issue 13 (docs/bench.md)."""
    part = _field(doc, "tls", dict, "", problems)
    if part is None:
        return
    _field(part, "issue_to_every_lb_s", float, "tls", problems)
    failed = _field(part, "swap_failed_handshakes", int, "tls", problems)
    renewals = _field(part, "renewals", list, "tls", problems)
    if renewals is not None:
        if not renewals:
            problems.append("tls.renewals is empty")
        for i, row in enumerate(renewals):
            _field(row, "to_every_lb_s", float, f"tls.renewals[{i}]", problems)
            _field(row, "handshakes", int, f"tls.renewals[{i}]", problems)
            _field(row, "failed_handshakes", int, f"tls.renewals[{i}]", problems)
        total = sum(r.get("failed_handshakes", 0) for r in renewals if isinstance(r, dict))
        if failed is not None and all(isinstance(r, dict) for r in renewals) and total != failed:
            problems.append(
                f"tls.swap_failed_handshakes is {failed}, the renewals add up to {total}"
            )
    rates = _field(part, "requests_per_s", dict, "tls", problems)
    if rates is not None:
        if not rates:
            problems.append("tls.requests_per_s is empty")
        for lb, row in rates.items():
            for key in ("http", "https", "ratio"):
                _field(row, key, float, f"tls.requests_per_s.{lb}", problems)


def _latency(part, path, problems):
    if part is None:
        return
    for name in LATENCY_KEYS:
        _field(part, name, int if name == "trials" else float, path, problems)


def _scale(doc, problems):
    """``"scale": {"sizes": [{"zones": int, "failover": {server: {latency keys}}, "recovery":
    {same}, "failover_rotation_name": {latency keys}, "noop": {server: {"seconds", "floor_seconds"}},
    "push_validation": {"compile_s", "validate_s", "total_s"}}], "report_cpu": [{"services": int,
    "first_report_cpu_s": float, "report_cpu_p50_s": float}]}``."""
    part = _field(doc, "scale", dict, "", problems)
    if part is None:
        return
    rows = _field(part, "sizes", list, "scale", problems) or []
    if not rows:
        problems.append("scale.sizes is empty")
    for i, row in enumerate(rows):
        where = f"scale.sizes[{i}]"
        _field(row, "zones", int, where, problems)
        if "error" in row:  # the bench keeps the smaller sizes' figures and says why this failed
            problems.append(f"{where} ({row.get('zones')} zones) was not measured: {row['error']}")
            continue
        for key in ("failover", "recovery"):
            servers = _field(row, key, dict, where, problems) or {}
            for server in ("bind", "nsd", "knot"):
                _latency(
                    _field(servers, server, dict, f"{where}.{key}", problems),
                    f"{where}.{key}.{server}",
                    problems,
                )
        _latency(
            _field(row, "failover_rotation_name", dict, where, problems),
            f"{where}.failover_rotation_name",
            problems,
        )
        noop = _field(row, "noop", dict, where, problems) or {}
        for server, value in noop.items():
            for key in ("seconds", "floor_seconds"):
                _field(value, key, float, f"{where}.noop.{server}", problems)
        pv = _field(row, "push_validation", dict, where, problems)
        if pv is not None:
            for key in ("compile_s", "validate_s", "total_s"):
                _field(pv, key, float, f"{where}.push_validation", problems)
    for i, row in enumerate(_field(part, "report_cpu", list, "scale", problems) or []):
        if "error" in row:
            problems.append(f"scale.report_cpu was not measured: {row['error']}")
            continue
        _field(row, "services", int, f"scale.report_cpu[{i}]", problems)
        for key in ("first_report_cpu_s", "report_cpu_p50_s"):
            _field(row, key, float, f"scale.report_cpu[{i}]", problems)


PEER_SYSTEMS = ("paphosting", "gdnsd", "pdns")


def _peers(doc, problems):
    """``"peers": {"trials": int, "systems": {"paphosting" | "gdnsd" | "pdns": {"failover":
    {latency keys}, "recovery": {latency keys}}}}``: every system measured in the same trials."""
    part = _field(doc, "peers", dict, "", problems)
    if part is None:
        return
    trials = _field(part, "trials", int, "peers", problems)
    systems = _field(part, "systems", dict, "peers", problems) or {}
    for name in PEER_SYSTEMS:
        system = _field(systems, name, dict, "peers.systems", problems)
        for phase in ("failover", "recovery"):
            where = f"peers.systems.{name}"
            figures = _field(system, phase, dict, where, problems) if system else None
            if figures is None:
                continue
            got = _field(figures, "trials", int, f"{where}.{phase}", problems)
            for key in LATENCY_KEYS[1:]:
                _field(figures, key, float, f"{where}.{phase}", problems)
            if trials is not None and got is not None and got != trials:
                problems.append(f"{where}.{phase}.trials is {got}, not the {trials} trials run")


def check_file(path):
    """The problems of one JSON file, chosen by its name (``report.json`` or ``results.json``)."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        return [f"cannot read {path}: {exc}"]
    check = demo_problems if str(path).endswith("report.json") else bench_problems
    return check(doc)


def main(paths):
    status = 0
    for path in paths:
        problems = check_file(path)
        print(f"{path}: {'ok' if not problems else 'WRONG SHAPE'}")
        for p in problems:
            print(f"  - {p}")
        status |= bool(problems)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
