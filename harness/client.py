"""A client of the platform: resolves names through each nameserver, browses with a cookie jar.

- :func:`resolve` asks one authoritative nameserver (dnspython, no recursion) for a name's
  addresses, following a CNAME inside the answer, and returns them with their TTL.
- :class:`Browser` is one person's browser: a cookie jar, and requests sent to a load balancer's
  address with the site's ``Host`` header; each answer says which webserver served it and the
  session's request count there (``salt/webserver/files/webapp.py``).
- :class:`Load` is a bounded background load (a few requests per second per worker) that counts
  every request a client would see fail.
- :class:`Client` (and :func:`http_get`) underneath: HTTP with a cookie jar, any ``Host``
  header, one connection per request; the tests use it too. With ``tls`` (an ``ssl``
  context), HTTPS to the address with the ``Host`` as SNI, verifying the chain against the
  context's roots (:func:`tls_context`).
"""

import hashlib
import http.client
import itertools
import json
import random
import socket
import ssl
import subprocess
import threading
import time
from http.cookies import CookieError, SimpleCookie

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype

from harness.wait import wait_until
from paphosting import dnsserver

# --- HTTP with a cookie jar -------------------------------------------------------------------


class Response:
    def __init__(self, status, headers, body, tls=None):
        self.status = status
        self.headers = headers
        self.body = body
        # HTTPS: {"version", "alpn", "peer"} of the connection (the leaf certificate, DER).
        self.tls = tls

    def json(self):
        return json.loads(self.body)

    @property
    def server(self):
        """The webapp that answered (``None`` when the answer did not come from one)."""
        try:
            return self.json().get("server")
        except ValueError:
            return None

    def __repr__(self):
        return f"<Response {self.status} {self.body[:80]!r}>"


class Client:
    """An HTTP client with a cookie jar, talking to ``address:port`` with any ``Host`` header.

    One new connection per request, like distinct browser requests through a load balancer.
    """

    def __init__(self, cookies=None):
        self.cookies = dict(cookies or {})

    def get(self, address, port, path="/", host=None, timeout=5.0, tls=None):
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
        info = None
        if tls is not None:
            # HTTPS to the address, with the site's name as SNI and as the name to verify.
            raw = socket.create_connection((address, port), timeout=timeout)
            try:
                conn.sock = tls.wrap_socket(raw, server_hostname=host)
            except BaseException:
                raw.close()
                raise
            info = {
                "version": conn.sock.version(),
                "alpn": conn.sock.selected_alpn_protocol(),
                "peer": conn.sock.getpeercert(binary_form=True),
            }
        headers = {"Connection": "close"}
        if host:
            headers["Host"] = host
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in sorted(self.cookies.items()))
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace")
            for value in resp.headers.get_all("Set-Cookie") or []:
                jar = SimpleCookie()
                try:
                    jar.load(value)
                except CookieError:
                    continue
                for name, morsel in jar.items():
                    self.cookies[name] = morsel.value
            return Response(resp.status, resp.headers, body, info)
        finally:
            conn.close()


def http_get(address, port, path="/", host=None, cookies=None, timeout=5.0, tls=None):
    """One GET; ``cookies`` is a :class:`Client` (its jar is used and updated) or a dict or None;
    ``tls`` an ``ssl`` context for HTTPS (:func:`tls_context`)."""
    client = cookies if isinstance(cookies, Client) else Client(cookies)
    return client.get(address, port, path, host, timeout, tls)


def curl_h2(address, port, host, root_path, path="/", timeout=30):
    """``curl --http2`` of ``https://host:port/path`` connected to ``address``, verifying against
    the root in ``root_path`` only: ``"<HTTP version> <status>"`` (``"2 200"``), or curl's error."""
    res = subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", str(root_path), "-o", "/dev/null",
         "-w", "%{http_version} %{http_code}", "--resolve", f"{host}:{port}:{address}",
         f"https://{host}:{port}{path}"],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return res.stdout.strip() if res.returncode == 0 else f"curl: {res.stderr.strip()}"


def tls_context(root_pem, alpn=("http/1.1",)):
    """A client's TLS context trusting ``root_pem`` only, verifying names, offering ``alpn``."""
    ctx = ssl.create_default_context(cadata=root_pem)
    ctx.set_alpn_protocols(list(alpn))
    return ctx


