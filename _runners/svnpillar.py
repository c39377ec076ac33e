"""
The platform pillar from Subversion: push a validated revision, show what is live, keep the
masters in step.

The masters serve the pillar from ``<cachedir>/paphosting/pillar/live``, a symlink to the last
revision that passed validation. Nothing else ever becomes live. See ``docs/push.md``.

Master configuration (``conf/master.d/svnpillar.conf``):

.. code-block:: yaml

    paphosting_svn:
      url: svn://svn.paphosting.net/platform   # the repository
      path: pillar                             # the pillar tree (with its top.sls) in it
      username: salt-nl                        # optional: for marking revisions pushed
      password_file: /etc/salt/svn.password    # optional
      timeout: 10                              # seconds for an svn command
      keep: 5                                  # validated revisions kept in the cache
      apply_timeout: 300                       # seconds a minion may take for its highstate
      store: /var/cache/salt/master/paphosting # optional: where revisions live (<cachedir>/paphosting)
      name: nl                                 # optional: how this master signs its pushes (its id)
    pillar_roots:
      base: [/var/cache/salt/master/paphosting/pillar/live]
      paphosting_candidate: [/var/cache/salt/master/paphosting/pillar/candidate]
"""

import logging
import os
import shutil

import salt.cache
import salt.client
import salt.key
import salt.loader
import salt.utils.network
from salt.exceptions import SaltException

from paphosting import daemon, pillarcompile, svn
from paphosting import push as core
from paphosting.errors import PapError

log = logging.getLogger(__name__)

__virtualname__ = "svnpillar"


def __virtual__():
    if shutil.which("svn") is None:
        return (False, "svnpillar: the svn command line client is not installed")
    return __virtualname__


# The ``paphosting_svn`` master option, checked (shared with the ``tls`` runner).
_Config = core.SvnConfig


def _progress(message):
    """Log a step of a push (``salt-run -l info`` shows them as they happen)."""
    log.info("svnpillar: %s", message)


def _finish(ok, text):
    """The runner's return: the text, and a non-zero exit code for ``salt-run`` on failure."""
    if not ok:
        __context__["retcode"] = 1
        return {"result": False, "retcode": 1, "comment": text}
    return text


def _served(conf, test=False):
    """Refuse to push when this master does not serve the live (and candidate) tree."""
    roots = __opts__.get("pillar_roots") or {}
    problems = []
    want = {"base": conf.store.live}
    if test:
        want[core.CANDIDATE_ENV] = conf.store.candidate
    for env, path in want.items():
        got = [os.path.normpath(p) for p in roots.get(env, [])]
        if os.path.normpath(path) not in got:
            problems.append(f"pillar_roots:{env} must be [{path}] (it is {roots.get(env)})")
    if problems:
        raise PapError(
            "this master does not serve the pushed pillar: "
            + "; ".join(problems)
            + ". See conf/master.d/svnpillar.conf."
        )


# --- compiling a revision's pillars ----------------------------------------------------------


def _accepted():
    return list(salt.key.get_key(__opts__).list_status("accepted").get("minions", []))


def _grains(cache, minion):
    try:
        grains = cache.fetch("grains", minion)
    except Exception:  # pylint: disable=broad-except
        grains = None
    grains = dict(grains or {})
    grains.setdefault("id", minion)
    return grains


def _compile(tree, prefix):
    """Every minion's pillar compiled from ``tree`` (:func:`paphosting.pillarcompile.compile_tree`):
    the accepted minions and every server the pillar names, each with its cached grains."""
    cache = salt.cache.factory(__opts__)
    return pillarcompile.compile_tree(
        __opts__, tree, prefix, _accepted(), grains_of=lambda minion: _grains(cache, minion)
    )


def _validate(conf, revision, tree):
    compiled, sources, files, render_lines = _compile(tree, conf.path)
    return core.validate(
        revision.number,
        compiled,
        sources,
        prefix=conf.path,
        files=files,
        render_lines=render_lines,
    )


def _fetch(conf, revision):
    """Export ``revision`` into a staging directory (removed on failure)."""
    tree = conf.store.staging(revision.number)
    try:
        os.rmdir(tree)  # svn export wants to create it
        conf.client.export(conf.path, revision.number, tree)
    except BaseException:
        shutil.rmtree(tree, ignore_errors=True)
        raise
    return tree


def _go_live(conf, revision, tree, by):
    dest = conf.store.install(tree, revision.number)
    conf.store.make_live(revision.number)
    live = {
        "revision": revision.number,
        "author": revision.author,
        "date": revision.date,
        "message": revision.message,
        "since": core.now(),
        "by": by,
        "url": svn.join(conf.url, conf.path),
    }
    conf.store.update_record(live=live)
    removed = conf.store.prune(conf.keep)
    if removed:
        log.info("svnpillar: pruned revisions %s", ", ".join(f"r{n}" for n in removed))
    return dest


