"""Pushing a pillar revision: validate it completely, make it live atomically, record it.

The runner ``svnpillar`` (``_runners/svnpillar.py``) talks to Salt and Subversion; this module is
the part that needs neither:

* :class:`Store`: the master's validated revisions, ``<cachedir>/paphosting/pillar/rev-N``, the
  ``live`` symlink the master's ``pillar_roots`` points at (swapped atomically), the ``candidate``
  symlink a ``test=True`` push uses, the record of what is live and what the last push and sync
  did, and a lock so that one push or sync runs at a time.
* :func:`validate`: every minion's compiled pillar through :func:`paphosting.model.parse`, then
  every haproxy config, zone and DNS server config rendered and checked with the real checker.
  Each problem names the svn file, the pillar path and the checker's message (:func:`locate`).
* :func:`state_outcome`: what a minion's ``state.apply`` return says (applied, changed, failed).
* The texts an admin reads: :func:`refusal_text`, :func:`status_text`.
"""

import concurrent.futures
import contextlib
import datetime
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field

from paphosting import dnsserver, haproxy, model, platformcache, secrets, svn, tls
from paphosting.errors import CheckFailed, InvalidPillar, PapError, PillarError, path_text
from paphosting.files import write_checked

REV_PREFIX = "rev-"
CANDIDATE_ENV = "paphosting_candidate"
"""The pillar environment a ``test=True`` push serves its candidate revision in."""


class Busy(PapError):
    """Another push or sync holds this master's lock."""


class Rejected(PapError):
    """A revision failed validation: nothing was made live."""

    def __init__(self, revision, problems):
        self.revision = revision
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self):
        n = len(self.problems)
        head = f"r{self.revision} is invalid ({n} problem{'s' * (n != 1)}):"
        return "\n".join([head] + [f"  - {p}" for p in self.problems])


def now():
    """The current UTC time as ``2026-01-31T12:00:00Z``."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the store ----------------------------------------------------------------------------------


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
        write_checked(
            self.record_path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600
        )
        return data

    @contextlib.contextmanager
    def lock(self, wait=0.0):
        """Hold this master's push/sync lock; wait up to ``wait`` seconds for another holder, then
        raise :class:`Busy`."""
        self._ensure()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise Busy(
                            f"another push or sync is running on this master (lock {self.lock_path})"
                        ) from None
                    time.sleep(0.1)
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            yield
        finally:
            os.close(fd)


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
        self.store = Store(conf.get("store") or os.path.join(opts["cachedir"], "paphosting"))
        self.master = str(conf.get("name") or opts.get("id") or socket.getfqdn())


def _alive_export(path, max_age=3600):
    """An export directory younger than ``max_age`` seconds may belong to a running push."""
    try:
        return (datetime.datetime.now().timestamp() - os.stat(path).st_mtime) < max_age
    except FileNotFoundError:
        return False


def sls_files(tree):
    """The ``.sls`` files of an exported tree, as paths relative to it, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.endswith(".sls"):
                out.append(os.path.relpath(os.path.join(dirpath, name), tree))
    return sorted(out)


def sls_name(relpath):
    """The SLS name of a file: ``a/b.sls`` -> ``a.b``, ``a/init.sls`` -> ``a``."""
    stem = relpath[: -len(".sls")] if relpath.endswith(".sls") else relpath
    parts = stem.split(os.sep)
    if parts[-1] == "init" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


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


# --- locating a pillar path in the svn files ----------------------------------------------------

_MISSING = object()


def _depth(data, path):
    """How many leading keys of ``path`` exist in ``data``."""
    n = 0
    node = data
    for key in path:
        if isinstance(node, dict):
            found = node.get(key, _MISSING)
            if found is _MISSING:
                found = next((v for k, v in node.items() if str(k) == key), _MISSING)
            if found is _MISSING:
                break
            node = found
        elif isinstance(node, list):
            try:
                index = int(key)
            except ValueError:
                break
            if not 0 <= index < len(node):
                break
            node = node[index]
        else:
            break
        n += 1
    return n


