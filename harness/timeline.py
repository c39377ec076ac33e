"""The narration: one line per event, with the time since the start, and the report's steps.

.. code-block:: text

    [ +41.2s 14:03:07] STEP 5  a load balancer dies: the nameservers drop it
    [ +41.3s 14:03:07]         SIGKILL haproxy on lb1.paphosting.net (127.0.1.1)
    [ +45.9s 14:03:12]         every nameserver answers without 127.0.1.1: 4.62 s after the kill
    [ +45.9s 14:03:12] PASS    a load balancer dies: the nameservers drop it (4.62 s)

:meth:`Timeline.step` is a context manager: the step passes unless it calls :meth:`Step.fail` or
raises; an exception fails the step (its message is the detail) and, for a step marked
``critical``, stops the scenario (:class:`Abort`).
"""

import contextlib
import sys
import time
import traceback


class Abort(Exception):
    """A critical step failed: the steps after it cannot run."""


class StepFailed(Exception):
    """Raised inside a step to fail it with a message."""


class Step:
    def __init__(self, timeline, number, name):
        self.timeline = timeline
        self.number = number
        self.name = name
        self.passed = True
        self.notes = []
        self.measures = {}
        self.started = time.monotonic()
        self.seconds = None

    def say(self, message):
        """An event of this step, narrated and kept for the detail."""
        self.timeline.say(message)
        self.notes.append(message)

    def note(self, message):
        """Kept for the detail without narrating it."""
        self.notes.append(message)

    def check(self, ok, message):
        """Narrate ``message``; a false ``ok`` fails the step (it goes on)."""
        self.say(("ok: " if ok else "FAILED: ") + message)
        if not ok:
            self.passed = False
        return ok

    def fail(self, message):
        """Fail the step now."""
        raise StepFailed(message)

    def measure(self, key, value):
        self.measures[key] = value
        return value

    def as_dict(self):
        return {
            "name": self.name,
            "passed": self.passed,
            "detail": "; ".join(self.notes) or ("passed" if self.passed else "failed"),
            "seconds": round(self.seconds or 0.0, 2),
            **({"measures": self.measures} if self.measures else {}),
        }


class Timeline:
    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.t0 = time.monotonic()
        self.steps = []
        self.events = []
        self._current = None

    def elapsed(self):
        return time.monotonic() - self.t0

    def say(self, message, tag=""):
        line = f"[{self.elapsed():+7.1f}s {time.strftime('%H:%M:%S')}] {tag:<7} {message}"
        self.events.append({"t": round(self.elapsed(), 2), "event": f"{tag} {message}".strip()})
        print(line, file=self.out, flush=True)

    @contextlib.contextmanager
    def step(self, name, critical=False):
        step = Step(self, len(self.steps) + 1, name)
        self.steps.append(step)
        self.say(name, f"STEP {step.number}")
        try:
            yield step
        except StepFailed as exc:
            step.say(f"FAILED: {exc}")
            step.passed = False
        except Exception as exc:  # noqa: BLE001 - any failure fails the step, with its message
            step.say(f"FAILED: {type(exc).__name__}: {exc}")
            step.note(traceback.format_exc(limit=3).strip().splitlines()[-1])
            step.passed = False
        finally:
            step.seconds = time.monotonic() - step.started
        self.say(f"{name} ({step.seconds:.1f} s)", "PASS" if step.passed else "FAIL")
        if critical and not step.passed:
            raise Abort(name)

    def skip(self, name, reason):
        """Record a step that could not run (it counts as failed)."""
        step = Step(self, len(self.steps) + 1, name)
        step.passed = False
        step.seconds = 0.0
        step.note(f"not run: {reason}")
        self.steps.append(step)
        self.say(f"{name}: not run ({reason})", "SKIP")

    @property
    def passed(self):
        return bool(self.steps) and all(s.passed for s in self.steps)
