"""The master's pushed pillar revisions: the store a push or a sync makes live, and its lock.

* :class:`Store`: the validated revisions, ``<cachedir>/paphosting/pillar/rev-N``, the ``live``
  symlink the master's ``pillar_roots`` points at (swapped atomically), the ``candidate`` symlink
  a ``test=True`` push uses, the record of what is live and what the last push and sync did, and a
  lock so that one push or sync runs at a time (:func:`paphosting.files.locked`).
* :func:`candidate_top`, :func:`prepare_candidate`: the top file that serves a revision as the
  candidate pillar environment only.
"""

import contextlib
import datetime
import errno
import json
import os
import shutil
import tempfile

from paphosting import files
from paphosting.errors import PapError

REV_PREFIX = "rev-"
CANDIDATE_ENV = "paphosting_candidate"
"""The pillar environment a ``test=True`` push serves its candidate revision in."""


class Busy(PapError):
    """Another push or sync holds this master's lock."""


def now():
    """The current UTC time as ``2026-01-31T12:00:00Z``."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """The master's pillar revisions under ``root`` (``<cachedir>/paphosting``).

    ``root/pillar/rev-N``
        the exported, validated tree of revision N (never modified once there);
    ``root/pillar/live``
        symlink to the live ``rev-N``: the master's ``pillar_roots`` ``base``;
    ``root/pillar/candidate``
        symlink to the tree a ``test=True`` push is showing (pillar environment
        ``paphosting_candidate``); absent otherwise;
    ``root/svnpillar.json``
        the record: live revision, author, date, since when, the last push and the last sync.
    """

    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.pillar = os.path.join(self.root, "pillar")
        self.live = os.path.join(self.pillar, "live")
        self.candidate = os.path.join(self.pillar, "candidate")
        self.record_path = os.path.join(self.root, "svnpillar.json")
        self.lock_path = os.path.join(self.root, "lock")

    @classmethod
    def of(cls, opts):
        """The store of the master with options ``opts``: ``paphosting_svn:store``, else
        ``<cachedir>/paphosting``."""
        conf = opts.get("paphosting_svn")
        store = conf.get("store") if isinstance(conf, dict) else None
        return cls(store or os.path.join(opts["cachedir"], "paphosting"))

    def _ensure(self):
        os.makedirs(self.pillar, exist_ok=True)

    def rev_dir(self, number):
        return os.path.join(self.pillar, f"{REV_PREFIX}{int(number)}")

    def live_revision(self):
        """The number of the live revision, or None when nothing was ever made live."""
        try:
            target = os.readlink(self.live)
        except OSError:
            return None
        name = os.path.basename(target.rstrip("/"))
        if not name.startswith(REV_PREFIX) or not os.path.isdir(self.live):
            return None
        try:
            return int(name[len(REV_PREFIX) :])
        except ValueError:
            return None

    def revisions(self):
        """The revision numbers held, oldest first."""
        try:
            names = os.listdir(self.pillar)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.startswith(REV_PREFIX) and name[len(REV_PREFIX) :].isdigit():
                out.append(int(name[len(REV_PREFIX) :]))
        return sorted(out)

    def staging(self, number):
        """A new empty directory to export revision ``number`` into (remove it or :meth:`install`)."""
        self._ensure()
        return tempfile.mkdtemp(prefix=f".export-{int(number)}-", dir=self.pillar)

    def install(self, tree, number):
        """Move the validated export ``tree`` to ``rev-N``; an existing ``rev-N`` is kept (svn
        revisions never change) and ``tree`` removed."""
        dest = self.rev_dir(number)
        try:
            os.rename(tree, dest)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not os.path.isdir(dest):
                raise
            shutil.rmtree(tree, ignore_errors=True)
        return dest

    def _swap(self, link, target):
        if os.path.isdir(link) and not os.path.islink(link):
            # Created by a config check (e.g. verify_env on pillar_roots): only an empty one goes.
            try:
                os.rmdir(link)
            except OSError:
                raise PapError(
                    f"{link} is a directory, not the symlink svnpillar manages: move it away"
                ) from None
        tmp = f"{link}.new-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, link)

    def make_live(self, number):
        """Point ``live`` at ``rev-N`` in one atomic rename."""
        if not os.path.isdir(self.rev_dir(number)):
            raise PapError(f"revision {number} is not in {self.pillar}")
        self._swap(self.live, f"{REV_PREFIX}{int(number)}")

    def set_candidate(self, tree):
        """Serve ``tree`` as the candidate pillar environment."""
        self._swap(self.candidate, os.path.relpath(tree, self.pillar))

    def clear_candidate(self):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.candidate)

    def prune(self, keep=5):
        """Remove all but the ``keep`` newest revisions; never the live one. Returns the removed."""
        live = self.live_revision()
        held = self.revisions()
        doomed = [n for n in held[: max(len(held) - max(keep, 1), 0)] if n != live]
        for n in doomed:
            shutil.rmtree(self.rev_dir(n), ignore_errors=True)
        # Exports left behind by a push that was killed.
        for name in os.listdir(self.pillar):
            if name.startswith(".export-") and not _alive_export(os.path.join(self.pillar, name)):
                shutil.rmtree(os.path.join(self.pillar, name), ignore_errors=True)
        return doomed

    def record(self):
        """The record (a dict; empty when nothing was ever pushed here)."""
        try:
            with open(self.record_path, encoding="utf-8") as fh:
                return json.load(fh)
        except (FileNotFoundError, ValueError):
            return {}

    def update_record(self, **parts):
        """Replace the given top-level parts of the record (``live``, ``last_push``, ``last_sync``)."""
        self._ensure()
        data = self.record()
        data.update(parts)
        files.write_checked(
            self.record_path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600
        )
        return data

    @contextlib.contextmanager
    def lock(self, wait=0.0):
        """Hold this master's push/sync lock; wait up to ``wait`` seconds for another holder, then
        raise :class:`Busy`."""
        self._ensure()
        with contextlib.ExitStack() as stack:
            try:
                fh = stack.enter_context(files.locked(self.lock_path, wait=wait))
            except TimeoutError:
                raise Busy(
                    f"another push or sync is running on this master (lock {self.lock_path})"
                ) from None
            # Who holds it, for an admin who looks.
            fh.truncate(0)
            fh.write(str(os.getpid()))
            fh.flush()
            yield

    def live_info(self):
        """What is live, as data: the record's ``live`` part (``revision``, ``author``, ``date``,
        ``since``, ``by``, ...) when it describes the live revision, else ``{"revision": N}``;
        ``{}`` when nothing is live."""
        live = self.live_revision()
        if live is None:
            return {}
        info = dict(self.record().get("live") or {})
        return info if info.get("revision") == live else {"revision": live}


def _alive_export(path, max_age=3600):
    """An export directory younger than ``max_age`` seconds may belong to a running push."""
    try:
        return (datetime.datetime.now().timestamp() - os.stat(path).st_mtime) < max_age
    except FileNotFoundError:
        return False


def candidate_top(original="top.orig.sls"):
    """The top file of the candidate environment.

    It renders the revision's own top file (kept as ``original``) with the minion's context and
    serves its ``base`` targets in the :data:`CANDIDATE_ENV` environment, but only to a minion that
    asked for that environment: a normal pillar request gets nothing from it.
    """
    return (
        "#!jinja|yaml\n"
        "# Generated by svnpillar.push test=True: the candidate revision's top file, served in\n"
        f"# the {CANDIDATE_ENV} pillar environment only.\n"
        f"{{%- if opts.get('pillarenv') == '{CANDIDATE_ENV}' %}}\n"
        f"{{%- set original %}}{{% include '{original}' %}}{{% endset %}}\n"
        "{%- load_yaml as top %}{{ original }}{% endload %}\n"
        f"{{{{ {{'{CANDIDATE_ENV}': (top or {{}}).get('base', {{}})}} | yaml(False) }}}}\n"
        "{%- else %}\n"
        "{}\n"
        "{%- endif %}\n"
    )


def prepare_candidate(tree):
    """Turn an export into the candidate environment: its ``top.sls`` becomes ``top.orig.sls`` and
    :func:`candidate_top` takes its place."""
    top = os.path.join(tree, "top.sls")
    os.replace(top, os.path.join(tree, "top.orig.sls"))
    with open(top, "w", encoding="utf-8") as fh:
        fh.write(candidate_top())
