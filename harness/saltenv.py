"""Salt's view of the repository, for the tests' and the lab's masters and minions.

A master (or a masterless minion) serves ``salt://`` from a folder of symlinks (:func:`file_root`):
every entry of the repository's ``salt/`` folder (top.sls and the role SLS) and the loader folders
``_modules``, ``_states``, ``_utils``, ``_beacons``, ``_runners``, ``_pillar``. Serving the
repository root itself would make Salt's fileserver walk ``.venv``. A minion loads the project's
modules straight from the checkout (:func:`loader_dirs`); a master runs with
``conf/master.d/paphosting.conf``, the checkout in place of ``/srv/paphosting``
(:func:`master_config`), a minion with ``conf/minion.d/paphosting.conf``, the lab's masters in
place of the real ones (:func:`minion_config`).
"""

import os
import pathlib

import yaml

from harness import REPO

LOADER_DIRS = ("_modules", "_states", "_utils", "_beacons", "_runners", "_pillar")
# The minion options that name a loader folder, and the folder.
MINION_LOADER_DIRS = {
    "module_dirs": "_modules",
    "states_dirs": "_states",
    "utils_dirs": "_utils",
    "beacons_dirs": "_beacons",
}
MASTER_CONF = REPO / "conf" / "master.d" / "paphosting.conf"
MINION_CONF = REPO / "conf" / "minion.d" / "paphosting.conf"
CONF_PREFIX = "/srv/paphosting"


def file_root(dest):
    """Create (or refresh) the symlink tree at ``dest`` and return it as a string."""
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {p.name: p for p in (REPO / "salt").iterdir()}
    wanted.update({d: REPO / d for d in LOADER_DIRS if (REPO / d).is_dir()})
    for name, target in wanted.items():
        link = dest / name
        if link.is_symlink() and os.readlink(link) == str(target):
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return str(dest)


def loader_dirs():
    """The minion options that load ``_modules``, ``_states``, ``_utils`` and ``_beacons`` from
    the checkout."""
    return {key: [str(REPO / folder)] for key, folder in MINION_LOADER_DIRS.items()}


def master_config(conf=MASTER_CONF, root=REPO):
    """``conf/master.d/paphosting.conf`` with ``root`` in place of ``/srv/paphosting``."""
    return yaml.safe_load(pathlib.Path(conf).read_text().replace(CONF_PREFIX, str(root)))


def minion_config(masters, port):
    """``conf/minion.d/paphosting.conf`` with ``masters`` (addresses, NL first) listening on
    ``port`` in place of the real masters."""
    conf = yaml.safe_load(MINION_CONF.read_text())
    conf["master"] = [f"{address}:{port}" for address in masters]
    conf["master_port"] = port
    return conf


def platform_master_config(address, ret_port, publish_port, file_roots, worker_threads):
    """One master of a two-master platform, as the lab (:class:`harness.launcher.Master`) and the
    integration tests (:mod:`tests.integration.multimaster`) both run it: ``conf/master.d/
    paphosting.conf`` on its own ``address``, on the ports every master of the platform shares,
    serving the ``salt://`` trees ``file_roots``. Each launcher adds only its own folders."""
    conf = master_config()
    conf.update(
        {
            "interface": address,
            "ret_port": ret_port,
            "publish_port": publish_port,
            "file_roots": {"base": [str(root) for root in file_roots]},
            "worker_threads": worker_threads,
        }
    )
    return conf


def platform_minion_config(masters, ret_port, publish_port, root):
    """One minion of a two-master platform (the lab's and the integration tests'):
    ``conf/minion.d/paphosting.conf`` connected to every address of ``masters`` (NL first), the
    project's modules from the checkout, everything it manages under ``root``
    (``paphosting_root``), and the waits of a platform whose masters are stopped and started."""
    conf = minion_config(masters, ret_port)
    conf.update(
        {
            "publish_port": publish_port,
            "paphosting_root": str(root),
            # A master stopped and started again: the minion signs in again within a second.
            "acceptance_wait_time": 1,
            "random_reauth_delay": 1,
            # Reverse lookups of every address of the machine: slow and useless on loopback.
            "enable_fqdns_grains": False,
            "enable_gpu_grains": False,
            **loader_dirs(),
        }
    )
    return conf
