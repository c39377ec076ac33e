"""DNSSEC signing measurements: the zones of a synthetic platform, signed as a nameserver does.

:func:`measure` runs in a fresh process (``scripts/bench.py --signing-worker``). For the largest
zone of ``synthetic.platform(services, records)`` it times, with the project's own functions:

- ``sign_full_s``: signing the rendered zone from nothing (:func:`paphosting.dnssec.sign`, NSEC);
- ``verify_s``: ``dnssec-verify`` on the signed file (what every full signing passes before it is
  written);
- ``failover_unsigned_s`` / ``failover_signed_s``: what a nameserver computes for a failover of
  that zone (one load balancer out of its rotation): the plan (:func:`paphosting.zone.plan`)
  alone for the unsigned zone; for the signed one the plan on the stripped live text, the
  re-signing that reuses every unchanged RRset's signature, and the Python validation of the new
  signatures (:func:`paphosting.dnssec.verify_new`). Writing, reloading and the servers' own
  loading are the same for both and measured by the failover part of the benchmark.
"""

import os
import subprocess
import tempfile
import time

from harness import synthetic
from paphosting import dnssec, model, zone

SERIAL = 2025010100


def measure(services, records):
    pillar = synthetic.platform(services, records)
    # As harness/render.py: a production load balancer's limit, never run here.
    pillar.setdefault("haproxy", {})["fd_limit"] = 1048576
    platform = model.parse(pillar)
    renderer = zone.Renderer(platform)
    texts = {z: renderer.render(z, SERIAL) for z in renderer.zone_names}
    name = max(texts, key=lambda z: texts[z].count("\n"))
    text = texts[name]
    now = dnssec.now_epoch()
    keyset = dnssec.initial_keyset(name, now - 86400)
    policy = dnssec.Policy()
    clock = time.perf_counter
    mark = clock()
    signed = dnssec.sign(text, name, keyset, now, policy)
    sign_full = clock() - mark
    with tempfile.TemporaryDirectory(prefix="pap-bench-sign-") as d:
        path = os.path.join(d, f"{name}.zone")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(signed.text)
        mark = clock()
        res = subprocess.run(
            dnssec.verify_command(name, path), capture_output=True, text=True, check=False
        )
        verify = clock() - mark
    if res.returncode != 0:
        raise RuntimeError(f"dnssec-verify rejected the signed {name}: {res.stdout}{res.stderr}")
    # A failover: the first rotation of this zone loses its first member.
    owners = renderer.address_owners.get(name, ())
    if not owners:
        raise RuntimeError(f"zone {name} holds no rotation name")
    rotation = owners[0][1]
    members = {rotation: list(platform.rotations[rotation].members[1:])}
    mark = clock()
    zone.plan(None, name, text, members=members, renderer=renderer)
    failover_unsigned = clock() - mark
    mark = clock()
    live = dnssec.unsigned_text(signed.text)
    plan = zone.plan(None, name, live, members=members, renderer=renderer)
    again = dnssec.sign(plan.text, name, keyset, now, policy, previous=signed.text)
    dnssec.verify_new(again, name, keyset, now)
    failover_signed = clock() - mark
    return {
        "services": services,
        "records": text.count("\n") - 3,
        "signed_records": signed.text.count("\n") - 4,
        "sign_full_s": round(sign_full, 3),
        "verify_s": round(verify, 3),
        "failover_unsigned_s": round(failover_unsigned, 4),
        "failover_signed_s": round(failover_signed, 4),
        "failover_signatures": len(again.made),
        "zone": name,
    }