def locate(sources, path):
    """The files of ``sources`` (``{svn path: rendered data}``) that define ``path`` deepest.

    ``path`` is a pillar path (a tuple of keys, list indexes as strings). The file holding the
    longest leading part of it is where the value (or its parent, for a missing key) was written.
    """
    path = tuple(str(p) for p in path)
    depths = {name: _depth(data, path) for name, data in sources.items() if isinstance(data, dict)}
    best = max(depths.values(), default=0)
    if best == 0:
        return []
    return sorted(name for name, depth in depths.items() if depth == best)


# --- validation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One reason to refuse a revision."""

    files: tuple  # svn paths, e.g. ("pillar/paphosting.sls",)
    path: str  # pillar path, e.g. "paphosting:services:www:port", or "" when not known
    message: str
    minions: tuple = ()

    def __str__(self):
        where = ", ".join(self.files) or "(no file)"
        what = f"pillar {self.path}: " if self.path else ""
        who = ""
        if self.minions:
            shown = ", ".join(self.minions[:4]) + (
                f" and {len(self.minions) - 4} more" if len(self.minions) > 4 else ""
            )
            who = f" [{shown}]"
        lines = [ln.rstrip() for ln in self.message.splitlines() if ln.strip()] or [""]
        first = f"{lines[0][:-1]}{who}:" if lines[0].endswith(":") else f"{lines[0]}{who}"
        return "\n".join([f"{where}: {what}{first}"] + [f"      {ln}" for ln in lines[1:]])


@dataclass
class Compiled:
    """A minion's pillar as the master compiled it from the revision under test."""

    minion: str
    pillar: dict
    errors: list = field(default_factory=list)  # Salt's render errors (``_errors``)


@dataclass
class Validated:
    """What a successful :func:`validate` checked."""

    minions: list  # minions with a paphosting pillar
    checked: list  # "haproxy.cfg of lb1", "zone paphosting.nl (bind)", ...
    platforms: dict  # minion -> Platform

    def roles(self):
        """``{minion: [roles]}`` for every validated minion."""
        return {m: p.roles(m) for m, p in self.platforms.items()}


def platform_servers(platform):
    """Every minion id the platform names (load balancers, nameservers, webservers)."""
    return set(platform.loadbalancers) | set(platform.nameservers) | set(platform.webservers)


def named_servers(data):
    """The minion ids named under ``paphosting`` in raw (unvalidated) pillar ``data``."""
    out = set()
    root = data.get(model.ROOT) if isinstance(data, dict) else None
    if not isinstance(root, dict):
        return out
    for role in ("loadbalancers", "nameservers", "webservers"):
        servers = root.get(role)
        if isinstance(servers, dict):
            out.update(str(k) for k in servers)
    return out


_SLS_RE = re.compile(r"SLS '([^']+)'")
_RENDER_HEAD_RE = re.compile(r"^Rendering SLS '[^']+' failed(?:, render error:\s*|\.\s*)")
_YAML_MARK_RE = re.compile(r'\s*in "<[^>]*>", line (\d+), column (\d+)')
_TAIL_LINE_RE = re.compile(r";\s*line (\d+)\s*$")


def render_cause(message, line=None):
    """``(line, cause)`` of one Salt render error (a pillar's ``_errors`` item).

    ``cause`` is what the renderer said, on one line, without Salt's heading and its excerpt of
    the rendered text (``---`` ... ``---``); ``line`` is the line it names (Jinja's ``; line N``,
    the last of YAML's marks), else the ``line`` given (a ``SaltRenderError.line_num``: YAML's
    scanner errors lose it on the way into ``_errors``), else None.
    """
    text = _RENDER_HEAD_RE.sub("", str(message).strip(), count=1)
    text = re.split(r"\n\s*---\s*\n", "\n" + text, maxsplit=1)[0].strip()
    tail = _TAIL_LINE_RE.search(text)
    if tail:
        line = int(tail.group(1))
        text = text[: tail.start()]
    marks = _YAML_MARK_RE.findall(text)
    if marks and not tail:
        line = int(marks[-1][0])
    text = _YAML_MARK_RE.sub(lambda m: f" (line {m.group(1)}, column {m.group(2)})", text)
    cause = "; ".join(part.strip() for part in text.splitlines() if part.strip())
    return line, cause or "the renderer gave no reason"


