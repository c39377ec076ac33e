"""
Certificates for every service through ACME DNS-01 on the platform's own nameservers.

Either master issues and renews; the certificate goes live the way every change does, through
Subversion and the validated push (docs/tls.md):

1. The master takes the issuance lock: ``svn lock`` on the ACME account key's file
   (``secrets/acme/account.asc``) in the repository both masters share, so the two never issue
   at once. A lock older than ``paphosting:acme:lock_timeout`` (a master that died mid-issuance)
   is taken over.
2. It reads the service's certificate at Subversion's HEAD: when the other master has just
   issued, there is nothing to do.
3. It orders a certificate from the CA (:mod:`paphosting.acmeclient`), sends the challenge TXT
   records to every nameserver (``acme_challenge.apply``), waits until every one of them serves
   them, lets the CA validate, and takes the records back.
4. It checks the certificate as every certificate is checked before going live
   (:func:`paphosting.tls.check`), encrypts it with its new key to the platform key
   (``secrets/tls/<service>.asc``) and commits it; then pushes the revision
   (``svnpillar.push``: validated, made live, applied to the load balancers). The other master
   follows with its ``svnpillar.sync``, so one certificate per service is live at any moment.

A CA or challenge failure keeps the current certificate, is recorded with the time of the next
try (doubling from ``retry:min`` to ``retry:max``) and fired as ``paphosting/tls/failed``; a new
certificate is fired as ``paphosting/tls/issued``. Events and logs carry fingerprints, never key
material. :func:`renew` runs on each master's schedule (``conf/master.d/svnpillar.conf``).
"""

import logging
import time

import salt.client
import salt.key
import salt.pillar
import salt.utils.event
import salt.utils.minions

from paphosting.fresh import drop_stale

drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
from paphosting import (
    acmeclient,
    certstate,
    challenges,
    dnsserver,
    platformcache,
    push,
    secrets,
    svn,
)
from paphosting import tls as ptls
from paphosting.errors import PapError

log = logging.getLogger(__name__)

__virtualname__ = "tls"

ISSUED_TAG = "paphosting/tls/issued"
FAILED_TAG = "paphosting/tls/failed"
ACCOUNT = "account"  # secrets/acme/account.asc: the ACME account key, and the issuance lock


def __virtual__():
    return __virtualname__


class _Context:
    """What one run needs: the Subversion client, the platform, the GPG home, the state path."""

    def __init__(self):
        self.conf = push.SvnConfig(__opts__)
        self.platform = _platform()
        self.acme = self.platform.acme
        if self.acme is None:
            raise PapError("pillar paphosting:acme is not set: no certificate is issued by ACME")
        self.gpghome = secrets.keydir(__opts__)
        self.state_path = certstate.state_path(__opts__["cachedir"])
        self.master = self.conf.master
        self.account_key = None

    def svn_path(self, kind, name):
        return f"{self.conf.path}/{secrets.relpath(kind, name)}"


def _platform():
    """The platform of the pillar this master serves, compiled for an accepted minion."""
    accepted = salt.key.get_key(__opts__).list_status("accepted").get("minions", [])
    opts = dict(__opts__, ext_pillar=[])
    for minion in sorted(accepted):
        _, grains, _ = salt.utils.minions.get_minion_data(minion, __opts__)
        pillar = salt.pillar.Pillar(
            opts, grains or {"fqdn": minion}, minion, "base"
        ).compile_pillar()
        if pillar.get("paphosting"):
            return platformcache.platform(pillar["paphosting"], __opts__["cachedir"])
    raise PapError("no accepted minion has a paphosting pillar on this master")


def _fire(data, tag):
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=False) as event:
        event.fire_event(data, tag)


def _bundle_at_head(ctx, service):
    """The decrypted bundle of ``service`` at Subversion's HEAD, or None."""
    armored = ctx.conf.client.cat(ctx.svn_path("tls", service))
    if armored is None:
        return None
    return secrets.decrypt(armored, ctx.gpghome, secrets.relpath("tls", service))


def _bundle_live(ctx, service):
    """The decrypted bundle of ``service`` in the revision live on this master, or None."""
    if ctx.conf.store.live_revision() is None:
        return None
    try:
        return secrets.read(ctx.conf.store.live, "tls", service, ctx.gpghome)
    except secrets.SecretError:
        return None


