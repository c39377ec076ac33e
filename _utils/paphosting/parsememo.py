"""
The result of a pure parse, kept by its input text: the same text is parsed once per process.

A hoster's pillar is megabytes of YAML (5 MB with 5,000 customer zones, some 20 s for Salt's
YAML loader), and a master parses that same text for every minion's pillar: at each highstate,
push, pillar refresh. :class:`ParseMemo` keeps the last few results by a digest of the text and
hands out a fresh copy each time (Salt merges into what a renderer returns). Exact, not an
approximation: a text that differs by one byte is parsed anew.
"""

import hashlib
import os
import pickle
import threading
from collections import OrderedDict

from paphosting import files

# Texts at least this long are shared through the disk between processes (see ParseMemo.parse).
DISK_MIN = 256 * 1024


class ParseMemo:
    """``parse(key, text, parse)``: ``parse()``'s result for ``(key, text)``, parsed once.

    ``key`` names what else the result depends on (the parser's options). The newest ``keep``
    results are kept, pickled (a copy costs a fraction of a parse).
    """

    def __init__(self, keep=4):
        self.keep = keep
        self.hits = 0
        self.misses = 0
        self._results = OrderedDict()
        self._lock = threading.Lock()

    def parse(self, key, text, parse, disk=None):
        """``disk``: a folder (the master's cache) through which the processes of one host share
        the results of long texts (:data:`DISK_MIN`): the first parses under a file lock and
        writes the result (0600), the others wait and read it. A master's request workers,
        reactor and engine otherwise all parse the same megabytes at once after every push."""
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).digest()
        with self._lock:
            blob = self._results.get((key, digest))
            if blob is not None:
                self._results.move_to_end((key, digest))
                self.hits += 1
        if blob is not None:
            return pickle.loads(blob)
        if disk and len(text) >= DISK_MIN:
            name = hashlib.blake2b(repr(key).encode() + digest, digest_size=20).hexdigest()
            os.makedirs(disk, mode=0o700, exist_ok=True)
            path = os.path.join(disk, f"{name}.pickle")
            with files.locked(os.path.join(disk, f"{name}.lock")):
                try:
                    with open(path, "rb") as fh:
                        blob = fh.read()
                    result = pickle.loads(blob)
                except (OSError, pickle.UnpicklingError, EOFError, ValueError):
                    result = parse()
                    blob = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
                    files.write_checked(path, blob, mode=0o600, binary=True)
                    files.keep_newest(disk, self.keep)
        else:
            result = parse()
            blob = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self.misses += 1
            self._results[(key, digest)] = blob
            while len(self._results) > self.keep:
                self._results.popitem(last=False)
        return result


# One for the whole process: Salt's loader gives each loader a module instance of its own (a
# renderer's globals live as long as one pillar compile), this module is imported once.
YAML = ParseMemo(keep=8)