def failed_sls(message):
    """The SLS name a Salt render error names (``Rendering SLS 'a.b' failed``), or None."""
    match = _SLS_RE.search(str(message))
    return match.group(1) if match else None


def render_problem(message, line=None):
    """One Salt render error as an admin reads it: ``line N: <cause>`` (see :func:`render_cause`)."""
    line, cause = render_cause(message, line)
    where = f"line {line}: " if line else ""
    return f"{where}cannot render: {cause}"


def _svn_path(prefix, relpath):
    return "/".join(p for p in (prefix.strip("/"), relpath.replace(os.sep, "/")) if p)


def _line(text, number):
    lines = text.splitlines()
    return lines[number - 1].strip() if 0 < number <= len(lines) else None


_HAPROXY_LINE_RE = re.compile(r"\[[^\]\s]*:(\d+)\]")
_ZONE_LINE_RE = re.compile(r"(?:\.zone:|\bline )(\d+)\b")
_SECTION_RE = re.compile(
    r"^\s*(frontend|backend|listen|defaults|global|resolvers|peers|userlist)\b\s*(\S*)"
)


def _leaves(node, path):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, path + (str(key),))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, path + (str(i),))
    elif isinstance(node, (str, int)) and not isinstance(node, bool):
        yield path, str(node)


def narrow(raw, path, line):
    """The pillar path under ``path`` whose value appears in the rendered ``line``, else ``path``.

    ``raw`` is the whole pillar. A rendered line carries pillar values as words (a status range,
    an address, a port); the longest value found among the line's words names the key.
    """
    node = raw
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if node is None or not line:
        return path
    words = set(re.split(r"[\s,;(){}\[\]=\"']+|:(?=\d)", line))
    found = [
        (len(value), sub) for sub, value in _leaves(node, ()) if len(value) >= 2 and value in words
    ]
    if not found:
        return path
    best = max(n for n, _ in found)
    return tuple(path) + next(sub for n, sub in found if n == best)


def haproxy_path(platform, lb_name, text, output, raw=None):
    """The pillar path an haproxy rejection points at: the key of the service whose section holds
    the line haproxy names (see :func:`narrow`), else the load balancer."""
    match = _HAPROXY_LINE_RE.search(output)
    if match:
        number = int(match.group(1))
        lines = text.splitlines()
        for i in range(min(number, len(lines)) - 1, -1, -1):
            section = _SECTION_RE.match(lines[i])
            if not section:
                continue
            name = section.group(2)
            for svc in sorted(platform.services, key=len, reverse=True):
                if name == svc or re.search(rf"(^|[_.-]){re.escape(svc)}($|[_.-])", name):
                    path = (model.ROOT, "services", svc)
                    return narrow(raw or {}, path, _line(text, number)) if raw else path
            break
    return (model.ROOT, "loadbalancers", lb_name)


def _checker_message(exc, text, label):
    """The checker's output, with the rendered line it names when it names one."""
    output = exc.output if isinstance(exc, CheckFailed) else str(exc)
    tool = exc.tool if isinstance(exc, CheckFailed) else "check"
    # haproxy's version notices and process ids say nothing about the problem.
    output = "\n".join(
        re.sub(r"\s+\(\d+\) : ", " ", ln)
        for ln in output.splitlines()
        if not ln.lstrip().startswith("[NOTICE]")
    )
    extra = ""
    match = _HAPROXY_LINE_RE.search(output) or _ZONE_LINE_RE.search(output)
    if match:
        line = _line(text, int(match.group(1)))
        if line:
            extra = f"\nline {match.group(1)}: {line}"
    return f"{tool} rejected {label}:\n{output.strip()}{extra}"


class _Problems:
    def __init__(self, sources, prefix, files):
        self.sources = sources
        self.prefix = prefix
        self.files = files
        self.found = {}

    def add(self, path, message, minion=None, files=None):
        path = tuple(str(p) for p in path)
        if files is None:
            files = tuple(locate(self.sources, path)) if path else ()
        key = (files, path_text(path), message)
        minions = self.found.setdefault(key, [])
        if minion is not None and minion not in minions:
            minions.append(minion)

    def pillar_errors(self, exc, minion):
        for err in exc.errors:
            self.add(err.path, err.reason, minion)

    def list(self, everyone=()):
        """The problems; minions are named only when the problem is not everyone's."""
        everyone = set(everyone)
        out = []
        for (files, path, msg), minions in self.found.items():
            named = () if everyone and everyone <= set(minions) else tuple(sorted(minions))
            out.append(Problem(files, path, msg, named))
        return out