def _info(bundle):
    if bundle is None:
        return None
    try:
        return certstate.certificate_info(bundle)
    except PapError:
        return None


def _account_key(ctx):
    """The ACME account key from Subversion; made and committed on the first issuance."""
    if ctx.account_key is None:
        ctx.account_key = _read_account_key(ctx)
    return ctx.account_key


def _read_account_key(ctx):
    path = ctx.svn_path("acme", ACCOUNT)
    armored = ctx.conf.client.cat(path)
    if armored is None:
        head = ctx.conf.client.info().number
        key = acmeclient.new_key()
        try:
            ctx.conf.client.put(
                {path: secrets.encrypt(key, ctx.gpghome)},
                f"tls: the ACME account key {secrets.fingerprint(key)} (made by {ctx.master})",
                base=head,
            )
            return key
        except PapError:
            armored = ctx.conf.client.cat(path)  # the other master made it meanwhile
            if armored is None:
                raise
    return secrets.decrypt(armored, ctx.gpghome, secrets.relpath("acme", ACCOUNT))


def _lock(ctx, wait):
    """Take the issuance lock (see the module docstring). Held by the other master: wait for it
    (``wait``) or fail; a lock older than ``lock_timeout`` (its master died) is taken over."""
    path = ctx.svn_path("acme", ACCOUNT)
    while True:
        comment = f"{ctx.master} {time.time():.3f} tls issuance"
        try:
            ctx.conf.client.lock(path, comment)
            return
        except svn.Locked:
            held = ctx.conf.client.lock_info(path)
        if held is None:
            continue  # released meanwhile
        parts = (held.get("comment") or "").split()
        try:
            age = time.time() - float(parts[1])
        except (IndexError, ValueError):
            age = float("inf")  # not a lock of ours: stale
        if age >= ctx.acme.lock_timeout:
            log.warning("tls: taking over the issuance lock %r (%.0f s old)", held["comment"], age)
            ctx.conf.client.lock(path, comment, steal=True)
            return
        if not wait:
            raise PapError(
                f"another issuance holds the lock: {held.get('comment')!r} ({age:.0f} s ago; "
                f"taken over after paphosting:acme:lock_timeout = {ctx.acme.lock_timeout} s)"
            )
        time.sleep(1.0)


def _unlock(ctx):
    try:
        ctx.conf.client.unlock(ctx.svn_path("acme", ACCOUNT))
    except PapError as exc:
        log.warning("tls: cannot release the issuance lock: %s", exc)


def _send(ctx, sent):
    """``acme_challenge.apply`` of ``sent`` on every nameserver; raise naming those that failed."""
    targets = sorted(ctx.platform.nameservers)
    client = salt.client.get_local_client(__opts__["conf_file"], mopts=__opts__)
    try:
        ret = client.cmd(
            targets,
            "acme_challenge.apply",
            [sent],
            tgt_type="list",
            timeout=ctx.acme.propagation_timeout,
            full_return=True,
        )
    finally:
        client.destroy()
    failed = []
    for ns in targets:
        got = ret.get(ns)
        if not isinstance(got, dict) or got.get("retcode") or not isinstance(got.get("ret"), dict):
            failed.append(f"{ns}: {got.get('ret') if isinstance(got, dict) else 'no answer'}")
    if failed:
        raise PapError("the challenge records did not reach every nameserver: " + "; ".join(failed))


def _served_everywhere(ctx, records):
    """The nameservers that do not serve every record of ``records`` yet (empty: all do)."""
    lagging = []
    owners = sorted(records)
    for ns in sorted(ctx.platform.nameservers.values(), key=lambda n: n.name):
        answers = dnsserver.query_many(ns, owners, "TXT", timeout=1.0, tries=1)
        for owner in owners:
            resp = answers.get(owner)
            have = set()
            for rrset in resp.answer if resp is not None else ():
                for rd in rrset:
                    have.update(s.decode() for s in rd.strings)
            if not set(records[owner]) <= have:
                lagging.append(f"{ns.name} ({owner})")
                break
    return lagging


