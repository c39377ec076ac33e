"""Errors of the core. Thin Salt modules turn them into ``CommandExecutionError``."""


class PapError(Exception):
    """Base class of every error the core raises on purpose."""


def path_text(path):
    """A pillar path as an admin reads it, ``paphosting:services:www``: a key that is not
    printable (a newline, a control character) is shown escaped, with ``repr``, so that what the
    pillar holds cannot break or forge the lines of a message."""
    return ":".join(k if k.isprintable() else repr(k) for k in (str(p) for p in path))


class PillarError(PapError):
    """One invalid pillar value: where it is and what is wrong with it."""

    def __init__(self, path, reason):
        self.path = tuple(str(p) for p in path)
        self.reason = reason
        super().__init__(str(self))

    def __str__(self):
        return f"pillar {path_text(self.path)}: {self.reason}"


class InvalidPillar(PapError):
    """Every error found in one pillar tree; nothing was written."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__(str(self))

    def __str__(self):
        lines = [f"invalid pillar ({len(self.errors)} error{'s' * (len(self.errors) != 1)}):"]
        lines += [f"  - {e}" for e in self.errors]
        return "\n".join(lines)


class CheckFailed(PapError):
    """A real checker (haproxy -c, named-checkzone, ...) rejected a rendered file."""

    def __init__(self, tool, target, output):
        self.tool = tool
        self.target = target
        self.output = output.strip()
        super().__init__(str(self))

    def __str__(self):
        return f"{self.tool} rejected {self.target}:\n{self.output}"


class ChangeRefused(PapError):
    """A change was refused by a safety rule (bulk deletion, NS/SOA change) and not forced."""
