"""Run the lab platform and leave it up, to look around: ``.venv/bin/python scripts/lab up``.

Starts what ``make demo`` starts (under ``build/lab/``), pushes the example pillar from
Subversion (highstate everywhere), prints how to reach the masters with Salt's own commands, and
keeps everything running until Ctrl-C (or SIGTERM), then stops it all. See docs/demo.md.
"""

import argparse
import pathlib
import signal
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from lab.launcher import BIN, Lab, LabError  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(prog="scripts/lab", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command", choices=["up"], help="up: start the platform and keep it running"
    )
    parser.add_argument(
        "--no-push", action="store_true", help="start the daemons only; push nothing"
    )
    args = parser.parse_args(argv)
    t0 = time.monotonic()

    def say(message):
        print(f"[{time.monotonic() - t0:6.1f}s] {message}", flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    lab = Lab("lab", say=say, prometheus=True)
    try:
        lab.start()
        if not args.no_push:
            rev = lab.commit(lab.pillar_files(), "the example platform")
            res = lab.push("nl")
            say(
                f"pushed r{rev} from NL (exit status {res.returncode}):\n{res.stdout}{res.stderr if res.returncode else ''}"
            )
            # The minions started before anything was live; until they refresh their in-memory
            # pillar, rotation.apply fails on the nameservers (dns_zone.apply_all asks
            # dns_server.running, which parses the in-memory pillar).
            lab.salt(sorted(lab.minions), "saltutil.refresh_pillar", wait=True)
        for m in lab.masters.values():
            say(
                f"master {m.name.upper()}: {BIN}/salt -c {m.conf_dir} '*' test.ping   (salt-run -c {m.conf_dir} rotation.status)"
            )
        if lab.svn is not None:
            say(
                f"Subversion: {lab.svn.url} (user admin, password secret); working copy {lab.svn.wc}"
            )
        if lab.prometheus is not None:
            say(
                f"Prometheus: {lab.prometheus.url} (every target: {lab.prometheus.url}/targets; "
                f"the alerts: {lab.prometheus.url}/alerts)"
            )
        say("running; Ctrl-C stops everything")
        while not done.is_set():
            done.wait(1)
    except KeyboardInterrupt:
        pass
    except LabError as exc:
        say(f"lab: {exc}")
        return 1
    finally:
        for line in lab.stop():
            say(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
