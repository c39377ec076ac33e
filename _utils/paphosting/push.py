"""Pushing a pillar revision, and following the other master's pushes: the steps, in order.

The runner ``svnpillar`` (``_runners/svnpillar.py``) hands this module what needs Salt: the
master's options, a function compiling every minion's pillar of a tree
(:func:`paphosting.pillarcompile.compile_tree`) and the fleet (:class:`paphosting.pushapply.Fleet`).
The steps use one module each:

* :mod:`paphosting.pushstore`: the revisions held, the ``live`` link, the record, the lock;
* :mod:`paphosting.pushcheck`: validation with the real checkers (its problems:
  :mod:`paphosting.pushproblems`);
* :mod:`paphosting.pushapply`: the canary, then the rest of the fleet;
* :mod:`paphosting.pushreport`: the texts an admin reads.

:func:`push` and :func:`sync` return ``(ok, text)``.
"""

import logging
import os
import shutil
import socket

from paphosting import pushapply, pushcheck, pushreport, svn
from paphosting.errors import PapError
from paphosting.pushstore import CANDIDATE_ENV, Busy, Store, now, prepare_candidate

_log = logging.getLogger(__name__)


class SvnConfig:
    """The ``paphosting_svn`` master option, checked."""

    def __init__(self, opts):
        conf = opts.get("paphosting_svn") or {}
        if not isinstance(conf, dict) or not conf.get("url"):
            raise PapError(
                "the master option paphosting_svn:url is not set: see conf/master.d/svnpillar.conf and docs/push.md"
            )
        self.url = str(conf["url"])
        self.path = str(conf.get("path", "pillar")).strip("/")
        self.client = svn.Client.from_options(conf)
        self.keep = int(conf.get("keep", 5))
        self.apply_timeout = int(conf.get("apply_timeout", 300))
        self.store = Store.of(opts)
        self.master = str(conf.get("name") or opts.get("id") or socket.getfqdn())


def check_served(store, pillar_roots, test=False):
    """Refuse to push when this master (its ``pillar_roots``) does not serve the live (and, for a
    test, the candidate) tree of ``store``."""
    roots = pillar_roots or {}
    problems = []
    want = {"base": store.live}
    if test:
        want[CANDIDATE_ENV] = store.candidate
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


def revision_number(rev):
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


def export(conf, revision):
    """Export ``revision`` into a staging directory of the store (removed on failure)."""
    tree = conf.store.staging(revision.number)
    try:
        os.rmdir(tree)  # svn export wants to create it
        conf.client.export(conf.path, revision.number, tree)
    except BaseException:
        shutil.rmtree(tree, ignore_errors=True)
        raise
    return tree


def validate(conf, revision, tree, compile_tree):
    """Validate the exported ``tree`` (:func:`paphosting.pushcheck.validate`) with every minion's
    pillar compiled by ``compile_tree(tree, prefix)``."""
    compiled, sources, files, render_lines = compile_tree(tree, conf.path)
    return pushcheck.validate(
        revision.number,
        compiled,
        sources,
        prefix=conf.path,
        files=files,
        render_lines=render_lines,
    )


def go_live(conf, revision, tree, by, log=_log):
    """Install the validated ``tree`` as ``revision``, make it live, record it and prune."""
    dest = conf.store.install(tree, revision.number)
    conf.store.make_live(revision.number)
    live = {
        "revision": revision.number,
        "author": revision.author,
        "date": revision.date,
        "message": revision.message,
        "since": now(),
        "by": by,
        "url": svn.join(conf.url, conf.path),
    }
    conf.store.update_record(live=live)
    removed = conf.store.prune(conf.keep)
    if removed:
        log.info("svnpillar: pruned revisions %s", ", ".join(f"r{n}" for n in removed))
    return dest


def _rev(number):
    return f"r{number}" if number is not None else "nothing"


def _live_text(store):
    live = store.live_revision()
    return f"r{live}" if live is not None else "as it was (nothing live yet)"


def _done(store, record, ok, outcome, report, lines):
    """Record the push's outcome as ``last_push``; ``(ok, its report)``."""
    text = "\n".join(lines)
    store.update_record(last_push=dict(record, outcome=outcome, minions=report, detail=text))
    return ok, text