def checks(platform, minion):
    """The rendered files ``minion`` will run, each ``(label, pillar path, render, check)``.

    ``render()`` returns the text; ``check(text)`` raises :class:`CheckFailed`. Load balancers get
    their haproxy config; nameservers their server config (their zones: :func:`check_zones`).
    """
    out = []
    if minion in platform.loadbalancers:
        out.append(
            (
                f"haproxy.cfg of {minion}",
                (model.ROOT, "loadbalancers", minion),
                lambda: haproxy.render(platform, minion),
                haproxy.check_text,
            )
        )
    ns = platform.nameservers.get(minion)
    if ns is not None:
        out.append(
            (
                f"{ns.server} config of {minion}",
                (model.ROOT, "nameservers", minion),
                lambda: dnsserver.render_config(platform, minion),
                lambda text, s=ns: dnsserver.check_config_text(s, text),
            )
        )
    return out


def check_certificates(platform, minion, published):
    """``[(pillar path, relative file, message)]`` for the bundles load balancer ``minion`` would
    serve (``published``: its ``paphosting_secrets:tls``): each checked as the state will
    (:func:`paphosting.tls.check`), then its haproxy.cfg with all of them loaded, by
    ``haproxy -c`` in a temporary root."""
    roots = tls.load_roots(platform.tls.get("trusted_roots", ()))
    good, out = {}, []
    for svc, bundle in sorted(tls.wanted(platform, minion, published).items()):
        try:
            good[svc] = tls.check(platform.services[svc], bundle, roots)
        except tls.CertificateError as exc:
            out.append(
                ((secrets.PILLAR_KEY, tls.KIND, svc), secrets.relpath(tls.KIND, svc), exc.reason)
            )
    if out or not good:
        return out
    with tempfile.TemporaryDirectory(prefix="pap-tls-") as root:
        for svc, cert in good.items():
            write_checked(haproxy.certificate_path(root, svc), cert.bundle, mode=0o600)
        paths = haproxy.layout(root)
        write_checked(paths["crt_list"], haproxy.render_crt_list(platform, minion, good, root))
        text = haproxy.render(platform, minion, root, good)
        try:
            haproxy.check_text(text)
        except CheckFailed as exc:
            message = _checker_message(exc, text, "haproxy.cfg with its certificates")
            out.append(((model.ROOT, "loadbalancers", minion), None, message))
    return out


def check_zones(renderer, servers):
    """``{server: {zone: message}}``: for each of ``servers`` (bind, nsd, knot), every zone its
    checker refuses of the platform of ``renderer`` (a :class:`~paphosting.zone.Renderer`, from
    :func:`paphosting.platformcache.load`). Each zone is rendered once (the text does not depend on the
    server) and checked by every server's checker in bulk
    (:func:`paphosting.dnsserver.check_zone_files`): thousands of zones in one or a few checker
    processes. A zone that cannot be rendered is refused by every server."""
    platform = renderer.platform
    unrenderable = {}
    refused = {server: {} for server in servers}
    with tempfile.TemporaryDirectory(prefix="paphosting-push-zones-") as d:
        paths = {}
        for zname in sorted(platform.zones):
            try:
                text = renderer.render(zname, 1)
            except PapError as exc:
                unrenderable[zname] = f"cannot render zone {zname}: {exc}"
                continue
            paths[zname] = os.path.join(d, f"{zname}.zone")
            with open(paths[zname], "w", encoding="utf-8") as fh:
                fh.write(text)
        # The server types' checkers are separate processes: run them side by side.
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(servers) or 1) as pool:
            found = dict(
                zip(
                    servers,
                    pool.map(lambda server: dnsserver.check_zone_files(server, paths), servers),
                    strict=True,
                )
            )
        for server in servers:
            refused[server].update(unrenderable)
            tool = dnsserver.CHECKZONE[server]
            for zname, message in found[server].items():
                with open(paths[zname], encoding="utf-8") as fh:
                    text = fh.read()
                refused[server][zname] = _checker_message(
                    CheckFailed(tool, f"zone {zname}", message), text, f"zone {zname} ({server})"
                )
    return refused