# --- DNS and browsing ------------------------------------------------------------------------


def resolve(ns, name, timeout=1.0):
    """``(sorted addresses, ttl)`` of ``name`` from nameserver ``ns`` (a model Nameserver), or
    ``(None, None)`` when it does not answer."""
    query = dns.message.make_query(name, "A")
    query.flags &= ~dns.flags.RD
    try:
        resp = dns.query.udp(query, ns.address, port=ns.port, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return None, None
    target = dns.name.from_text(name)
    for rrset in resp.answer:  # follow a CNAME chain inside the answer
        if rrset.name == target and rrset.rdtype == dns.rdatatype.CNAME:
            target = rrset[0].target
    addresses = []
    ttl = None
    for rrset in resp.answer:
        if rrset.name == target and rrset.rdtype == dns.rdatatype.A:
            addresses += [rd.address for rd in rrset]
            ttl = rrset.ttl
    return sorted(addresses), ttl


def resolve_all(nameservers, name, timeout=1.0):
    """``{ns name: sorted addresses or None}`` from every nameserver."""
    return {ns.name: resolve(ns, name, timeout)[0] for ns in nameservers}


def healthy(address, port, path, timeout=0.5):
    """True when ``http://address:port/path`` answers 200 (a load balancer's health URL)."""
    try:
        return Client().get(address, port, path, timeout=timeout).status == 200
    except (OSError, http.client.HTTPException):
        return False


class UpWatch:
    """Notes when a health URL first answers 200, polling every 50 ms from a background thread."""

    def __init__(self, address, port, path):
        self.at = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(address, port, path), daemon=True)
        self._thread.start()

    def _run(self, address, port, path):
        while not self._stop.is_set():
            if healthy(address, port, path, timeout=0.3):
                self.at = time.monotonic()
                return
            self._stop.wait(0.05)

    def wait(self, timeout):
        self._thread.join(timeout)
        self._stop.set()
        return self.at


class DnsWatch:
    """Asks every nameserver for ``name`` every 50 ms from a background thread and notes when each
    first answers exactly the addresses ``want``: the measurement does not wait for whatever the
    caller does meanwhile."""

    def __init__(self, nameservers, name, want, interval=0.05):
        self.nameservers = list(nameservers)
        self.name = name
        self.want = set(want)
        self.interval = interval
        self.at = {}  # nameserver name -> time.monotonic() of its first such answer
        self.last = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set() and len(self.at) < len(self.nameservers):
            for ns in self.nameservers:
                if ns.name in self.at:
                    continue
                got, _ = resolve(ns, self.name, timeout=0.3)
                self.last[ns.name] = got
                if got is not None and set(got) == self.want:
                    self.at[ns.name] = time.monotonic()
            self._stop.wait(self.interval)

    @property
    def done(self):
        """True once every nameserver answered ``want`` (or the watch was stopped)."""
        return not self._thread.is_alive()

    def wait(self, timeout):
        """Wait (bounded) until every nameserver answered ``want``; ``{name: time}`` of those that did."""
        self._thread.join(timeout)
        self._stop.set()
        return dict(self.at)


def wait_answer(nameservers, name, want, timeout):
    """Wait until every nameserver answered exactly the addresses ``want`` for ``name``;
    RuntimeError naming the last answers when one did not within ``timeout`` seconds."""
    watch = DnsWatch(nameservers, name, want)
    if len(watch.wait(timeout)) < len(watch.nameservers):
        raise RuntimeError(
            f"not every nameserver answered {sorted(want)} for {name} within {timeout:g} s "
            f"(last: {watch.last})"
        )


