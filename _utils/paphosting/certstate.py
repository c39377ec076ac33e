"""The certificates' renewal: when a service needs a new one, what a master tried, the status table.

Pure functions over a small JSON state a master keeps in ``<cachedir>/paphosting/tls.json``:
``{"services": {name: {"last_attempt", "last_error", "failures", "next_try", "last_issued",
"fingerprint"}}}``. The certificate itself lives in Subversion (``secrets/tls/<service>.asc``);
this state only says what this master tried and when it may try again.
"""

import datetime
import os

from cryptography import x509

from paphosting import files, secrets
from paphosting.errors import PapError

STATE_FILE = "tls.json"


class CertInfoError(PapError):
    """A bundle whose certificate cannot be read."""


def certificate_info(chain_pem):
    """What the status shows of a certificate chain (its first certificate): ``names``,
    ``issuer``, ``not_before``, ``not_after`` (epoch seconds), ``fingerprint``, ``serial``."""
    try:
        cert = x509.load_pem_x509_certificates(chain_pem.encode())[0]
    except (ValueError, IndexError) as exc:
        raise CertInfoError(f"not a PEM certificate chain: {exc}") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    issuer = cert.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return {
        "names": sorted(names),
        "issuer": issuer[0].value if issuer else cert.issuer.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.timestamp(),
        "not_after": cert.not_valid_after_utc.timestamp(),
        "fingerprint": secrets.fingerprint(chain_pem),
        "serial": format(cert.serial_number, "x"),
    }


def state_path(cachedir):
    return os.path.join(cachedir, "paphosting", STATE_FILE)


def load(path):
    """The state at ``path`` (an empty one when there is none or it is unreadable)."""
    state = files.read_json(path, kind=dict)
    if state is None or not isinstance(state.get("services"), dict):
        state = {"services": {}}
    return state


def save(path, state):
    files.write_json(path, state, indent=1)


def locked(path):
    """Serialise this master's issuances (its scheduled renewal and an operator's ``tls.issue``)."""
    return files.locked(path + ".lock")


def backoff(failures, retry_min, retry_max):
    """Seconds to wait after ``failures`` consecutive failures: ``retry_min``, doubling, at most
    ``retry_max``."""
    if failures <= 0:
        return 0
    return min(retry_max, retry_min * 2 ** min(failures - 1, 30))


def record(state, service, now, error=None, fingerprint=None, retry_min=300, retry_max=21600):
    """Record an attempt for ``service`` at ``now``: a success (``fingerprint`` of the new
    certificate) clears the failures; a failure (``error``) schedules the next try with
    :func:`backoff`. Returns the service's entry."""
    entry = state["services"].setdefault(service, {})
    entry["last_attempt"] = now
    if error is None:
        entry.update(last_error=None, failures=0, next_try=None, last_issued=now)
        if fingerprint is not None:
            entry["fingerprint"] = fingerprint
    else:
        entry["failures"] = int(entry.get("failures") or 0) + 1
        entry["last_error"] = str(error)
        entry["next_try"] = now + backoff(entry["failures"], retry_min, retry_max)
    return entry


def need(names, info, now, fraction):
    """Why a service whose certificate should cover ``names`` needs a new one: a sentence, or None
    when the current one (``info``: :func:`certificate_info`, None when
    there is none) is good."""
    if info is None:
        return "it has no certificate yet"
    if sorted(names) != sorted(info["names"]):
        return f"its names changed (the certificate has {', '.join(info['names'])})"
    if info["not_after"] <= now:
        return "its certificate expired"
    lifetime = info["not_after"] - info["not_before"]
    left = info["not_after"] - now
    if left < fraction * lifetime:
        return f"less than {fraction:.0%} of its certificate's lifetime is left ({left / 86400:.1f} days)"
    return None


def waiting(entry, now):
    """Seconds until a failed service may be tried again (0: now)."""
    next_try = (entry or {}).get("next_try")
    return max(0.0, next_try - now) if next_try else 0.0


def _when(ts):
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def status_rows(services, infos, state, now):
    """One row per service of ``services`` (``{service: names}``): ``infos`` ``{service: info or
    None}`` of the certificates live on this master, ``state`` this master's attempts."""
    rows = []
    for name in sorted(services):
        info = infos.get(name)
        entry = state["services"].get(name) or {}
        error = entry.get("last_error")
        if error and entry.get("next_try"):
            error = f"{error} (retry at {_when(entry['next_try'])})"
        rows.append(
            {
                "service": name,
                "names": list(services[name]),
                "issuer": info["issuer"] if info else None,
                "not_after": info["not_after"] if info else None,
                "days_left": round((info["not_after"] - now) / 86400, 1) if info else None,
                "fingerprint": info["fingerprint"] if info else None,
                "last_attempt": entry.get("last_attempt"),
                "last_error": error,
            }
        )
    return rows


def status_text(rows):
    """The status table an operator reads."""
    head = (
        "SERVICE",
        "NAMES",
        "ISSUER",
        "NOT AFTER (UTC)",
        "DAYS LEFT",
        "LAST ATTEMPT (UTC)",
        "LAST ERROR",
    )
    table = [head]
    for r in rows:
        table.append(
            (
                r["service"],
                ",".join(r["names"]),
                r["issuer"] or "(none)",
                _when(r["not_after"]),
                "-" if r["days_left"] is None else f"{r['days_left']:.1f}",
                _when(r["last_attempt"]),
                r["last_error"] or "-",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in table
    ).rstrip()
