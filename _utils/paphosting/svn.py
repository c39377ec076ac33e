"""The Subversion client the masters use: the ``svn`` command line, wrapped.

Salt ships no Subversion pillar and pysvn is not on PyPI, so the masters run ``svn`` itself
(``svn info --xml``, ``svn log --xml``, ``svn export``, ``svn propset --revprop``, ``svn lock``,
and ``svnmucc`` to commit a file without a working copy). Every call is
non-interactive, has a timeout, and turns svn's error codes into errors an admin can act on:

* :class:`Unreachable`: the server does not answer (refused, unknown host, timeout);
* :class:`NotFound`: the repository or the path in it does not exist (a wrong URL);
* :class:`NoSuchRevision`: the revision is newer than the repository's youngest;
* :class:`Denied`: credentials missing or refused, or a hook refused a revision property;
* :class:`SvnError`: anything else, with svn's own message.
"""

import os
import re
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from paphosting.errors import PapError

PUSHED = "paphosting:pushed"
"""The revision property a push sets on the revision it made live (``<master> <UTC time>``)."""


class SvnError(PapError):
    """svn failed; ``str()`` says what was asked of which URL and what svn answered."""

    def __init__(self, what, url, detail):
        self.what = what
        self.url = url
        self.detail = detail.strip()
        super().__init__(str(self))

    def __str__(self):
        return f"Subversion: {self.what} {self.url}: {self.detail}"


class Unreachable(SvnError):
    """The Subversion server cannot be reached."""

    def __str__(self):
        return f"Subversion server unreachable: {self.what} {self.url}: {self.detail}"


class NotFound(SvnError):
    """The repository URL or the path inside it does not exist."""

    def __str__(self):
        return f"Subversion: {self.detail}: check the repository URL and path"


class NoSuchRevision(SvnError):
    """The revision asked for does not exist."""

    def __str__(self):
        return f"Subversion: {self.detail} in {self.url}"


class Denied(SvnError):
    """Credentials missing or refused, or a repository hook said no."""

    def __str__(self):
        return f"Subversion refused to {self.what} {self.url}: {self.detail}"


class Locked(SvnError):
    """The file is locked by someone else (``svn lock``)."""

    def __str__(self):
        return f"Subversion: {self.url} is locked: {self.detail}"


@dataclass(frozen=True)
class Revision:
    """One revision of the pillar path: its number, who committed it, when, and why."""

    number: int
    author: str
    date: str  # ISO 8601, UTC, as svn reports it
    message: str = ""
    props: dict = field(default_factory=dict, compare=False)

    @property
    def pushed(self):
        """The ``paphosting:pushed`` mark (``"<master> <time>"``), or None."""
        return self.props.get(PUSHED)


# svn error codes (svn_error_codes.h) and what they mean to an admin.
_UNREACHABLE = {
    "E170013",
    "E000111",
    "E000113",
    "E670002",
    "E670008",
    "E000110",
    "E210002",
    "E210003",
}
_NOT_FOUND = {
    "E170000",
    "E160013",
    "E200009",
    "E180001",
    "E210005",
    "E125002",
    "E160016",
    "E195012",
}
_NO_REVISION = {"E160006", "E205000"}
_DENIED = {"E170001", "E215004", "E165001", "E220001", "E170009", "E160043"}
_CODE_RE = re.compile(r"\b([EW]\d{6})\b")
_PREFIX_RE = re.compile(r"^svn: (?:warning: )?(?:[EW]\d{6}: )?")


def _error(what, url, stderr):
    """The error for svn's ``stderr``, chosen by the most specific code it printed."""
    codes = _CODE_RE.findall(stderr)
    lines = [_PREFIX_RE.sub("", ln).strip() for ln in stderr.strip().splitlines() if ln.strip()]
    detail = "; ".join(
        dict.fromkeys(ln for ln in lines if not ln.startswith("Could not display info"))
    )
    codes_set = set(codes)
    if codes_set & _NO_REVISION:
        return NoSuchRevision(what, url, detail)
    # "Unable to connect" (E170013) heads both a dead server and a wrong repository name: the
    # code under it decides.
    if "W170000" in codes_set or codes_set & _NOT_FOUND:
        return NotFound(what, url, detail)
    if codes_set & _UNREACHABLE:
        return Unreachable(what, url, detail)
    if codes_set & _DENIED:
        return Denied(what, url, detail)
    return SvnError(what, url, detail or "svn failed without a message")


def join(url, path):
    """``url`` with ``path`` (relative, may be empty) appended."""
    path = (path or "").strip("/")
    return url.rstrip("/") + ("/" + path if path else "")


