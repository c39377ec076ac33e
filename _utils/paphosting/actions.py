"""Operator actions that hold platform-wide: a drain, a restore, a manual failback.

An operator runs an action on one master (``salt-run rotation.drain ...``); the other master and
a master that was down at the time must come to the same state. The action is therefore a
*record*: a canonical JSON text (:func:`record_text`) signed with the masters' shared Salt key
(both masters hold the same ``master.pem``, docs/masters.md), so either master can verify a record
the other wrote, whoever carried it.

The masters keep a journal in their failover state: per *slot* (a load balancer for
drain/restore, a service for failback) the newest record, newest by ``(at, id)``
(:func:`newer`): the operator's last word wins on both masters, whatever order the records came
in, and an old record replayed later changes nothing. Applying a record is idempotent, so each
master may see it twice (both masters receive every event).

The records travel through the minions (see ``_runners/rotation.py``): the master that took the
action has the nameservers and watchers keep it (``rotation.keep_actions``) and fire it to every
master they are connected to; a master that was down learns every record it missed from their
journals: every heartbeat carries the digest of the watcher's journal (a master whose journal
differs compares at once), and ``rotation.sync_actions`` runs at its start and every 5 minutes.
"""

import hashlib
import json
import os
import re
import uuid

from paphosting import files, health
from paphosting.errors import PapError

FORMAT = 1
KINDS = ("drain", "restore", "failback")
# The event the minions fire to every master with a record (reactor/operator_action.sls).
TAG = "paphosting/operator/action"
MAX_TEXT = 4096
_SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class BadRecord(PapError):
    """A record that is malformed or not signed by the masters' key."""


def record_text(kind, target, master, at, reason="", force=False, nonce=None):
    """The canonical text of one operator action (what is signed and carried)."""
    body = {
        "format": FORMAT,
        "kind": kind,
        "target": target,
        "master": master,
        "at": round(float(at), 6),
        "id": nonce or uuid.uuid4().hex,
        "reason": str(reason or ""),
        "force": bool(force),
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    parse(text)  # never sign what would be refused
    return text


def parse(text):
    """The record of ``text``, checked field by field; :class:`BadRecord` naming the field."""
    if not isinstance(text, str) or not text:
        raise BadRecord("an operator action must be a JSON text")
    if len(text) > MAX_TEXT:
        raise BadRecord(f"an operator action is at most {MAX_TEXT} characters, got {len(text)}")
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise BadRecord(f"an operator action is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRecord("an operator action must be a JSON object")
    want = {"format", "kind", "target", "master", "at", "id", "reason", "force"}
    if set(body) != want:
        raise BadRecord(
            "an operator action has the fields "
            + ", ".join(sorted(want))
            + "; got "
            + ", ".join(sorted(map(str, body)))
        )
    if body["format"] != FORMAT:
        raise BadRecord(f"operator action format {body['format']!r}, this master reads {FORMAT}")
    if body["kind"] not in KINDS:
        raise BadRecord(f"operator action kind {body['kind']!r}: one of {', '.join(KINDS)}")
    # Imported here: the health beacon (in the minion's main process) reads journals through this
    # module and should not load the platform model.
    from paphosting.model import ID_RE

    target_re = _SERVICE_RE if body["kind"] == "failback" else ID_RE
    if not isinstance(body["target"], str) or not target_re.match(body["target"]):
        raise BadRecord(f"operator action target {body['target']!r} is not a valid name")
    if not isinstance(body["master"], str) or not ID_RE.match(body["master"]):
        raise BadRecord(f"operator action master {body['master']!r} is not a valid id")
    if isinstance(body["at"], bool) or not isinstance(body["at"], (int, float)) or body["at"] <= 0:
        raise BadRecord(f"operator action time {body['at']!r} is not a positive number")
    if not isinstance(body["id"], str) or not re.match(r"^[0-9a-f]{8,64}$", body["id"]):
        raise BadRecord(f"operator action id {body['id']!r} is not a hex string")
    if not isinstance(body["reason"], str) or len(body["reason"]) > 500:
        raise BadRecord("operator action reason must be a text of at most 500 characters")
    if not isinstance(body["force"], bool):
        raise BadRecord(f"operator action force {body['force']!r} is not true or false")
    return body


def slot(record):
    """Where a record is kept: one slot per load balancer (drain, restore) or service."""
    if record["kind"] == "failback":
        return f"failback:{record['target']}"
    return f"loadbalancer:{record['target']}"


def sign(text, private_pem):
    return health.sign(text, private_pem)


def verify(text, signature, public_pem):
    """The record of ``text`` when ``signature`` is the masters' key's; :class:`BadRecord`."""
    record = parse(text)
    if not signature or not isinstance(signature, str):
        raise BadRecord(f"the {record['kind']} of {record['target']} is not signed")
    if not health.verify(text, signature, public_pem):
        raise BadRecord(
            f"bad signature on the {record['kind']} of {record['target']} claiming to come from "
            f"{record['master']} (not the masters' key)"
        )
    return record


def verify_entry(entry, public_pem):
    """The record of a journal entry (``{"record": text, "sig": signature}``) whose signature is
    the masters' key's; :class:`BadRecord` otherwise."""
    if not isinstance(entry, dict):
        raise BadRecord("a journal entry must be a mapping of record and sig")
    return verify(entry.get("record"), entry.get("sig"), public_pem)


def _order(record):
    return (record["at"], record["id"])


def newer(journal, record):
    """True when ``record`` is newer than what ``journal`` holds in its slot."""
    held = journal.get(slot(record))
    return held is None or _order(record) > _order(parse(held["record"]))


def merge(journal, text, signature, record=None):
    """Keep ``text`` in ``journal`` (``{slot: {"record": text, "sig": signature}}``) when it is
    newer than the slot's record; True when kept. The signature must have been verified."""
    record = record or parse(text)
    if not newer(journal, record):
        return False
    journal[slot(record)] = {"record": text, "sig": signature}
    return True


def records(journal):
    """The parsed records of ``journal``, oldest first."""
    return sorted((parse(v["record"]) for v in journal.values()), key=_order)


def missing(journal, other):
    """The entries of ``journal`` that ``other`` lacks or holds older: ``{slot: entry}``."""
    out = {}
    for key, entry in journal.items():
        record = parse(entry["record"])
        if newer(other, record):
            out[key] = entry
    return out


def digest(journal):
    """A short digest of what ``journal`` holds (a watcher's heartbeat carries its journal's; a
    master whose journal differs has them compared at once, see ``rotation.report``)."""
    texts = sorted(e["record"] for e in journal.values() if isinstance(e, dict) and "record" in e)
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]


def journal_path(cachedir):
    """Where a minion keeps the journal it relays (``rotation.keep_actions``)."""
    return os.path.join(cachedir, "paphosting", "operator_actions.json")


def load_journal(path):
    """The journal at ``path`` (``{}`` when there is none); :class:`BadRecord` when unreadable
    or not a mapping."""
    return files.read_json(path, {}, dict, error=BadRecord, what="operator actions")
