"""What haproxy retries, with the project's own rendered lines and a real haproxy.

A backend that takes a request and closes without answering (a server dying mid-request): a GET
is sent again to the other server and answered; a POST is not sent again (it must not reach two
servers: a shop's order placed twice) and the client gets 502. The ``defaults`` section and the
service's backend lines are the ones ``paphosting.haproxy.render`` writes; only the servers are
pointed at the two test servers below.
"""

import http.client
import shutil
import socket
import subprocess
import threading

import pytest

from paphosting import haproxy, model
from tests.conftest import example_pillar
from tests.integration.conftest import wait

LB1 = "lb1.paphosting.net"


class Server(threading.Thread):
    """Counts the requests it takes; ``answer`` False: closes each without a word."""

    def __init__(self, address, answer):
        super().__init__(daemon=True)
        self.sock = socket.create_server((address, 0))
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.requests = []

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(65536)
                if not data:
                    continue
                line = data.split(b"\r\n", 1)[0].decode()
                if "/health" in line:
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    continue
                self.requests.append(line.split()[0])
                if self.answer:
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    )


def section(text, header):
    lines = text.splitlines()
    start = lines.index(header)
    out = [header]
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break
        out.append(line)
    return [line for line in out if line.strip() and not line.strip().startswith("#")]


@pytest.fixture
def lb(loopback, tmp_path):
    address = loopback.address()
    dying, living = Server(address, answer=False), Server(address, answer=True)
    for s in (dying, living):
        s.start()
    text = haproxy.render(model.parse(example_pillar()), LB1)
    backend = [
        line
        for line in section(text, "backend www")
        if not line.strip().startswith(
            ("server ", "default-server", "option httpchk", "http-check")
        )
    ]
    port = loopback.port(address)
    config = "\n".join(
        section(text, "defaults")
        + ["frontend f", f"    bind {address}:{port}", "    default_backend www"]
        + backend
        + [
            f"    server dying {address}:{dying.port}",
            f"    server living {address}:{living.port}",
        ]
    )
    path = tmp_path / "haproxy.cfg"
    path.write_text(config + "\n")
    proc = subprocess.Popen([shutil.which("haproxy"), "-f", str(path)], stderr=subprocess.PIPE)
    try:

        def listening():
            try:
                socket.create_connection((address, port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait(listening, "haproxy to listen")
        yield address, port, dying, living
    finally:
        proc.terminate()
        proc.wait(10)
        for s in (dying, living):
            s.sock.close()


def request(address, port, method):
    conn = http.client.HTTPConnection(address, port, timeout=10)
    try:
        conn.request(method, "/x", body=b"order=1" if method == "POST" else None)
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_get_is_sent_again_after_an_empty_response_a_post_is_not(lb):
    address, port, dying, living = lb
    # Round robin: each request meets the dying server first every other time; four of each
    # method makes sure both meet it.
    got = {m: [request(address, port, m) for _ in range(4)] for m in ("GET", "POST")}
    assert got["GET"] == [200] * 4, got
    posts_dying = dying.requests.count("POST")
    posts_living = living.requests.count("POST")
    assert posts_dying >= 1, (dying.requests, living.requests)
    # Every POST reached exactly one server: those that met the dying one failed (502).
    assert posts_dying + posts_living == 4, (dying.requests, living.requests)
    assert got["POST"].count(502) == posts_dying and got["POST"].count(200) == posts_living, got