def _publish(ctx, records):
    """Send ``records`` to every nameserver and wait until every one serves them."""
    _send(ctx, challenges.value(records, ttl_seconds=ctx.acme.lock_timeout))
    deadline = time.monotonic() + ctx.acme.propagation_timeout
    while True:
        lagging = _served_everywhere(ctx, records)
        if not lagging:
            return
        if time.monotonic() > deadline:
            raise PapError(
                f"not every nameserver serves the challenge records after "
                f"{ctx.acme.propagation_timeout} s: {', '.join(lagging)}"
            )
        time.sleep(0.2)


def _withdraw(ctx):
    try:
        _send(ctx, challenges.value({}, ttl_seconds=0))
    except PapError as exc:
        # They expire on their own (lock_timeout): the next apply drops them.
        log.warning("tls: the challenge records were not taken back everywhere: %s", exc)


def _issue_one(ctx, service, force):
    """Issue ``service``'s certificate when it needs one (or ``force``); under the lock. Returns
    ``(committed, comment)``; raises on failure."""
    names = ctx.acme.services[service]
    current = _info(_bundle_at_head(ctx, service))
    why = (
        "forced" if force else certstate.need(names, current, time.time(), ctx.acme.renew_fraction)
    )
    if why is None:
        return False, f"current: {current['fingerprint']} until {_day(current['not_after'])}"
    log.info("tls: issuing a certificate for %s (%s): %s", service, ", ".join(names), why)
    ca = acmeclient.Ca(
        ctx.acme.directory, _account_key(ctx), email=ctx.acme.email, ca_bundle=ctx.acme.ca_bundle
    )
    key = acmeclient.new_key()
    chain = ca.issue(
        names,
        key,
        lambda records: _publish(ctx, records),
        lambda: _withdraw(ctx),
        timeout=ctx.acme.propagation_timeout + 60,
    )
    roots = ptls.load_roots(ctx.platform.tls.get("trusted_roots", ()))
    checked = ptls.check(ctx.platform.services[service], (chain, key), roots)
    rev = ctx.conf.client.put(
        {ctx.svn_path("tls", service): secrets.encrypt(checked.bundle, ctx.gpghome)},
        f"tls: {service} certificate {checked.fingerprint} from {checked.issuer} "
        f"({', '.join(checked.names)}; not after {checked.not_after:%Y-%m-%d}), issued by {ctx.master}",
    )
    return True, f"issued {checked.summary()} in r{rev} ({why})"


def _run(services, force, wait):
    try:
        ctx = _Context()
    except PapError as exc:
        return {"result": False, "comment": str(exc)}
    unknown = [s for s in services or () if s not in ctx.acme.services]
    if unknown:
        return {
            "result": False,
            "comment": f"not in pillar paphosting:acme:services: {', '.join(unknown)}",
        }
    wanted = sorted(services or ctx.acme.services)
    out, committed, ok = {}, False, True
    with certstate.locked(ctx.state_path):
        state = certstate.load(ctx.state_path)
        now = time.time()
        due = []
        for service in wanted:
            backoff = certstate.waiting(state["services"].get(service), now)
            live = None if force else _info(_bundle_live(ctx, service))
            if backoff and not force:
                out[service] = (
                    f"waiting {backoff:.0f} s after: {state['services'][service]['last_error']}"
                )
            elif live is not None and not certstate.need(
                ctx.acme.services[service], live, now, ctx.acme.renew_fraction
            ):
                # Current where this master serves it: no Subversion round trip (a hoster has
                # thousands of services; the schedule looks at them every hour).
                out[service] = f"current: {live['fingerprint']} until {_day(live['not_after'])}"
            else:
                due.append(service)
        if due:
            try:
                _account_key(ctx)
                _lock(ctx, wait)
            except PapError as exc:
                for service in due:
                    out[service] = f"not tried: {exc}"
                return {"result": False, "comment": _lines(out)}
            try:
                for service in due:
                    try:
                        made, comment = _issue_one(ctx, service, force)
                    except PapError as exc:
                        ok = False
                        entry = certstate.record(
                            state, service, time.time(), error=exc,
                            retry_min=ctx.acme.retry_min, retry_max=ctx.acme.retry_max,
                        )  # fmt: skip
                        log.error("tls: %s: %s (the current certificate stays)", service, exc)
                        _fire(
                            {"service": service, "error": str(exc), "master": ctx.master,
                             "next_try": entry["next_try"]},
                            FAILED_TAG,
                        )  # fmt: skip
                        out[service] = f"failed, the current certificate stays: {exc}"
                        continue
                    out[service] = comment
                    if made:
                        committed = True
                        info = _info(_bundle_at_head(ctx, service))
                        certstate.record(
                            state, service, time.time(), fingerprint=info["fingerprint"]
                        )
                        _fire(
                            {"service": service, "names": info["names"], "fingerprint":
                             info["fingerprint"], "not_after": info["not_after"],
                             "issuer": info["issuer"], "master": ctx.master},
                            ISSUED_TAG,
                        )  # fmt: skip
            finally:
                _unlock(ctx)
                certstate.save(ctx.state_path, state)
    # Certificates in Subversion that this master does not serve yet (just committed, or
    # committed by a master that died before its push) go live through the validated push.
    try:
        behind = committed or _behind(ctx)
    except PapError as exc:
        return {"result": False, "comment": _lines(dict(out, push=f"not checked: {exc}"))}
    if behind:
        pushed = __salt__["svnpillar.push"]()
        if isinstance(pushed, dict) and pushed.get("result") is False:
            ok = False
            out["push"] = pushed.get("comment")
        else:
            out["push"] = str(pushed).splitlines()[0]
    return {"result": ok, "comment": _lines(out)}