class ZoneWatch:
    """Notes when each nameserver serves the new version of every zone in ``names`` (zone
    names), and checks that the new version answers exactly ``want`` for each name's A records.

    Made before the change: it reads the SOA serial each nameserver serves for each zone. Then,
    from a thread per nameserver, it asks for the serials again and again (pipelined, read off the
    wire without dnspython: :func:`paphosting.dnsserver.served_serials`, thousands of zones in a
    few milliseconds), until every zone's serial changed; the time noted is when the answer that
    showed the last zone changed arrived (``rounds`` says how long rounds took: a zone is asked
    once a round, so that is late by at most the round that asked it). Only then it asks for the A records, once; a name that
    does not answer ``want`` yet is asked again and again (:func:`paphosting.dnsserver.query_many`)
    and, when any name answered something else, the time noted is when the last one answered
    ``want`` (else the time the serials changed; a lost answer is only asked again). A watch that parsed every A answer at every
    round would note the time late by a round (seconds at 5,000 zones, three nameservers' threads
    sharing one interpreter).

    ``first``: a name the platform changes before any of ``names`` (the rotation name: its zone
    is applied first). Each thread asks only for it, every ``interval``, until it answers
    ``want``, and only then starts the rounds over every zone: thousands of queries a round would
    otherwise take CPU from what is measured (the lab runs on the same cores) for the seconds
    the detection takes, when no zone can have changed yet.

    ``sample``: then, likewise, ask only for the serial of this zone of ``names`` until it
    changed, and only then start the rounds. The failover reloads the zones other than the
    rotation name's in one batch, so while it plans and writes them (a second at thousands of
    zones) no zone changes; rounds over every zone then took most of a core from it and made the
    figures worse than the platform is. The time noted is still the end of the round that saw
    every zone right."""

    def __init__(self, nameservers, names, want, interval=0.02, first=None, sample=None):
        self.nameservers = list(nameservers)
        self.names = list(names)
        self.want = sorted(want)
        self.interval = interval
        self.first = first
        self.sample = sample
        self.at = {}
        self.left = {ns.name: len(self.names) for ns in self.nameservers}
        self.rounds = {ns.name: [] for ns in self.nameservers}
        self.before = {ns.name: dnsserver.served_serials(ns, self.names) for ns in self.nameservers}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(ns,), daemon=True) for ns in self.nameservers
        ]
        for t in self._threads:
            t.start()

    def _addresses(self, resp):
        if resp is None:
            return None
        return sorted(rd.address for rr in resp.answer if rr.rdtype == dns.rdatatype.A for rd in rr)

    def _run(self, ns):
        before = self.before[ns.name]
        while self.first is not None and not self._stop.is_set():
            resp = dnsserver.query(ns, self.first.rstrip(".") + ".", "A", timeout=0.5)
            if self._addresses(resp) == self.want:
                break
            self._stop.wait(self.interval)
        while self.sample is not None and not self._stop.is_set():
            got = dnsserver.served_serials(ns, [self.sample], timeout=0.5, tries=1)
            if got[self.sample] is not None and got[self.sample] != before[self.sample]:
                break
            self._stop.wait(self.interval)
        pending = list(self.names)
        served = None
        while pending and not self._stop.is_set():
            t0 = time.monotonic()
            arrived = {}
            got = dnsserver.served_serials(ns, pending, timeout=0.5, tries=1, arrived=arrived)
            changed = [n for n in pending if got[n] is not None and got[n] != before[n]]
            if changed:
                # When the last of them was seen changed: its answer's arrival, not the round's end.
                served = max([arrived[n] for n in changed] + ([served] if served else []))
            pending = [n for n in pending if got[n] is None or got[n] == before[n]]
            self.rounds[ns.name].append(time.monotonic() - t0)
            self.left[ns.name] = len(pending)
            if pending:
                self._stop.wait(self.interval)
        served = served or time.monotonic()
        pending = list(self.names)
        wrong = False
        while pending and not self._stop.is_set():
            got = dnsserver.query_many(ns, pending, "A", timeout=0.5, tries=3)
            # An answer lost in a burst of thousands (BIND drops some) is asked again, and is no
            # sign that the name was not served yet; an answer other than ``want`` is.
            wrong = wrong or any(
                got[n] is not None and self._addresses(got[n]) != self.want for n in pending
            )
            pending = [n for n in pending if self._addresses(got[n]) != self.want]
            self.left[ns.name] = len(pending)
            if not pending:
                # Right at the first answer: the new serials were the new answer.
                self.at[ns.name] = time.monotonic() if wrong else served
                return
            self._stop.wait(self.interval)

    def wait(self, timeout):
        """Wait (bounded) until every nameserver answered ``want`` for every name."""
        wait_until(lambda: not any(t.is_alive() for t in self._threads), timeout, error=None)
        self._stop.set()
        return dict(self.at)