# --- applying to the fleet -------------------------------------------------------------------


def _published_here():
    """A function telling whether this master published a jid (its job cache has the job)."""
    cache = __opts__.get("master_job_cache", "local_cache")
    returners = salt.loader.returners(__opts__, {})

    def mine(jid):
        try:
            return bool(returners[f"{cache}.get_load"](jid))
        except Exception:  # noqa: BLE001 - an unreadable job is not known to be ours
            return False

    return mine


def _clear_orphans(client, minions, platform, timeout):
    """When no other master is reachable, end the state jobs on ``minions`` that this master did
    not publish (a master that died left them; they would hold the minions' state queue until
    their requests to it gave up, minutes); the report lines."""
    if platform is None:
        return []
    own = set(salt.utils.network.ip_addrs()) | set(salt.utils.network.ip_addrs6())
    own.add(str(__opts__.get("interface", "")))
    others = core.other_masters(platform, own)
    port = int(__opts__.get("ret_port", 4506))
    if not others or any(daemon.port_open(a, port, timeout=2.0) for a in others.values()):
        return []
    running = client.cmd(
        list(minions), "saltutil.running", tgt_type="list", timeout=min(timeout, 30)
    )
    lines = []
    for minion, jids in core.orphaned_state_jobs(running, _published_here()).items():
        for jid in jids:
            client.cmd(minion, "saltutil.term_job", [jid], timeout=min(timeout, 30))
        line = (
            f"{minion}: ended state job(s) {', '.join(jids)} left by a master that is not "
            f"reachable ({', '.join(sorted(others))})"
        )
        _progress(line)
        lines.append(line)
    return lines


def _apply(minions, test, timeout, pillarenv=None, platform=None):
    """``state.apply`` on ``minions``; ``({minion: Outcome}, report lines)``. ``platform``: the
    platform pushed, whose masters (``paphosting:masters``) tell which other masters there are."""
    if not minions:
        return {}, []
    kwarg = {"test": bool(test)}
    if pillarenv:
        kwarg["pillarenv"] = pillarenv
    client = salt.client.get_local_client(__opts__["conf_file"], mopts=__opts__)
    lines = []
    try:
        # A test run changes nothing, not even another master's jobs.
        lines = [] if test else _clear_orphans(client, minions, platform, timeout)
        # The minions load the project's modules only when synced (autoload_dynamic_modules:
        # False, conf/minion.d/paphosting.conf): bring them what this master serves first.
        # Onto disk, where the state run loads them (as Salt's autoload did: no pillar refresh).
        client.cmd(
            list(minions),
            "saltutil.sync_all",
            kwarg={"refresh": False},
            tgt_type="list",
            timeout=timeout,
        )
        ret = client.cmd(
            list(minions),
            "state.apply",
            kwarg=kwarg,
            tgt_type="list",
            timeout=timeout,
            full_return=True,
        )
    finally:
        client.destroy()
    return {m: core.state_outcome(m, ret.get(m), test=test) for m in minions}, lines


def _targets(validated):
    accepted = set(_accepted())
    return sorted(m for m in validated.minions if m in accepted)


def _fleet(conf, validated, test=False, pillarenv=None):
    """Apply in two waves, canary first; stop at the first wave that fails.

    Returns ``(ok, outcomes, lines)``: whether every minion applied cleanly, ``{minion:
    Outcome}``, and the report, wave by wave.
    """
    first, rest = core.canary(validated, _targets(validated))
    outcomes = {}
    lines = []
    for wave, minions in (("canary", first), ("rest", rest)):
        if not minions:
            continue
        if outcomes and not all(o.ok for o in outcomes.values()):
            lines.append(
                f"{wave}: NOT {'tested' if test else 'applied'}, the canary failed: {', '.join(minions)}"
            )
            continue
        _progress(f"{'testing' if test else 'applying'} on {wave}: {', '.join(minions)}")
        platform = next(iter(validated.platforms.values()), None)
        done, cleared = _apply(minions, test, conf.apply_timeout, pillarenv, platform)
        outcomes.update(done)
        lines.append(f"{wave}: {', '.join(minions)}")
        lines.extend(f"  {line}" for line in cleared)
        for minion in minions:
            lines.append(f"  {done[minion].line(test)}")
            _progress(done[minion].line(test))
    return all(o.ok for o in outcomes.values()), outcomes, lines


