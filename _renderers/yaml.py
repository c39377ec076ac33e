"""
Salt's ``yaml`` renderer, each distinct text parsed once per process.

This module has the name of Salt's own ``yaml`` renderer on purpose: a renderer of the same name
in ``render_dirs`` takes its place in the loader, so every YAML rendering of the masters goes
through it, whatever asks for it (the default ``jinja|yaml`` pipe, a ``#!yaml`` shebang, the
reactor). It gives exactly what Salt's renderer gives (it calls it), but parses a text it has
seen before only once (``paphosting.parsememo.YAML``, one per process): a master compiles the same
megabytes of platform pillar for every minion, and Salt's pure-Python YAML loader takes about
20 s for 5 MB (5,000 customer zones). A file whose Jinja output differs per minion gives
another text, parsed on its own.

Master configuration (``conf/master.d/paphosting.conf``):

.. code-block:: yaml

    render_dirs:
      - /srv/paphosting/_renderers
"""

import os

import salt.renderers.yaml as salt_yaml

try:
    from paphosting.fresh import drop_stale

    drop_stale()  # the synced core, not a parent process's copy (paphosting/fresh.py)
    from paphosting import parsememo
except ImportError:
    # Masterless runs (``salt-call --local --module-dirs``, scripts/validate-pillar) load the
    # renderers before the project's utils are importable: render as Salt does, without memo.
    parsememo = None


def render(yaml_data, saltenv="base", sls="", argline="", **kws):
    """What Salt's ``yaml`` renderer returns for ``yaml_data``, from memory when this process
    parsed the same text (with the same options) before."""
    text = yaml_data if isinstance(yaml_data, str) else yaml_data.read()

    def parse():
        # Salt's renderer reads its options from the dunder its loader gives it; this module's
        # loader gave ours.
        salt_yaml.__opts__ = __opts__
        return salt_yaml.render(text, saltenv, sls, argline, **kws)

    if parsememo is None:
        return parse()
    # On a master the processes share long texts' results through its cache folder.
    disk = None
    if __opts__.get("__role") == "master" and __opts__.get("cachedir"):
        disk = os.path.join(__opts__["cachedir"], "paphosting", "parsememo")
    key = (argline, bool(__opts__.get("use_yamlloader_old")))
    return parsememo.YAML.parse(key, text, parse, disk=disk)