class Answer:
    def __init__(
        self, lb, status, server=None, count=None, error=None, cookies=None, certificate=None
    ):
        self.lb = lb
        self.certificate = certificate  # HTTPS: sha256 of the leaf the load balancer served
        self.status = status
        self.server = server
        self.count = count
        self.error = error
        self.cookies = dict(cookies or {})

    @property
    def ok(self):
        return self.status == 200 and self.server is not None

    def __repr__(self):
        return (
            f"<Answer via {self.lb}: status {self.status}, server {self.server}, "
            f"count {self.count}, error {self.error}, cookies {self.cookies}>"
        )

    def __str__(self):
        if self.error:
            return f"via {self.lb}: error {self.error}"
        if not self.ok:
            return f"via {self.lb}: HTTP {self.status}"
        return f"via {self.lb}: {self.server} (request #{self.count} of this session there)"


class Browser:
    """One browser: a cookie jar kept across requests and across load balancers."""

    def __init__(self, host, port, tls=None):
        self.host = host
        self.port = port
        self.tls = tls  # an ssl context (tls_context): HTTPS
        self.client = Client()

    @property
    def cookies(self):
        return dict(self.client.cookies)

    def get(self, lb_address, path="/", timeout=3.0):
        try:
            resp = self.client.get(
                lb_address, self.port, path, host=self.host, timeout=timeout, tls=self.tls
            )
        except (OSError, http.client.HTTPException) as exc:
            return Answer(lb_address, None, error=f"{type(exc).__name__}: {exc}")
        if resp.status != 200:
            return Answer(lb_address, resp.status, cookies=self.cookies)
        try:
            body = resp.json()
        except ValueError:
            return Answer(lb_address, resp.status, error="not the webapp's answer")
        leaf = resp.tls["peer"] if resp.tls else None
        return Answer(
            lb_address,
            200,
            body.get("server"),
            body.get("count"),
            cookies=self.cookies,
            certificate="sha256:" + hashlib.sha256(leaf).hexdigest() if leaf else None,
        )


class Load:
    """Background clients: ``workers`` threads, each a browser for ``host`` sending ``rate``
    requests per second. ``pick()`` gives, per request, the load balancer addresses to try in
    order; like a browser with several A records, a client tries the next address when it cannot
    connect (``retry``; False: one attempt only). With ``tls``, over HTTPS (a failed handshake is
    a failed request). A request fails when no attempt got an answer or
    the answer was not a 200 from a webserver."""

    def __init__(self, host, port, pick, workers=2, rate=10.0, timeout=3.0, retry=True, tls=None):
        self.host = host
        self.port = port
        self.tls = tls  # an ssl context (tls_context): every request over HTTPS
        self.pick = pick
        self.workers = workers
        self.rate = rate
        self.timeout = timeout
        self.retry = retry
        self.requests = 0
        self.first_failed = 0  # requests whose first attempt could not connect
        self.failures = []  # (time.monotonic(), what the client saw)
        self.latencies = []  # seconds of every request, failed or not, in order
        self.servers = {}
        self.certificates = {}  # HTTPS: {leaf sha256: answers that carried it}
        self._stop = threading.Event()
        self._threads = []
        self._lock = threading.Lock()

    def _one(self, browser):
        """One request: ``(final answer, whether the first attempt could not connect)``."""
        addresses = self.pick() or []
        if not addresses:
            return Answer(None, None, error="no address to connect to"), False
        tries = addresses if self.retry else addresses[:1]
        answer = browser.get(tries[0], timeout=self.timeout)
        first_failed = answer.error is not None
        for address in tries[1:]:
            if answer.error is None:
                break
            answer = browser.get(address, timeout=self.timeout)
        return answer, first_failed

    def _run(self):
        browser = Browser(self.host, self.port, self.tls)
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            t0 = time.monotonic()
            answer, first_failed = self._one(browser)
            with self._lock:
                self.latencies.append(time.monotonic() - t0)
                self.requests += 1
                self.first_failed += first_failed
                if answer.ok:
                    self.servers[answer.server] = self.servers.get(answer.server, 0) + 1
                    if answer.certificate:
                        self.certificates[answer.certificate] = (
                            self.certificates.get(answer.certificate, 0) + 1
                        )
                else:
                    self.failures.append((time.monotonic(), str(answer)))
            next_at += period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self):
        for _ in range(self.workers):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout * 3 + 2)
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def wait_requests(self, n, timeout=30.0):
        """Wait (bounded) until ``n`` more requests were made; True when they were."""
        target = self.requests + n
        return bool(wait_until(lambda: self.requests >= target, timeout, error=None))

    @property
    def errors(self):
        return len(self.failures)

    def summary(self):
        servers = ", ".join(f"{s} {n}" for s, n in sorted(self.servers.items()))
        retried = (
            f", {self.first_failed} needed a second address"
            if self.retry and self.first_failed
            else ""
        )
        return f"{self.requests} requests to {self.host}, {self.errors} failed{retried} (answered by: {servers or 'nobody'})"