def validate(revision, compiled, sources, prefix="", files=(), render_lines=None):
    """Validate every minion's pillar of ``revision``; return a :class:`Validated`.

    compiled
        ``{minion: Compiled}``: each minion's pillar, compiled by Salt from the revision.
    sources
        ``{svn path: data}``: each SLS file of the revision rendered on its own, to name the file
        that holds a pillar path.
    prefix, files
        The svn path of the pillar tree and its SLS files (relative), for render errors.
    render_lines
        ``{SLS file (relative): line}``: where each file that failed to render on its own failed
        (``SaltRenderError.line_num``), for the render errors that do not say.

    Raises :class:`Rejected` listing every problem: Salt render errors, schema errors
    (:func:`paphosting.model.parse`), servers the platform names but the top file gives no
    ``paphosting`` pillar, and rendered files a real checker refuses.
    """
    problems = _Problems(sources, prefix, files)
    platforms = {}
    renderers = {}
    named = {}
    render_lines = render_lines or {}
    by_sls = {sls_name(f): f for f in files}
    for minion in sorted(compiled):
        item = compiled[minion]
        for err in item.errors:
            rel = by_sls.get(failed_sls(err))
            problems.add(
                (),
                render_problem(err, render_lines.get(rel)),
                minion,
                files=(_svn_path(prefix, rel),) if rel else (_svn_path(prefix, "top.sls"),),
            )
        if item.errors or model.ROOT not in item.pillar:
            # What did render is incomplete: its schema errors would be consequences, not causes.
            continue
        try:
            # Every minion of one platform: one parse (platformcache keys it by the digest).
            renderers[minion] = platformcache.load(item.pillar[model.ROOT])
            platforms[minion] = renderers[minion].platform
        except InvalidPillar as exc:
            problems.pillar_errors(exc, minion)
            continue
        for server in platform_servers(platforms[minion]):
            named.setdefault(server, minion)
    for server, by in sorted(named.items()):
        item = compiled.get(server)
        if item is not None and model.ROOT not in item.pillar and not item.errors:
            role = ", ".join(platforms[by].roles(server))
            problems.add(
                (),
                f"{server} is a {role} of the platform but the top file gives it no {model.ROOT} pillar",
                server,
                files=(_svn_path(prefix, "top.sls"),),
            )
    checked = []
    done = {}
    for minion in sorted(platforms):
        platform = platforms[minion]
        digest = model.digest(compiled[minion].pillar.get(model.ROOT))
        for label, path, render, check in checks(platform, minion):
            # Zones are the same for every nameserver of one server type: check each once.
            key = (digest, label if label.startswith("zone ") else f"{minion}:{label}")
            if key in done:
                if done[key] is not None:
                    problems.add(*done[key][:2], minion)
                continue
            done[key] = None
            try:
                text = render()
            except InvalidPillar as exc:
                done[key] = (exc.errors[0].path, exc.errors[0].reason)
                problems.pillar_errors(exc, minion)
                continue
            except PillarError as exc:
                done[key] = (exc.path, exc.reason)
                problems.add(exc.path, exc.reason, minion)
                continue
            except PapError as exc:
                done[key] = (path, f"cannot render {label}: {exc}")
                problems.add(path, f"cannot render {label}: {exc}", minion)
                continue
            try:
                check(text)
            except CheckFailed as exc:
                if label.startswith("haproxy"):
                    where = haproxy_path(
                        platform, minion, text, exc.output, compiled[minion].pillar
                    )
                else:
                    where = path
                # "haproxy.cfg of lb1" -> "haproxy.cfg": the minions are listed with the problem.
                message = _checker_message(exc, text, label.split(" of ")[0])
                done[key] = (where, message)
                problems.add(where, message, minion)
                continue
            checked.append(label)
    # Certificates (docs/tls.md): what each load balancer would serve, checked before it can go
    # live, as its state will check them.
    for minion in sorted(platforms):
        platform = platforms[minion]
        published = (compiled[minion].pillar.get(secrets.PILLAR_KEY) or {}).get(tls.KIND)
        if minion not in platform.loadbalancers or not published:
            continue
        for path, rel, message in check_certificates(platform, minion, published):
            problems.add(path, message, minion, files=(_svn_path(prefix, rel),) if rel else None)
        checked += [
            f"certificate {s} ({minion})" for s in sorted(tls.wanted(platform, minion, published))
        ]
    # Zones are the same for every nameserver of one platform: render each once, and check it
    # once per server type, in bulk.
    by_digest = {}
    for minion in sorted(platforms):
        ns = platforms[minion].nameservers.get(minion)
        if ns is not None:
            digest = model.digest(compiled[minion].pillar.get(model.ROOT))
            by_digest.setdefault(digest, (renderers[minion], []))[1].append((minion, ns.server))
    for renderer, members in by_digest.values():
        platform = renderer.platform
        servers = sorted({server for _, server in members})
        refused = check_zones(renderer, servers)
        checked += [f"zone {z} ({s})" for s in servers for z in sorted(platform.zones)]
        for minion, server in members:
            for zname, message in refused[server].items():
                problems.add((model.ROOT, "zones", zname), message, minion)
    found = problems.list(everyone=[m for m, c in compiled.items() if model.ROOT in c.pillar])
    if found:
        raise Rejected(revision, found)
    return Validated(minions=sorted(platforms), checked=checked, platforms=platforms)


