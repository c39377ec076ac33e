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
    parser.add_argument(
        "--customers",
        type=int,
        default=0,
        metavar="N",
        help="add N customer zones, each with its apex on the rotation (a hoster's platform)",
    )
    args = parser.parse_args(argv)
    t0 = time.monotonic()

    def say(message):
        print(f"[{time.monotonic() - t0:6.1f}s] {message}", flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    if args.customers:
        from lab import synthetic

        lab = Lab("lab", pillar=synthetic.customers(args.customers), say=say)
    else:
        lab = Lab("lab", say=say)
    try:
        lab.start()
        if not args.no_push:
            what = f" with {args.customers} customer zones" if args.customers else ""
            rev = lab.commit(lab.pillar_files(), "the example platform" + what)
            res = lab.push("nl")
            say(
                f"pushed r{rev} from NL (exit status {res.returncode}):\n{res.stdout}{res.stderr if res.returncode else ''}"
            )
        for m in lab.masters.values():
            say(
                f"master {m.name.upper()}: {BIN}/salt -c {m.conf_dir} '*' test.ping   (salt-run -c {m.conf_dir} rotation.status)"
            )
        if lab.svn is not None:
            say(
                f"Subversion: {lab.svn.url} (user admin, password secret); working copy {lab.svn.wc}"
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