def rotating(addresses):
    """A ``pick()`` for :class:`Load`: each request to the next load balancer in turn (the
    others as fall-backs)."""
    state = {"i": 0}
    lock = threading.Lock()

    def pick():
        with lock:
            i = state["i"]
            state["i"] += 1
        return addresses[i % len(addresses) :] + addresses[: i % len(addresses)]

    return pick


def dns_picker(nameservers, name, rng=None):
    """A ``pick()`` for :class:`Load`: resolve ``name`` through a random nameserver at every
    request (a client whose cache just expired) and try its addresses in random order."""
    rng = rng or random.Random(7)
    lock = threading.Lock()

    def pick():
        with lock:
            ns = rng.choice(nameservers)
        addresses, _ = resolve(ns, name, timeout=0.5)
        addresses = list(addresses or [])
        with lock:
            rng.shuffle(addresses)
        return addresses

    return pick


def cached_picker(nameservers, name, seed=11):
    """A ``pick()`` for :class:`Load`: each worker thread is a browser with a resolver cache of
    its own. It resolves ``name`` through a random nameserver, holds that answer for its TTL (as a
    browser and its stub resolver do), and tries its addresses in one random order fixed for the
    answer's lifetime (each thread its own: ``seed`` plus the thread's number)."""
    local = threading.local()
    threads = itertools.count()

    def pick():
        if not hasattr(local, "rng"):
            local.rng = random.Random(seed + next(threads))
            local.addresses, local.until = [], 0.0
        now = time.monotonic()
        if now >= local.until or not local.addresses:
            ns = local.rng.choice(nameservers)
            addresses, ttl = resolve(ns, name, timeout=0.5)
            local.addresses = list(addresses or [])
            local.rng.shuffle(local.addresses)
            local.until = now + (ttl or 0)
        return list(local.addresses)

    return pick


class DnsRecorder:
    """Asks every nameserver for ``name`` every ``interval`` seconds from a background thread and
    keeps every answer: ``(time.monotonic(), nameserver, sorted addresses)``, the addresses
    ``None`` when the nameserver did not answer, ``[]`` when it answered without one."""

    def __init__(self, nameservers, name, interval=0.1):
        self.nameservers = list(nameservers)
        self.name = name
        self.interval = interval
        self.samples = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="dns-recorder")
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            for ns in self.nameservers:
                got, _ = resolve(ns, self.name, timeout=0.3)
                with self._lock:
                    self.samples.append((time.monotonic(), ns.name, got))
            self._stop.wait(self.interval)

    def since(self, t0):
        with self._lock:
            return [s for s in self.samples if s[0] >= t0]

    def empty_since(self, t0):
        """The answers since ``t0`` that named no address at all."""
        return [s for s in self.since(t0) if s[2] == []]

    def switches(self, t0, address):
        """``{nameserver: how often the answers since t0 gained or lost address}``."""
        last, out = {}, {}
        for _t, ns, got in self.since(t0):
            if got is None:
                continue
            has = address in got
            if ns in last and last[ns] != has:
                out[ns] = out.get(ns, 0) + 1
            last[ns] = has
            out.setdefault(ns, 0)
        return out

    def addresses_since(self, t0):
        """Every address any nameserver answered since ``t0``."""
        return sorted({a for _t, _ns, got in self.since(t0) for a in got or []})

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
