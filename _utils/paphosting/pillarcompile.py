"""
Every minion's pillar of a revision, compiled as Salt compiles it, for the push's validation.

A push must validate what each minion will really get, so each minion's pillar goes through
Salt's own ``Pillar.compile_pillar`` (top file, matching, includes, renderers, merging). What
is costly in it at a hoster's size is not Salt's logic but parsing the same megabytes of YAML
once per minion (5 MB with 5,000 customer zones, 20 s a parse). :class:`RenderMemo` makes the
data renderers (``yaml``, ``yamlex``) pure functions of their input text: a text seen before is
not parsed again but copied from the first parse. That is exact, not an approximation: a file
whose Jinja output differs per minion (grains, the id) gives another text and another parse;
only identical texts share one.

Used by the ``svnpillar`` runner (the push) and by ``make bench`` (the push-validation figure).
"""

import os
import pickle
from collections.abc import Mapping

import salt.pillar
import salt.template
from salt.exceptions import SaltRenderError

from paphosting import push

# Renderers whose output is data and depends on nothing but the text they are given.
DATA_RENDERERS = frozenset({"yaml", "yamlex"})


class RenderMemo:
    """Parsed results of the data renderers, by input text, shared by many compiles."""

    def __init__(self):
        self._parsed = {}
        self.hits = 0
        self.misses = 0

    def wrap(self, name, render):
        def memo_render(data, saltenv="base", sls="", argline="", **kwargs):
            text = data.getvalue() if hasattr(data, "getvalue") else data
            if not isinstance(text, str):
                return render(data, saltenv, sls, argline=argline, **kwargs)
            key = (name, argline, text)
            blob = self._parsed.get(key)
            if blob is not None:
                self.hits += 1
                # A fresh copy: Salt merges into what a renderer returns.
                return pickle.loads(blob)
            self.misses += 1
            result = render(data, saltenv, sls, argline=argline, **kwargs)
            self._parsed[key] = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
            return result

        return memo_render


class _Renderers(Mapping):
    """A Salt renderer loader whose data renderers go through a :class:`RenderMemo`."""

    def __init__(self, loader, memo):
        self._loader = loader
        self._memo = memo
        self._wrapped = {}

    def __getitem__(self, name):
        render = self._loader[name]
        if name.split(".")[0] not in DATA_RENDERERS:
            return render
        if name not in self._wrapped:
            self._wrapped[name] = self._memo.wrap(name, render)
        return self._wrapped[name]

    def __contains__(self, name):
        return name in self._loader

    def __iter__(self):
        return iter(self._loader)

    def __len__(self):
        return len(self._loader)

    def __getattr__(self, name):
        # Everything else Salt asks of its loader (``pack``: the __pillar__ its renderers see).
        return getattr(self._loader, name)


def _pillar(opts, grains, minion, memo, functions=None):
    pillar = salt.pillar.Pillar(opts, grains, minion, "base", functions=functions)
    pillar.rend = _Renderers(pillar.rend, memo)
    return pillar


def compile_tree(opts, tree, prefix, minions, grains_of=None):
    """Every minion's pillar compiled from the pillar tree ``tree``, and each SLS file rendered
    on its own (to name the file that holds a pillar path).

    opts
        The master's options (their renderers and ext_pillar apply).
    tree
        The directory of the revision's pillar tree (its ``top.sls`` included).
    prefix
        The Subversion path of that tree, for the names of the files.
    minions
        The minions to compile for; every server the pillar names is added, until no new name
        appears.
    grains_of
        ``minion -> grains`` (a minion's cached grains); ``{"id": minion}`` when not given.

    Returns ``(compiled, sources, files, render_lines)`` for :func:`paphosting.push.validate`.
    """
    opts = dict(opts)
    opts.update(
        pillar_roots={"base": [tree]},
        pillarenv=None,
        pillarenv_from_saltenv=False,
        pillar_safe_render_error=False,
        pillar_cache=False,
    )
    memo = RenderMemo()
    files = push.sls_files(tree)
    first = _pillar(opts, {"id": opts.get("id")}, opts.get("id"), memo)
    try:
        sources = {}
        render_lines = {}
        for rel in files:
            try:
                data = salt.template.compile_template(
                    os.path.join(tree, rel),
                    first.rend,
                    opts["renderer"],
                    opts["renderer_blacklist"],
                    opts["renderer_whitelist"],
                    "base",
                    push.sls_name(rel),
                    _pillar_rend=True,
                )
            except SaltRenderError as exc:
                # The real compile below reports it; YAML's scanner errors lose their line on
                # the way into the pillar's _errors, so keep it here.
                if exc.line_num:
                    render_lines[rel] = exc.line_num
                continue
            except Exception:  # pylint: disable=broad-except
                continue  # the real compile below reports it
            if isinstance(data, dict):
                data = dict(data)
                data.pop("include", None)
                sources["/".join(p for p in (prefix, rel.replace(os.sep, "/")) if p)] = data
        todo = set(minions)
        for data in sources.values():
            todo |= push.named_servers(data)
        compiled = {}
        while todo:
            minion = min(todo)
            todo.discard(minion)
            grains = dict(grains_of(minion)) if grains_of else {}
            grains.setdefault("id", minion)
            pillar = _pillar(opts, grains, minion, memo, functions=first.functions)
            try:
                data = dict(pillar.compile_pillar())
            finally:
                pillar.destroy()
            errors = list(data.pop("_errors", []) or [])
            compiled[minion] = push.Compiled(minion, data, errors)
            todo |= push.named_servers(data) - set(compiled)
    finally:
        first.destroy()
    return compiled, sources, files, render_lines