def _diffs(outcomes, max_lines=60):
    """What each minion's highstate would change, with the diffs (shortened)."""
    lines = []
    for minion in sorted(outcomes):
        for sid, comment, diff in outcomes[minion].changed:
            lines.append(f"{minion}: {sid}: {comment.splitlines()[0] if comment else ''}".rstrip())
            text = str(diff).splitlines() if diff else []
            lines += [f"    {ln}" for ln in text[:max_lines]]
            if len(text) > max_lines:
                lines.append(f"    ... ({len(text) - max_lines} more lines)")
    return lines


# --- the runner functions --------------------------------------------------------------------


def push(rev=None, test=False):
    """
    Validate a Subversion revision of the pillar, make it live on this master, mark it pushed in
    Subversion (so the other master follows) and apply it to the fleet: one load balancer and one
    nameserver first, then the rest, stopping at the first failure.

    rev
        The revision to push (default: the newest, HEAD). Pushing a revision older than the one
        already pushed is refused: to roll back, revert in Subversion and push the new revision.

    test
        Validate, then show per minion what the highstate would change with this revision
        (``state.apply test=True`` against the candidate), without making anything live.

    A revision that fails validation (schema, haproxy -c, the zone and server checkers) is
    refused with the file, pillar path and checker message; nothing changes anywhere.

    CLI Example:

    .. code-block:: bash

        salt-run svnpillar.push
        salt-run svnpillar.push rev=1234 test=True
    """
    test = bool(test)
    try:
        conf = _Config(__opts__)
        _served(conf, test)
        number = _revision_number(rev)
    except PapError as exc:
        return _finish(False, f"push failed: {exc}")
    store = conf.store
    record = {"time": core.now(), "master": conf.master, "revision": rev, "test": test}
    try:
        # A scheduled sync holds the lock for seconds: wait for it rather than fail.
        with store.lock(wait=60):
            live = store.live_revision()
            revision = conf.client.revision(conf.path, number)
            record["revision"] = revision.number
            _progress(f"revision {core.describe(revision)}")
            newer = conf.client.newest_pushed(conf.path, newer_than=revision.number)
            if newer is not None:
                raise PapError(
                    f"r{revision.number} is older than r{newer.number}, already pushed ({newer.pushed}). "
                    "To go back, revert the change in Subversion and push the new revision."
                )
            if live is not None and revision.number < live:
                raise PapError(f"r{revision.number} is older than r{live}, live on this master")
            tree = _fetch(conf, revision)
            try:
                validated = _validate(conf, revision, tree)
                _progress(
                    f"r{revision.number} is valid: {len(validated.minions)} minions, {len(validated.checked)} files checked"
                )
                if test:
                    return _push_test(conf, revision, tree, validated, record, live)
                try:
                    conf.client.mark_pushed(revision.number, f"{conf.master} {core.now()}")
                except svn.Denied as exc:
                    raise PapError(
                        f"{exc} (the repository needs the pre-revprop-change hook of docs/push.md, and this "
                        "master a Subversion account that may write: paphosting_svn:username/password_file)"
                    ) from None
                _go_live(conf, revision, tree, f"push from {conf.master}")
                tree = None
            finally:
                if tree is not None:
                    shutil.rmtree(tree, ignore_errors=True)
            _progress(f"r{revision.number} is live on {conf.master}")
    except core.Rejected as exc:
        text = core.refusal_text(exc.revision, exc.problems, store.live_revision())
        store.update_record(last_push=dict(record, outcome="refused", detail=text))
        return _finish(False, text)
    except svn.Unreachable as exc:
        text = (
            f"push failed: {exc}\nNothing was changed: the live pillar stays {_live_text(store)}."
        )
        store.update_record(last_push=dict(record, outcome="svn unreachable", detail=text))
        return _finish(False, text)
    except (PapError, OSError) as exc:
        text = (
            f"push failed: {exc}\nNothing was changed: the live pillar stays {_live_text(store)}."
        )
        store.update_record(last_push=dict(record, outcome="failed", detail=text))
        return _finish(False, text)

    try:
        ok, outcomes, report = _fleet(conf, validated)
    except SaltException as exc:
        ok, report = False, [f"applying to the fleet failed: {exc}"]
    lines = [f"r{revision.number} is live on {conf.master}: {core.describe(revision)}", *report]
    if not ok:
        lines.append(
            "The revision is live on the masters; fix the failure and push again (or revert in Subversion and push)."
        )
    return _done(store, record, ok, "applied" if ok else "apply failed", report, lines)


def _done(store, record, ok, outcome, report, lines):
    """Record the push's outcome as ``last_push`` and finish with its report."""
    text = "\n".join(lines)
    store.update_record(last_push=dict(record, outcome=outcome, minions=report, detail=text))
    return _finish(ok, text)