# --- the fleet ----------------------------------------------------------------------------------


def canary(validated, targets):
    """``(first, rest)``: one load balancer and one nameserver among ``targets``, then the others."""
    roles = validated.roles()
    targets = sorted(targets)
    first = []
    for role in ("loadbalancer", "nameserver"):
        pick = next((m for m in targets if role in roles.get(m, ()) and m not in first), None)
        if pick is not None:
            first.append(pick)
    return first, [m for m in targets if m not in first]


def other_masters(platform, own_addresses, own_name=None):
    """``{name: address}`` of the masters of ``platform`` (``paphosting:masters``) other than
    this one: the one named ``own_name`` or listening on one of ``own_addresses``."""
    return {
        name: m.address
        for name, m in sorted((getattr(platform, "masters", None) or {}).items())
        if name != own_name and m.address not in own_addresses
    }


def orphaned_state_jobs(running, published_here):
    """``{minion: [jid, ...]}``: the state jobs (``state.*``, which hold a minion's state queue)
    in ``running`` (``{minion: saltutil.running list}``) that this master did not publish
    (``published_here(jid)`` False). Called only when no other master is reachable: then such a
    job was left by a master that died, and it would hold the minion until its requests to that
    master give up (Salt's ``request_channel_timeout``, 60 s, three tries)."""
    out = {}
    for minion, jobs in sorted(running.items()):
        if not isinstance(jobs, list):
            continue  # the minion did not answer: nothing to clear there
        jids = sorted(
            str(job["jid"])
            for job in jobs
            if isinstance(job, dict)
            and str(job.get("fun", "")).startswith("state.")
            and job.get("jid")
            and not published_here(str(job["jid"]))
        )
        if jids:
            out[minion] = jids
    return out


@dataclass
class Outcome:
    """One minion's ``state.apply``: did it work, what changed, what failed."""

    minion: str
    ok: bool
    changed: list = field(default_factory=list)  # (state id, comment, diff or None)
    failed: list = field(default_factory=list)  # (state id, comment)
    error: str = ""

    def line(self, test=False):
        if self.error:
            return f"{self.minion}: FAILED: {self.error}"
        if self.failed:
            sid, comment = self.failed[0]
            more = f" (and {len(self.failed) - 1} more)" if len(self.failed) > 1 else ""
            return f"{self.minion}: FAILED: {sid}: {comment}{more}"
        if not self.changed:
            return f"{self.minion}: no changes"
        verb = "would change" if test else "changed"
        return f"{self.minion}: {verb} {len(self.changed)}: " + ", ".join(
            c[0] for c in self.changed
        )