def parse_info(text):
    """The last changed revision of the target of ``svn info --xml``."""
    entry = ET.fromstring(text).find("entry")
    commit = entry.find("commit")
    return Revision(
        number=int(commit.get("revision")),
        author=commit.findtext("author") or "",
        date=commit.findtext("date") or "",
    )


def parse_log(text):
    """The revisions of ``svn log --xml`` (newest first when asked HEAD:1), with their revprops.

    With ``--with-revprop``, svn reports author and date as ``svn:author``/``svn:date`` revprops;
    both shapes are understood.
    """
    out = []
    for entry in ET.fromstring(text).findall("logentry"):
        props = {p.get("name"): p.text or "" for p in entry.findall("revprops/property")}
        out.append(
            Revision(
                number=int(entry.get("revision")),
                author=entry.findtext("author") or props.get("svn:author", ""),
                date=entry.findtext("date") or props.get("svn:date", ""),
                message=(entry.findtext("msg") or props.get("svn:log", "")).strip(),
                props={k: v for k, v in props.items() if not k.startswith("svn:")},
            )
        )
    return out


class Client:
    """One Subversion repository, reached through the ``svn`` command line.

    url
        The repository URL (``svn://``, ``https://``, ``file://``...).
    username, password
        Credentials for writes (marking a revision pushed); the password goes to svn on its
        standard input, never on the command line. Without them svn uses its own credential
        cache in ``config_dir``.
    timeout
        Seconds any metadata command may take (a server that does not answer fails this fast).
    export_timeout
        Seconds an export may take.
    config_dir
        svn's ``--config-dir`` (its settings and credential cache); svn's default otherwise.
    """

    def __init__(
        self,
        url,
        username=None,
        password=None,
        timeout=10,
        export_timeout=120,
        config_dir=None,
        binary="svn",
    ):
        self.url = url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self.export_timeout = export_timeout
        self.config_dir = config_dir
        self.binary = binary

    @classmethod
    def from_options(cls, conf):
        """The client of the master option ``paphosting_svn`` (``url``, ``username``,
        ``password`` or ``password_file``, ``timeout``, ``export_timeout``, ``config_dir``)."""
        password = conf.get("password")
        if conf.get("password_file"):
            try:
                with open(conf["password_file"], encoding="utf-8") as fh:
                    password = fh.read().strip()
            except OSError as exc:
                raise PapError(f"paphosting_svn:password_file: {exc}") from None
        return cls(
            str(conf["url"]),
            username=conf.get("username"),
            password=password,
            timeout=float(conf.get("timeout", 10)),
            export_timeout=float(conf.get("export_timeout", 120)),
            config_dir=conf.get("config_dir"),
        )

    def _run(self, what, url, args, timeout=None):
        cmd = [self.binary, "--non-interactive"]
        if self.config_dir:
            cmd += ["--config-dir", self.config_dir]
        stdin = None
        if self.username:
            cmd += ["--username", self.username]
        if self.password is not None:
            cmd += ["--no-auth-cache", "--password-from-stdin"]
            stdin = self.password + "\n"
        cmd += args
        env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
        env.pop("LANGUAGE", None)
        timeout = timeout or self.timeout
        try:
            proc = subprocess.run(
                cmd,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise Unreachable(what, url, f"no answer within {timeout:g} s") from None
        except FileNotFoundError:
            raise SvnError(what, url, f"the svn client ({self.binary}) is not installed") from None
        if proc.returncode != 0:
            raise _error(what, url, proc.stderr)
        return proc.stdout

    @staticmethod
    def _peg(url, rev):
        return f"{url}@{rev}" if rev is not None else f"{url}@HEAD"

    def info(self, path="", rev=None):
        """The last revision that changed ``path`` at revision ``rev`` (HEAD by default)."""
        url = join(self.url, path)
        out = self._run("read", url, ["info", "--xml", self._peg(url, rev)])
        try:
            return parse_info(out)
        except (ET.ParseError, AttributeError, TypeError, ValueError) as exc:
            raise SvnError("read", url, f"unexpected answer from svn info: {exc}") from None

    def log(self, path="", start="HEAD", end=1, limit=None, revprops=()):
        """The revisions that changed ``path`` from ``start`` down to ``end``, with ``revprops``.

        ``start`` must not be older than the path's creation, as with ``svn log -r``.
        """
        url = join(self.url, path)
        args = ["log", "--xml", "-r", f"{start}:{end}"]
        if limit:
            args += ["--limit", str(limit)]
        if revprops:
            for name in ("svn:author", "svn:date", "svn:log", *revprops):
                args += ["--with-revprop", name]
        args.append(self._peg(url, start if start != "HEAD" else None))
        out = self._run("read the log of", url, args)
        try:
            return parse_log(out)
        except (ET.ParseError, TypeError, ValueError) as exc:
            raise SvnError(
                "read the log of", url, f"unexpected answer from svn log: {exc}"
            ) from None

    def revision(self, path="", rev=None):
        """:func:`info` with the commit message and the push mark of that revision."""
        last = self.info(path, rev)
        entries = self.log(path, start=last.number, end=last.number, revprops=(PUSHED,))
        return entries[0] if entries else last

    def newest_pushed(self, path="", newer_than=0, page=100):
        """The newest revision of ``path`` marked pushed and newer than ``newer_than``, or None."""
        head = self.info(path)
        start = head.number
        while start > newer_than:
            entries = self.log(
                path, start=start, end=newer_than + 1, limit=page, revprops=(PUSHED,)
            )
            for entry in entries:
                if entry.pushed is not None and entry.number > newer_than:
                    return entry
            if len(entries) < page:
                return None
            start = entries[-1].number - 1
        return None

    def export(self, path, rev, dest):
        """Export ``path`` at revision ``rev`` (a number) into the new directory ``dest``."""
        url = join(self.url, path)
        self._run(
            "export",
            url,
            ["export", "--quiet", "--ignore-externals", "-r", str(rev), self._peg(url, rev), dest],
            timeout=self.export_timeout,
        )

    def put(self, files, message, base=None):
        """Commit ``files`` (``{path: text}``, paths relative to the repository URL) in one new
        revision without a working copy (``svnmucc``), creating missing folders; the revision.
        ``base``: the revision the texts were computed from; a file changed since (the other
        master committed first) makes the commit fail as out of date (:class:`SvnError`).

        What a master's runner commits (a DNSSEC key set after a rollover): the admins see it in
        the log like any other commit, and the push validates it like any other revision."""
        ops, made = [], set()
        with tempfile.TemporaryDirectory(prefix="paphosting-svn-") as tmp:
            for i, (path, text) in enumerate(sorted(files.items())):
                parts = path.strip("/").split("/")
                for depth in range(1, len(parts)):
                    folder = "/".join(parts[:depth])
                    if folder in made:
                        continue
                    try:
                        self.info(folder)
                    except NotFound:
                        ops += ["mkdir", join(self.url, folder)]
                    made.add(folder)
                local = os.path.join(tmp, str(i))
                with open(local, "w", encoding="utf-8") as fh:
                    fh.write(text)
                ops += ["put", local, join(self.url, path)]
            binary, self.binary = self.binary, "svnmucc"
            try:
                base_args = ["-r", str(base)] if base is not None else []
                out = self._run("commit to", self.url, [*base_args, "-m", message, *ops])
            finally:
                self.binary = binary
        match = re.search(r"r(\d+) committed", out)
        return int(match.group(1)) if match else None

    def mark_pushed(self, rev, value):
        """Set the ``paphosting:pushed`` revision property of ``rev`` to ``value``.

        Needs write access and a ``pre-revprop-change`` hook that allows this property.
        """
        self._run(
            "mark as pushed",
            f"{self.url} r{rev}",
            ["propset", "--revprop", "-r", str(rev), PUSHED, value, self.url],
        )

    def cat(self, path, rev=None):
        """The text of the file ``path`` at ``rev`` (HEAD by default), or None when it does not
        exist there."""
        url = join(self.url, path)
        try:
            return self._run("read", url, ["cat", self._peg(url, rev)])
        except NotFound:
            return None

    def lock_info(self, path):
        """``{"owner", "comment", "created"}`` of the lock on ``path``, or None when unlocked."""
        url = join(self.url, path)
        out = self._run("read", url, ["info", "--xml", url])
        try:
            lock = ET.fromstring(out).find("./entry/lock")
        except ET.ParseError as exc:
            raise SvnError("read", url, f"unexpected answer from svn info: {exc}") from None
        if lock is None:
            return None
        return {k: (lock.findtext(k) or "").strip() for k in ("owner", "comment", "created")}

    def lock(self, path, comment, steal=False):
        """Lock the file ``path`` (``svn lock``); ``steal`` takes another holder's lock over. Raises
        :class:`Locked` when it is locked already (and not stolen)."""
        url = join(self.url, path)
        args = ["lock", "-m", comment] + (["--force"] if steal else []) + [url]
        try:
            out = self._run("lock", url, args)
        except SvnError as exc:
            if "already locked" in exc.detail:
                raise Locked("lock", url, exc.detail) from None
            raise
        if "locked by user" not in out:
            raise Locked("lock", url, out.strip() or "locked by someone else")

    def unlock(self, path):
        """Release the lock on ``path`` whoever holds it."""
        url = join(self.url, path)
        self._run("unlock", url, ["unlock", "--force", url])
