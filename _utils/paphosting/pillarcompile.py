"""
Every minion's pillar of a revision, compiled as Salt compiles it, for the push's validation.

A push must validate what each minion will really get, so each minion's pillar goes through
Salt's own ``Pillar.compile_pillar`` (top file, matching, includes, renderers, merging), with
the master's options: its ``yaml`` renderer (``_renderers/yaml.py``, loaded through the
master's ``render_dirs``) parses the platform's megabytes of YAML once for all the minions
instead of once per minion.

Used by the ``svnpillar`` runner (the push), by ``make bench`` (the push-validation figure), and
by ``paphosting.validate`` for :func:`render_alone` (one SLS on its own, for the line of a render
error).
"""

import os

import salt.pillar
import salt.template
import salt.utils.minions
from salt.exceptions import SaltRenderError

from paphosting import model, platformcache, pushcheck
from paphosting.errors import PapError


def accepted_minions(opts):
    """The ids of the minions whose keys this master accepted (``pki_dir/minions``), sorted."""
    pki = os.path.join(opts["pki_dir"], "minions")
    return sorted(os.listdir(pki)) if os.path.isdir(pki) else []


def generation(opts):
    """What changes whenever a master's pillar can have changed: every file under its
    ``pillar_roots`` (their paths, as symlinks resolve, sizes and modification times). A push or
    sync swaps the ``live`` symlink to a new revision; a hand edit changes a file. Cheap enough
    to ask at every health report; a compile is not."""
    seen = []
    for root in (opts.get("pillar_roots") or {}).get("base", []):
        real = os.path.realpath(root)
        for folder, dirs, names in os.walk(real, followlinks=True):
            dirs.sort()
            for name in sorted(names):
                path = os.path.join(folder, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                seen.append((path, st.st_size, st.st_mtime_ns))
    return tuple(seen)


def minion_platform(opts, minion_id):
    """The platform model from ``minion_id``'s pillar as the master serves it (compiled here,
    without ext_pillars; parsed once per pillar digest, :mod:`paphosting.platformcache`), and the
    digest of that ``paphosting`` pillar value (:func:`paphosting.model.digest`). Raises
    :class:`~paphosting.errors.PapError` when the pillar does not render."""
    _, grains, _ = salt.utils.minions.get_minion_data(minion_id, opts)
    opts = dict(opts, ext_pillar=[])
    pillar = salt.pillar.Pillar(opts, grains or {"fqdn": minion_id}, minion_id, "base")
    try:
        data = pillar.compile_pillar()
    finally:
        pillar.destroy()
    errors = data.get("_errors")
    if errors:
        raise PapError(f"the pillar of {minion_id} does not render: {'; '.join(map(str, errors))}")
    digest = model.digest(data.get(model.ROOT))
    return platformcache.platform(data.get(model.ROOT), opts.get("cachedir"), digest=digest), digest


def render_alone(path, renderers, opts, saltenv, sls):
    """The data of the pillar SLS file ``path`` (SLS name ``sls``) rendered on its own, as the
    pillar system renders it (``opts``' renderers; Jinja includes and imports found under
    ``pillar_roots``), without the files it includes. Raises what the renderer raised: a
    :class:`~salt.exceptions.SaltRenderError` with the ``line_num`` YAML's scanner errors lose on
    the way into a pillar's ``_errors``."""
    # A private Salt API, for want of a public one. Pillar.render_pstate (salt/pillar/__init__.py)
    # is what the pillar system calls for one SLS, but it merges the files the SLS includes (the
    # file that holds a value is no longer told apart) and turns the renderer's exception into an
    # ``_errors`` string, losing its line_num. salt.template.compile_template is the call
    # render_pstate makes; only its ``_pillar_rend=True`` (private) makes Jinja look under
    # pillar_roots rather than the file server's cache, as a pillar render does.
    return salt.template.compile_template(
        path,
        renderers,
        opts["renderer"],
        opts["renderer_blacklist"],
        opts["renderer_whitelist"],
        saltenv,
        sls,
        _pillar_rend=True,
    )


def _pillar(opts, grains, minion, functions=None):
    return salt.pillar.Pillar(opts, grains, minion, "base", functions=functions)


def compile_tree(opts, tree, prefix, minions, grains_of=None):
    """Every minion's pillar compiled from the pillar tree ``tree``, and each SLS file rendered
    on its own (to name the file that holds a pillar path).

    opts
        The master's options (their renderers, ``render_dirs`` and ext_pillar apply).
    tree
        The directory of the revision's pillar tree (its ``top.sls`` included).
    prefix
        The Subversion path of that tree, for the names of the files.
    minions
        The minions to compile for; every server the pillar names is added, until no new name
        appears.
    grains_of
        ``minion -> grains`` (a minion's cached grains); ``{"id": minion}`` when not given.

    Returns ``(compiled, sources, files, render_lines)`` for :func:`paphosting.pushcheck.validate`.
    """
    opts = dict(opts)
    opts.update(
        pillar_roots={"base": [tree]},
        pillarenv=None,
        pillarenv_from_saltenv=False,
        pillar_safe_render_error=False,
        pillar_cache=False,
    )
    files = pushcheck.sls_files(tree)
    first = _pillar(opts, {"id": opts.get("id")}, opts.get("id"))
    try:
        sources = {}
        render_lines = {}
        for rel in files:
            try:
                data = render_alone(
                    os.path.join(tree, rel), first.rend, opts, "base", pushcheck.sls_name(rel)
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
            todo |= pushcheck.named_servers(data)
        compiled = {}
        while todo:
            minion = min(todo)
            todo.discard(minion)
            grains = dict(grains_of(minion)) if grains_of else {}
            grains.setdefault("id", minion)
            pillar = _pillar(opts, grains, minion, functions=first.functions)
            try:
                data = dict(pillar.compile_pillar())
            finally:
                pillar.destroy()
            errors = list(data.pop("_errors", []) or [])
            compiled[minion] = pushcheck.Compiled(minion, data, errors)
            todo |= pushcheck.named_servers(data) - set(compiled)
    finally:
        first.destroy()
    return compiled, sources, files, render_lines
