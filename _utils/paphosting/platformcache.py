"""The platform of a ``paphosting`` pillar, parsed once per pillar digest.

Parsing a hoster's pillar (thousands of zones) takes seconds, and formatting its zones as many
again; a failover or a no-change highstate must not pay that each time. :func:`load` returns a
:class:`Compiled` (the :class:`~paphosting.model.Platform` and its zone
:class:`~paphosting.zone.Renderer`) for a pillar value, from

1. this process's memory, keyed by the digest (:func:`paphosting.model.digest`): masters' worker
   processes live long;
2. ``<cachedir>/paphosting/platform/<digest>-<code>.<part>.pickle``: a minion runs every job in
   a fresh process, so only the disk outlives one job. ``<code>`` is :data:`paphosting.CODE`, the
   version of the code that wrote it: a Renderer or Platform pickled by other code (before a
   deploy) is never read into this code's classes. Written atomically, mode 0600, in the cache
   folder Salt keeps for root alone; the two newest are kept;
3. else the pillar is parsed (and validated) now.

The key is the digest of the whole pillar value: any change to the pillar is a new key, so a
stale platform is never served (a test holds it to that). An invalid pillar is never cached.
"""

import os
import pickle

import paphosting
from paphosting import files, model, zone

MEMORY = 2
ON_DISK = 2
_memory = {}


def _folder(cachedir):
    return os.path.join(cachedir, "paphosting", "platform")


def _key(digest):
    """The files' name for ``digest``: the pillar's digest and the code's (:data:`paphosting.CODE`)."""
    return f"{digest}-{paphosting.CODE}"


def _path(cachedir, digest, part):
    return os.path.join(_folder(cachedir), f"{_key(digest)}.{part}.pickle")


def _read(path):
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
        return None


def _remember(renderer):
    _memory[renderer.digest] = renderer
    while len(_memory) > MEMORY:
        _memory.pop(next(iter(_memory)))


def cached(digest, cachedir=None):
    """The :class:`~paphosting.zone.Renderer` of the pillar whose digest is ``digest``, if this
    process or ``cachedir`` holds it, else None. From disk only the renderer is read (tens of
    milliseconds for thousands of zones); its ``platform`` is read when first asked for."""
    found = _memory.get(digest)
    if found is not None or not cachedir:
        return found
    found = _read(_path(cachedir, digest, "renderer"))
    if not isinstance(found, zone.Renderer) or getattr(found, "digest", None) != digest:
        return None
    platform_path = _path(cachedir, digest, "platform")

    def platform():
        loaded = _read(platform_path)
        if not isinstance(loaded, model.Platform):
            raise zone.ZoneError(f"{platform_path} is missing or unreadable")
        return loaded

    found._load_platform = platform
    found.saved = found.templates()
    _remember(found)
    return found


def load(paphosting, cachedir=None, digest=None):
    """The :class:`~paphosting.zone.Renderer` (``.platform`` the parsed
    :class:`~paphosting.model.Platform`, ``.digest`` the key) of the ``paphosting`` pillar value.

    ``digest`` is that value's :func:`~paphosting.model.digest` when the caller has it already.
    Raises :class:`~paphosting.errors.InvalidPillar` as :func:`paphosting.model.parse` does.
    """
    digest = digest or model.digest(paphosting)
    found = cached(digest, cachedir)
    if found is not None:
        return found
    found = zone.Renderer(model.parse(paphosting))
    found.digest = digest
    found.saved = None
    _remember(found)
    return found


def platform(paphosting, cachedir=None, digest=None):
    """The parsed :class:`~paphosting.model.Platform` of the ``paphosting`` pillar value, parsed
    once per digest for every process that shares ``cachedir``.

    For the masters: their request workers (the ``rotation`` and ``secrets`` ext_pillars), the
    reactor's runners and the metrics engine each want the platform of the same pillar, and
    at 5,000 customer zones a parse is some 10 s of CPU. Without sharing, a pillar change had
    every one of those processes parse at once on two cores, and minions' pillar requests timed
    out (60 s, three tries). With ``cachedir`` the first process parses under a file lock and
    writes ``<cachedir>/paphosting/platform/<digest>.platform.pickle`` (0600); the others wait
    for the lock and read it (a quarter of a second). Raises
    :class:`~paphosting.errors.InvalidPillar` as :func:`paphosting.model.parse` does; an invalid
    pillar is never written.
    """
    digest = digest or model.digest(paphosting)
    found = _memory.get(digest)
    if found is not None or not cachedir:
        return (found or load(paphosting, digest=digest)).platform
    folder = _folder(cachedir)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = _path(cachedir, digest, "platform")
    with files.locked(os.path.join(folder, f"{_key(digest)}.lock")):
        parsed = _read(path)
        if not isinstance(parsed, model.Platform):
            parsed = model.parse(paphosting)
            files.write_checked(
                path,
                pickle.dumps(parsed, protocol=pickle.HIGHEST_PROTOCOL),
                mode=0o600,
                binary=True,
            )
            files.keep_newest(folder, ON_DISK)
    found = zone.Renderer(parsed)
    found.digest = digest
    found.saved = None
    _remember(found)
    return parsed


def save(renderer, cachedir):
    """Keep ``renderer`` (every zone prepared) and its platform on disk, unless it is there with
    nothing new; keep only the newest :data:`ON_DISK` pillars' files."""
    if not cachedir or renderer.saved == renderer.templates():
        return
    renderer.prepare()
    folder = _folder(cachedir)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    if renderer.saved is None:
        files.write_checked(
            _path(cachedir, renderer.digest, "platform"),
            pickle.dumps(renderer.platform, protocol=pickle.HIGHEST_PROTOCOL),
            mode=0o600,
            binary=True,
        )
    files.write_checked(
        _path(cachedir, renderer.digest, "renderer"),
        pickle.dumps(renderer, protocol=pickle.HIGHEST_PROTOCOL),
        mode=0o600,
        binary=True,
    )
    renderer.saved = renderer.templates()
    files.keep_newest(folder, ON_DISK)


def forget():
    """Empty this process's memory (tests)."""
    _memory.clear()
