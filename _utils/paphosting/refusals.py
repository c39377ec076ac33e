"""What a master refuses of the watchers' health reports: the rate limit and the refusal counts.

* :class:`RateLimit` bounds what one *authenticated* watcher can make a master do (a token
  bucket per watcher). It is applied after the signature is checked (:func:`paphosting.decision.
  admit`), never on a claimed id: an id in an event or in a report text is only a claim, and a
  limit on claims lets anyone who sends forged reports in a watcher's name use up that watcher's
  allowance and hold back its real reports. A forged report costs a parse and a signature check
  (a cached configuration, no pillar compile), so it needs no allowance of its own.
* :class:`Refusals` counts refusals by kind and claimed sender in a JSON file beside the
  failover's state, merged into what the file holds (so counts survive a reload of the runner
  module or a restart of the master, and two processes never overwrite each other), and says
  which refusals to log: the first of a kind and sender each second, carrying the count of those
  refused silently since, so a flood is counted in full but not amplified into the master's log
  and event bus.
"""

import threading
import time

from paphosting import files

RATE = 5.0  # reports a second, on average, from one watcher: a transition a second + heartbeats
BURST = 20.0  # at once


class RateLimit:
    """A token bucket per key: at most ``rate`` a second on average, ``burst`` at once."""

    def __init__(self, rate=RATE, burst=BURST, max_keys=10_000):
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets = {}
        self._lock = threading.Lock()

    def allow(self, key, now):
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return False
            if key not in self._buckets and len(self._buckets) >= self.max_keys:
                self._buckets.clear()
            self._buckets[key] = (tokens - 1, now)
            return True


def kind_of(reason):
    """The kind of a refusal: its reason up to the first ``:`` or ``(``, at most 60 characters."""
    return reason.split(":")[0].split("(")[0].strip()[:60]


class Refusals:
    """Refusal counts kept in ``path`` (``{"since": ts, "counts": {"<kind> [<sender>]": n}}``),
    written at most every ``every`` seconds (and by :meth:`flush`)."""

    def __init__(self, path, every=1.0):
        self.path, self.every = path, every
        self._pending = {}
        self._logged = {}
        self._flushed = float("-inf")
        self._lock = threading.Lock()

    def note(self, reason, sender, now=None):
        """Count one refusal. Returns how many refusals of its kind and sender to log and fire
        now: 0 while one was logged less than a second ago, else this one plus those counted
        silently since (the ``count`` of the event, which the metrics add up)."""
        now = time.time() if now is None else now
        key = f"{kind_of(reason)} [{sender}]"
        with self._lock:
            self._pending[key] = self._pending.get(key, 0) + 1
            last, silent = self._logged.get(key, (float("-inf"), 0))
            if now - last >= 1.0:
                if len(self._logged) >= 10_000:
                    self._logged.clear()
                self._logged[key] = (now, 0)
                report = silent + 1
            else:
                self._logged[key] = (last, silent + 1)
                report = 0
            due = now - self._flushed >= self.every
        if due:
            self.flush(now)
        return report

    def flush(self, now=None):
        """Add the counts not yet written to the file's (under its lock)."""
        now = time.time() if now is None else now
        with self._lock:
            pending, self._pending = self._pending, {}
            self._flushed = now
        if not pending:
            return
        with files.locked(self.path + ".lock"):
            data = read(self.path)
            if not data["counts"]:
                data["since"] = now
            for key, n in pending.items():
                data["counts"][key] = data["counts"].get(key, 0) + n
            files.write_json(self.path, data)


def read(path):
    """``{"since": ts or None, "counts": {...}}`` from ``path``; empty when there is none."""
    data = files.read_json(path, default={}, kind=dict)
    counts = data.get("counts")
    if not isinstance(counts, dict):
        return {"since": None, "counts": {}}
    counts = {k: v for k, v in counts.items() if isinstance(k, str) and isinstance(v, int)}
    return {"since": data.get("since"), "counts": counts}


def text(data):
    """The REFUSED REPORTS section of ``rotation.status`` ('' when nothing was refused)."""
    if not data["counts"]:
        return ""
    since = (
        time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(data["since"]))
        if isinstance(data.get("since"), (int, float))
        else "the first refusal"
    )
    rows = sorted(data["counts"].items(), key=lambda kv: (-kv[1], kv[0]))
    return f"REFUSED REPORTS (since {since})\n" + "\n".join(f"  {n:>6}  {w}" for w, n in rows)