def _state_id(key, value):
    if isinstance(value, dict) and value.get("__id__"):
        fun = key.split("_|-")
        return f"{fun[0]}.{fun[-1]} {value['__id__']}" if len(fun) >= 4 else value["__id__"]
    return key


def state_outcome(minion, ret, test=False):
    """Read one minion's ``state.apply`` return (``None`` when the minion did not answer)."""
    if ret is None:
        return Outcome(minion, False, error="no answer (minion down or too slow)")
    if (
        isinstance(ret, dict)
        and "ret" in ret
        and set(ret) <= {"ret", "retcode", "jid", "out", "success"}
    ):
        ret = ret["ret"]
    if isinstance(ret, (list, tuple)):
        return Outcome(
            minion, False, error="; ".join(str(r) for r in ret) or "the highstate did not render"
        )
    if isinstance(ret, str):
        return Outcome(minion, False, error=ret)
    if not isinstance(ret, dict):
        return Outcome(minion, False, error=f"unexpected return {ret!r}")
    out = Outcome(minion, True)
    for key, value in sorted(
        ret.items(), key=lambda kv: kv[1].get("__run_num__", 0) if isinstance(kv[1], dict) else 0
    ):
        if not isinstance(value, dict):
            continue
        sid = _state_id(key, value)
        result = value.get("result")
        changes = value.get("changes") or {}
        if result is False:
            out.failed.append(
                (
                    sid,
                    (value.get("comment") or "").strip().splitlines()[0]
                    if value.get("comment")
                    else "failed",
                )
            )
        elif changes or (test and result is None):
            diff = changes.get("diff") if isinstance(changes, dict) else None
            out.changed.append((sid, (value.get("comment") or "").strip(), diff))
    out.ok = not out.failed
    return out


# --- texts --------------------------------------------------------------------------------------


def describe(rev):
    """``r12 by alice, 2026-01-31 12:00:00 UTC: "message"`` for a revision dict or object."""
    get = rev.get if isinstance(rev, dict) else lambda k, d=None: getattr(rev, k, d)
    number = get("number", None) or get("revision", None)
    msg = (get("message", "") or "").strip().splitlines()
    text = f"r{number} by {get('author', '?') or '?'}, {short_time(get('date', ''))}"
    return text + (f': "{msg[0]}"' if msg else "")


def short_time(stamp):
    """An svn or record timestamp as ``2026-01-31 12:00:00 UTC``."""
    if not stamp:
        return "?"
    match = re.match(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)", stamp)
    return f"{match.group(1)} {match.group(2)} UTC" if match else stamp


def refusal_text(revision, problems, live):
    """What an admin reads when a push is refused."""
    n = len(problems)
    kept = f"r{live}" if live is not None else "nothing (no revision was ever made live here)"
    lines = [f"push refused: r{revision} has {n} problem{'s' * (n != 1)}:"]
    lines += [f"  - {p}" for p in problems]
    lines.append(f"Nothing was changed: the live pillar stays {kept} and no minion was touched.")
    return "\n".join(lines)


def status_text(master, record, live, held):
    """The status table of one master."""
    rows = [("master", master)]
    info = record.get("live") or {}
    if live is None:
        rows.append(("live", "nothing yet (run svnpillar.push)"))
    else:
        if info.get("revision") == live:
            rows.append(("live", describe(info)))
            rows.append(("since", f"{short_time(info.get('since'))} ({info.get('by', '?')})"))
        else:
            rows.append(("live", f"r{live}"))
    rows.append(("held", ", ".join(f"r{n}" for n in held) or "-"))
    push = record.get("last_push")
    if push:
        mode = " test=True" if push.get("test") else ""
        rows.append(
            (
                "last push",
                f"{short_time(push.get('time'))} r{push.get('revision', '?')}{mode}: {push.get('outcome', '?')}",
            )
        )
        for line in push.get("minions", []):
            rows.append(("", line))
        if push.get("outcome") not in ("applied", "tested") and push.get("detail"):
            for line in push["detail"].splitlines()[:12]:
                rows.append(("", line))
    sync = record.get("last_sync")
    if sync:
        rows.append(("last sync", f"{short_time(sync.get('time'))}: {sync.get('outcome', '?')}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}".rstrip() for k, v in rows)
