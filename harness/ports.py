"""Free ports on a loopback address, for the lab, the peers of the benchmark and the tests."""

import socket


def free_port(address="127.0.0.1", kind=socket.SOCK_STREAM):
    """A port the kernel hands out as free on ``address`` (TCP, or ``kind``) right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def port_in_use(address, port):
    """True when a TCP listener could not bind ``address``:``port`` now."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return True
    return False


def udp_tcp_port(address, attempts=50):
    """A port free for both TCP and UDP on ``address`` (DNS servers want both)."""
    for _ in range(attempts):
        port = free_port(address)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((address, port))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no port free for UDP and TCP on {address}")