def _behind(ctx):
    """Whether Subversion holds certificates committed after the revision live here."""
    try:
        changed = ctx.conf.client.info(f"{ctx.conf.path}/{secrets.SECRETS_DIR}/tls").number
    except svn.NotFound:
        return False
    live = ctx.conf.store.live_revision()
    return live is None or changed > live


def _day(epoch):
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def _finish(ret):
    """The runner's return; ``salt-run`` exits non-zero on a failure."""
    if not ret["result"]:
        __context__["retcode"] = 1
        ret["retcode"] = 1
    return ret


def _lines(out):
    return "\n".join(f"{k}: {v}" for k, v in out.items())


def issue(service=None, force=False):
    """
    Issue certificates now: for ``service`` (default: every service of
    ``paphosting:acme:services``) when it needs one, or always with ``force=True`` (a forced
    renewal). Waits for the lock when the other master is issuing (fails after its
    ``lock_timeout``); ignores the retry backoff.

    service
        A service name, or a comma-separated list.
    force
        Issue even when the current certificate is good.

    CLI Example:

    .. code-block:: bash

        salt-run tls.issue
        salt-run tls.issue service=www force=True
    """
    services = [s.strip() for s in str(service).split(",") if s.strip()] if service else None
    return _finish(_run(services, bool(force), wait=True))


def renew():
    """
    Renew what needs it: every service without a certificate, whose names changed, or with
    less than ``paphosting:acme:renew_fraction`` (a third) of its certificate's lifetime left;
    a service that failed waits out its backoff. Scheduled on each master
    (``conf/master.d/svnpillar.conf``); either master alone suffices.

    CLI Example:

    .. code-block:: bash

        salt-run tls.renew
    """
    return _finish(_run(None, False, wait=False))


def status():
    """
    A table: per service, its names, the issuer, not-after and days left of the certificate
    live on this master, and this master's last attempt and last error.

    CLI Example:

    .. code-block:: bash

        salt-run tls.status
    """
    try:
        ctx = _Context()
    except PapError as exc:
        return f"tls.status: {exc}"
    infos = {s: _info(_bundle_live(ctx, s)) for s in ctx.acme.services}
    rows = certstate.status_rows(
        ctx.acme.services, infos, certstate.load(ctx.state_path), time.time()
    )
    return certstate.status_text(rows)


def show():
    """
    :func:`status` as data, for scripts (epoch seconds).

    CLI Example:

    .. code-block:: bash

        salt-run tls.show --out=json
    """
    ctx = _Context()
    infos = {s: _info(_bundle_live(ctx, s)) for s in ctx.acme.services}
    return certstate.status_rows(
        ctx.acme.services, infos, certstate.load(ctx.state_path), time.time()
    )
