#!/usr/bin/env python3
"""A tiny demo web application: it says which server answered and counts a session's requests.

    webapp.py --name web1 --address 127.0.2.1 --port 8000 [--pidfile FILE]

``GET /health`` answers ``200 ok`` (the load balancers' health check). Every other ``GET``
answers JSON ``{"server": NAME, "count": N, "session": ID, "path": PATH, "host": HOST}``, where
``count`` is the number of requests this server has seen in the client's session. The session is a
cookie (``webapp_session``) that this server sets itself and keeps in memory: a client that moves
to another server starts a new count there, which makes stickiness visible.

Standard library only; it runs on any Python 3 without the project's virtualenv.
"""

import argparse
import contextlib
import json
import os
import secrets
import signal
import sys
import threading
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SESSION_COOKIE = "webapp_session"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "paphosting-webapp/1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            super().log_message(fmt, *args)

    def _send(self, status, body, content_type, headers=()):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Served-By", self.server.name)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _session(self):
        jar = SimpleCookie()
        with contextlib.suppress(CookieError):
            jar.load(self.headers.get("Cookie", ""))
        morsel = jar.get(SESSION_COOKIE)
        return morsel.value if morsel is not None else None

    def do_GET(self):
        if self.path.split("?", 1)[0] == "/health":
            self._send(200, "ok\n", "text/plain")
            return
        app = self.server
        session = self._session()
        headers = []
        with app.lock:
            if session not in app.sessions:
                session = secrets.token_hex(8)
                app.sessions[session] = 0
                headers.append(("Set-Cookie", f"{SESSION_COOKIE}={session}; Path=/; HttpOnly"))
            app.sessions[session] += 1
            count = app.sessions[session]
        body = {
            "server": app.name,
            "count": count,
            "session": session,
            "path": self.path,
            "host": self.headers.get("Host"),
        }
        self._send(200, json.dumps(body, sort_keys=True) + "\n", "application/json", headers)

    do_HEAD = do_GET


class App(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: with thousands of services, the load balancers'
    # health checks arrive in bursts larger than that, the kernel drops the SYNs beyond the
    # backlog and haproxy sees connect timeouts (L4TOUT) from a server that is up.
    request_queue_size = 1024

    def __init__(self, name, address, port, verbose=False):
        super().__init__((address, port), Handler)
        self.name = name
        self.verbose = verbose
        self.sessions = {}
        self.lock = threading.Lock()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="the server name reported in every answer")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--pidfile", help="write the process id here, remove it on exit")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    app = App(args.name, args.address, args.port, args.verbose)
    if args.pidfile:
        with open(args.pidfile, "w", encoding="ascii") as fh:
            fh.write(f"{os.getpid()}\n")

    def _stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    print(f"webapp {args.name} serving on {args.address}:{args.port}", file=sys.stderr, flush=True)
    try:
        app.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        app.server_close()
        if args.pidfile:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(args.pidfile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