def _revision_number(rev):
    """``rev`` as given on the command line: None (HEAD) or a revision number."""
    if rev is None or str(rev).strip().upper() in ("", "HEAD"):
        return None
    try:
        number = int(str(rev).strip().lstrip("r"))
    except ValueError:
        raise PapError(f"rev={rev!r} is not a revision number (or HEAD)") from None
    if number < 1:
        raise PapError(f"rev={rev!r} is not a revision number (or HEAD)")
    return number


def _rev(number):
    return f"r{number}" if number is not None else "nothing"


def _live_text(store):
    live = store.live_revision()
    return f"r{live}" if live is not None else "as it was (nothing live yet)"


def _push_test(conf, revision, tree, validated, record, live):
    """Serve ``tree`` as the candidate environment and run the highstate in test mode."""
    store = conf.store
    core.prepare_candidate(tree)
    store.set_candidate(tree)
    try:
        ok, outcomes, report = _fleet(conf, validated, test=True, pillarenv=core.CANDIDATE_ENV)
    except SaltException as exc:
        ok, outcomes, report = False, {}, [f"running the highstate in test mode failed: {exc}"]
    finally:
        store.clear_candidate()
    lines = [
        f"test: r{revision.number} is valid: {core.describe(revision)}",
        f"Nothing was made live or applied (live stays {_rev(live)}). Per minion, the highstate would:",
        *report,
        *_diffs(outcomes),
    ]
    return _done(store, record, ok, "tested" if ok else "test failed", report, lines)


def sync():
    """
    Make the newest revision marked pushed in Subversion live on this master, if it is newer
    than the live one (after validating it). Never goes back to an older revision. Meant for
    the master's own ``schedule`` (see ``conf/master.d/svnpillar.conf``), so that a master that
    was down or missed a push from the other master converges without anyone acting.

    Subversion unreachable: logs it and keeps the live revision.

    CLI Example:

    .. code-block:: bash

        salt-run svnpillar.sync
    """
    try:
        conf = _Config(__opts__)
    except PapError as exc:
        log.error("svnpillar.sync: %s", exc)
        return _finish(False, f"sync failed: {exc}")
    store = conf.store
    record = {"time": core.now(), "master": conf.master}
    try:
        with store.lock():
            live = store.live_revision()
            newest = conf.client.newest_pushed(conf.path, newer_than=live or 0)
            if newest is None:
                text = (
                    f"up to date: r{live} is live"
                    if live is not None
                    else "nothing was ever pushed"
                )
                store.update_record(last_sync=dict(record, outcome=text))
                return text
            revision = conf.client.revision(conf.path, newest.number)
            tree = _fetch(conf, revision)
            try:
                _validate(conf, revision, tree)
                _go_live(conf, revision, tree, f"sync on {conf.master} (pushed {newest.pushed})")
                tree = None
            finally:
                if tree is not None:
                    shutil.rmtree(tree, ignore_errors=True)
    except core.Busy as exc:
        return str(exc)
    except core.Rejected as exc:
        text = core.refusal_text(exc.revision, exc.problems, store.live_revision()).replace(
            "push refused", "sync refused", 1
        )
        log.error("svnpillar.sync: %s", text)
        store.update_record(last_sync=dict(record, outcome=f"refused r{exc.revision}", detail=text))
        return _finish(False, text)
    except (PapError, OSError) as exc:
        text = f"sync failed: {exc}; the live pillar stays {_live_text(store)}"
        log.warning("svnpillar.sync: %s", text)
        store.update_record(last_sync=dict(record, outcome=text))
        return _finish(False, text)
    text = f"r{revision.number} is live (was {_rev(live)}): {core.describe(revision)}"
    log.info("svnpillar.sync: %s", text)
    store.update_record(last_sync=dict(record, outcome=text))
    return text


def status():
    """
    What this master serves: the live revision, its author and date, since when, the revisions
    held, and what the last push and the last sync did.

    CLI Example:

    .. code-block:: bash

        salt-run svnpillar.status
    """
    try:
        conf = _Config(__opts__)
    except PapError as exc:
        return _finish(False, str(exc))
    store = conf.store
    return core.status_text(conf.master, store.record(), store.live_revision(), store.revisions())


def revision():
    """
    The live revision of this master as data (for scripts and the other master's checks):
    ``{"revision": N, "author": ..., "date": ..., "since": ..., "by": ...}``, or an empty dict.

    CLI Example:

    .. code-block:: bash

        salt-run svnpillar.revision --out=json
    """
    try:
        conf = _Config(__opts__)
    except PapError as exc:
        return _finish(False, str(exc))
    live = conf.store.live_revision()
    info = dict(conf.store.record().get("live") or {})
    if live is None:
        return {}
    if info.get("revision") != live:
        info = {"revision": live}
    info["master"] = conf.master
    return info
