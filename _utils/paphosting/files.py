"""Files the platform manages: read, diff, validate-then-write atomically.

The rule of the project: a rendered file is checked by the real tool on a temporary file in the
target's own directory, and only then renamed over the target, so a bad input leaves the running
service and its files exactly as they were.
"""

import contextlib
import fcntl
import grp
import json
import os
import pwd
import tempfile
import time


@contextlib.contextmanager
def locked(lockfile, wait=None):
    """Hold an exclusive ``flock`` on ``lockfile`` (created, with its folder, when missing);
    yields the open lock file.

    Serialises processes on one host: two masters' jobs, or a job and a scheduled highstate.
    ``wait``: None waits as long as another holder does; a number of seconds waits at most that
    long, then raises :class:`TimeoutError`.
    """
    os.makedirs(os.path.dirname(os.path.abspath(lockfile)), exist_ok=True)
    with open(lockfile, "a") as fh:
        if wait is None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TimeoutError(f"{lockfile} is held by another process") from None
                    time.sleep(0.1)
        try:
            yield fh
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read(path):
    """The text of ``path``, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def read_json(path, default=None, kind=None, error=None, what="state"):
    """The JSON value stored at ``path`` (a state file :func:`write_json` wrote), ``default``
    when there is no such file.

    A file that cannot be read, is not JSON, or holds something other than a ``kind`` (a type)
    gives ``default`` as well, unless ``error`` (an exception class) is given: then it raises
    ``error("<path>: unreadable <what>: <cause>")``.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            value = json.load(fh)
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        if error is None:
            return default
        raise error(f"{path}: unreadable {what}: {exc}") from exc
    if kind is not None and not isinstance(value, kind):
        if error is None:
            return default
        raise error(f"{path}: unreadable {what}: a {type(value).__name__}, not a {kind.__name__}")
    return value


def write_json(path, value, mode=0o600, indent=None, sort_keys=True, durable=True):
    """Write ``value`` as JSON to ``path`` atomically (:func:`write_checked`); ``mode`` 0600:
    a state file is the process's own."""
    text = json.dumps(value, sort_keys=sort_keys, indent=indent)
    write_checked(path, text, mode=mode, durable=durable)


def flush(path):
    """Make the file at ``path`` durable (``fsync``): what a write with ``durable=False`` left
    for later. A missing file is no error (nothing to keep)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unified_diff(old, new, path):
    """A unified diff from ``old`` to ``new`` (either may be None: absent file): Salt's own, as
    ``file.managed`` shows it. Imported here, not at the top: the standalone DNS exporter uses this
    module and never diffs, and need not load Salt to start."""
    import salt.utils.stringutils  # noqa: PLC0415

    return salt.utils.stringutils.get_diff(
        (old or "").splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=path if old is not None else "/dev/null",
        tofile=path,
    )


def _ids(user, group):
    uid = pwd.getpwnam(user).pw_uid if user is not None else -1
    gid = grp.getgrnam(group).gr_gid if group is not None else -1
    return uid, gid


def write_checked(
    path, text, check=None, mode=0o644, user=None, group=None, binary=False, durable=True
):
    """Write ``text`` to ``path`` atomically after ``check(tmp_path)`` accepted it.

    ``check`` raises (typically :class:`paphosting.errors.CheckFailed`) to refuse the file; the
    temporary file is then removed and ``path`` is untouched. The temporary file lives in the
    target's directory so that the final rename is atomic. Owner and mode are set before the rename.
    ``binary``: ``text`` is bytes. ``durable`` False: no ``fsync`` before the rename, for a write
    on the failover's path (an ``fsync`` waits for the file system's journal, seconds while
    thousands of zone files are written or freed); the caller calls :func:`flush` once nothing
    waits. Until then a crash leaves the old or the new text (ext4 writes the data of a file
    renamed over another before the rename), on another file system possibly an empty file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".new", dir=directory)
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if user is not None or group is not None:
            os.chown(tmp, *_ids(user, group))
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def owner_mode(path):
    """``(user, group, mode)`` of an existing file, or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return user, group, st.st_mode & 0o7777


def stage(items, mode=0o644, durable=True):
    """Write many files beside their targets without replacing them: ``items`` is
    ``{path: text}``; returns ``{path: temporary path}`` for :func:`commit` (or :func:`discard`).

    One ``sync`` makes them all durable: one flush for thousands of zone files, where an
    ``fsync`` each would take seconds. ``durable`` False leaves that ``sync`` to the caller, who
    then calls :func:`os.sync` once what waits for the files is done (the failover: once the
    server serves them). Until then a crash leaves each target as it was or as it is new on
    ext4, Debian's default (``auto_da_alloc``: the data of a file renamed over another is written
    before the rename is); on a file system without that guarantee it may leave a target empty,
    which the next highstate rewrites.
    """
    temps = {}
    try:
        for path, text in items.items():
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{os.path.basename(path)}.", suffix=".new", dir=directory
            )
            temps[path] = tmp
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, mode)
        if temps and durable:
            os.sync()
    except BaseException:
        discard(temps)
        raise
    return temps


def commit(temps, keep_old=None):
    """Rename each staged file (:func:`stage`) over its target: each replacement is atomic.

    ``keep_old``: a folder on the same file system where each replaced file is first linked, so
    that the rename does not free the old file (freeing thousands of files takes seconds on a
    file system that discards freed blocks at once); :func:`purge` them when nothing waits.
    """
    if keep_old is not None:
        os.makedirs(keep_old, exist_ok=True)
    for n, (path, tmp) in enumerate(temps.items()):
        if keep_old is not None:
            with contextlib.suppress(FileNotFoundError):
                os.link(path, os.path.join(keep_old, f"{n}.{os.path.basename(path)}"))
        os.replace(tmp, path)


def purge(folder):
    """Remove every file in ``folder`` (the old files :func:`commit` kept), then the folder."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, name))
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def keep_newest(folder, keep, suffixes=(".pickle", ".lock")):
    """Remove from ``folder`` all but the ``keep`` newest groups of files, a group being the files
    whose names share what comes before the first dot (``<digest>.platform.pickle``,
    ``<digest>.lock``). Only names ending in ``suffixes`` count: a temporary file another process
    is writing (``.<name>.XXXX.new``, :func:`write_checked`) is never touched, and a file another
    process removed meanwhile is skipped."""
    groups = {}
    for name in os.listdir(folder):
        if name.endswith(suffixes) and not name.startswith("."):
            groups.setdefault(name.split(".")[0], []).append(os.path.join(folder, name))

    def newest(group):
        times = []
        for path in groups[group]:
            with contextlib.suppress(OSError):
                times.append(os.path.getmtime(path))
        return max(times, default=0)

    for old in sorted(groups, key=newest, reverse=True)[keep:]:
        for path in groups[old]:
            with contextlib.suppress(OSError):
                os.unlink(path)


def discard(temps):
    """Remove staged files that will not be committed."""
    for tmp in temps.values():
        if os.path.exists(tmp):
            os.unlink(tmp)
