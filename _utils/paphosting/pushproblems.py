"""A refused revision's problems: what each says and where it is.

A problem names the Subversion file, the pillar path and the message (:class:`Problem`). Where
comes from reading what Salt and the checkers said:

* :func:`locate`: the svn files that define a pillar path;
* :func:`render_cause`, :func:`failed_sls`, :func:`render_problem`: a Salt render error (a
  pillar's ``_errors`` item) as file, line and cause;
* :func:`haproxy_path`, :func:`narrow`, :func:`checker_message`: a checker's output as the pillar
  key at fault and the rendered line it names.
"""

import os
import re
from dataclasses import dataclass

from paphosting import model
from paphosting.errors import CheckFailed, path_text


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


def svn_path(prefix, relpath):
    """The svn path of file ``relpath`` of the pillar tree at svn path ``prefix``."""
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


def checker_message(exc, text, label):
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


class Problems:
    """The problems found so far, each once, with the minions that have it. ``sources``: the
    revision's SLS files rendered on their own (``{svn path: data}``, see :func:`locate`)."""

    def __init__(self, sources):
        self.sources = sources
        self.found = {}

    def add(self, path, message, minion=None, files=None):
        """Add a problem at pillar ``path``; ``files`` (svn paths) when known, else located."""
        path = tuple(str(p) for p in path)
        if files is None:
            files = tuple(locate(self.sources, path)) if path else ()
        key = (files, path_text(path), message)
        minions = self.found.setdefault(key, [])
        if minion is not None and minion not in minions:
            minions.append(minion)

    def pillar_errors(self, exc, minion):
        """Add every schema error of an :class:`~paphosting.errors.InvalidPillar`."""
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