def push(opts, rev, test, compile_tree, fleet, log=_log):
    """Validate revision ``rev`` (None: HEAD), make it live on this master, mark it pushed in
    Subversion and apply it to ``fleet`` (a :class:`~paphosting.pushapply.Fleet`), canary first;
    ``test``: apply it in test mode against the candidate environment, making nothing live.
    ``compile_tree(tree, prefix)``: every minion's pillar of a tree (see :func:`validate`).
    Returns ``(ok, text)``; the outcome is recorded as the store's ``last_push``."""
    test = bool(test)

    def progress(message):
        log.info("svnpillar: %s", message)

    try:
        conf = SvnConfig(opts)
        check_served(conf.store, opts.get("pillar_roots"), test)
        number = revision_number(rev)
    except PapError as exc:
        return False, f"push failed: {exc}"
    store = conf.store
    record = {"time": now(), "master": conf.master, "revision": rev, "test": test}
    try:
        # A scheduled sync holds the lock for seconds: wait for it rather than fail.
        with store.lock(wait=60):
            live = store.live_revision()
            revision = conf.client.revision(conf.path, number)
            record["revision"] = revision.number
            progress(f"revision {pushreport.describe(revision)}")
            newer = conf.client.newest_pushed(conf.path, newer_than=revision.number)
            if newer is not None:
                raise PapError(
                    f"r{revision.number} is older than r{newer.number}, already pushed ({newer.pushed}). "
                    "To go back, revert the change in Subversion and push the new revision."
                )
            if live is not None and revision.number < live:
                raise PapError(f"r{revision.number} is older than r{live}, live on this master")
            tree = export(conf, revision)
            try:
                validated = validate(conf, revision, tree, compile_tree)
                progress(
                    f"r{revision.number} is valid: {len(validated.minions)} minions, {len(validated.checked)} files checked"
                )
                if test:
                    return _push_test(conf, revision, tree, validated, record, live, fleet)
                try:
                    conf.client.mark_pushed(revision.number, f"{conf.master} {now()}")
                except svn.Denied as exc:
                    raise PapError(
                        f"{exc} (the repository needs the pre-revprop-change hook of docs/push.md, and this "
                        "master a Subversion account that may write: paphosting_svn:username/password_file)"
                    ) from None
                go_live(conf, revision, tree, f"push from {conf.master}", log)
                tree = None
            finally:
                if tree is not None:
                    shutil.rmtree(tree, ignore_errors=True)
            progress(f"r{revision.number} is live on {conf.master}")
    except pushcheck.Rejected as exc:
        text = pushreport.refusal_text(exc.revision, exc.problems, store.live_revision())
        store.update_record(last_push=dict(record, outcome="refused", detail=text))
        return False, text
    except svn.Unreachable as exc:
        text = (
            f"push failed: {exc}\nNothing was changed: the live pillar stays {_live_text(store)}."
        )
        store.update_record(last_push=dict(record, outcome="svn unreachable", detail=text))
        return False, text
    except (PapError, OSError) as exc:
        text = (
            f"push failed: {exc}\nNothing was changed: the live pillar stays {_live_text(store)}."
        )
        store.update_record(last_push=dict(record, outcome="failed", detail=text))
        return False, text

    try:
        ok, _, report = fleet.waves(validated, conf.apply_timeout)
    except pushapply.FleetError as exc:
        ok, report = False, [f"applying to the fleet failed: {exc}"]
    lines = [
        f"r{revision.number} is live on {conf.master}: {pushreport.describe(revision)}",
        *report,
    ]
    if not ok:
        lines.append(
            "The revision is live on the masters; fix the failure and push again (or revert in Subversion and push)."
        )
    return _done(store, record, ok, "applied" if ok else "apply failed", report, lines)


def _push_test(conf, revision, tree, validated, record, live, fleet):
    """Serve ``tree`` as the candidate environment and run the highstate in test mode."""
    store = conf.store
    prepare_candidate(tree)
    store.set_candidate(tree)
    try:
        ok, outcomes, report = fleet.waves(
            validated, conf.apply_timeout, test=True, pillarenv=CANDIDATE_ENV
        )
    except pushapply.FleetError as exc:
        ok, outcomes, report = False, {}, [f"running the highstate in test mode failed: {exc}"]
    finally:
        store.clear_candidate()
    lines = [
        f"test: r{revision.number} is valid: {pushreport.describe(revision)}",
        f"Nothing was made live or applied (live stays {_rev(live)}). Per minion, the highstate would:",
        *report,
        *pushreport.diff_lines(outcomes),
    ]
    return _done(store, record, ok, "tested" if ok else "test failed", report, lines)


def sync(opts, compile_tree, log=_log):
    """Make the newest revision marked pushed in Subversion live on this master when it is newer
    than the live one, after validating it; never go back. Returns ``(ok, text)``; the outcome
    is recorded as the store's ``last_sync``. Another push or sync running is not a failure."""
    try:
        conf = SvnConfig(opts)
    except PapError as exc:
        log.error("svnpillar.sync: %s", exc)
        return False, f"sync failed: {exc}"
    store = conf.store
    record = {"time": now(), "master": conf.master}
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
                return True, text
            revision = conf.client.revision(conf.path, newest.number)
            tree = export(conf, revision)
            try:
                validate(conf, revision, tree, compile_tree)
                go_live(
                    conf, revision, tree, f"sync on {conf.master} (pushed {newest.pushed})", log
                )
                tree = None
            finally:
                if tree is not None:
                    shutil.rmtree(tree, ignore_errors=True)
    except Busy as exc:
        return True, str(exc)
    except pushcheck.Rejected as exc:
        text = pushreport.refusal_text(exc.revision, exc.problems, store.live_revision()).replace(
            "push refused", "sync refused", 1
        )
        log.error("svnpillar.sync: %s", text)
        store.update_record(last_sync=dict(record, outcome=f"refused r{exc.revision}", detail=text))
        return False, text
    except (PapError, OSError) as exc:
        text = f"sync failed: {exc}; the live pillar stays {_live_text(store)}"
        log.warning("svnpillar.sync: %s", text)
        store.update_record(last_sync=dict(record, outcome=text))
        return False, text
    text = f"r{revision.number} is live (was {_rev(live)}): {pushreport.describe(revision)}"
    log.info("svnpillar.sync: %s", text)
    store.update_record(last_sync=dict(record, outcome=text))
    return True, text


def status(opts):
    """The status table of this master (:func:`paphosting.pushreport.status_text`)."""
    conf = SvnConfig(opts)
    store = conf.store
    return pushreport.status_text(
        conf.master, store.record(), store.live_revision(), store.revisions()
    )


def live_info(opts):
    """The live revision of this master as data (:meth:`paphosting.pushstore.Store.live_info`,
    with ``master``), or ``{}``."""
    conf = SvnConfig(opts)
    info = conf.store.live_info()
    if info:
        info["master"] = conf.master
    return info
