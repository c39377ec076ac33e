"""A minion's ``state.apply`` (or ``state.highstate``) return, read once for every reader.

Salt returns ``{"<module>_|-<id>_|-<name>_|-<function>": {"result", "changes", "comment",
"__id__", "__run_num__", ...}}`` for a run that started, and a list of error strings (or one
string) for one that did not render. The push (:mod:`paphosting.pushapply`) and the drift
correction (:mod:`paphosting.drift`) both read it through :func:`states` and :func:`failure`.
"""

from dataclasses import dataclass, field

_SEP = "_|-"


@dataclass(frozen=True)
class StateRun:
    """One state's result in a highstate return."""

    key: str  # Salt's key, "<module>_|-<id>_|-<name>_|-<function>"
    state: str  # "<module>.<function>", or "" when the key is not in Salt's form
    id: str  # the state id (``__id__``, else the key's id part)
    declared: bool  # the return carries ``__id__`` (Salt's state returns all do)
    name: str
    result: object  # True, False, or None (test mode: would change)
    comment: str
    changes: object = field(default_factory=dict)  # a dict, as Salt's states return it
    duration: object = None  # milliseconds, when Salt measured it

    @property
    def label(self):
        """``<module>.<function> <id>`` (``file.managed haproxy-config``): the id alone when the
        key is not in Salt's form, Salt's key when the return has no ``__id__``."""
        if not self.declared:
            return self.key
        return f"{self.state} {self.id}" if self.state else self.id


def unwrap(ret):
    """The state return inside a ``full_return=True`` job return (``{"ret": ..., "retcode": ...}``),
    else ``ret`` itself."""
    if (
        isinstance(ret, dict)
        and "ret" in ret
        and set(ret) <= {"ret", "retcode", "jid", "out", "success"}
    ):
        return ret["ret"]
    return ret


def failure(ret):
    """Why ``ret`` holds no state results (the run did not start), or None when it does: a render
    error list joined with ``; ``, an error string, or the unexpected value."""
    if isinstance(ret, dict):
        return None
    if isinstance(ret, (list, tuple)):
        return "; ".join(str(r) for r in ret) or "the highstate did not render"
    if isinstance(ret, str):
        return ret
    return f"unexpected return {ret!r}"


def states(ret):
    """The :class:`StateRun` items of a state return ``ret`` (a dict: see :func:`failure`
    otherwise), in the order they ran (``__run_num__``); entries that are not state results are
    skipped."""
    if not isinstance(ret, dict):
        return []
    out = []
    runs = sorted(
        ((k, v) for k, v in ret.items() if isinstance(v, dict)),
        key=lambda kv: kv[1].get("__run_num__", 0),
    )
    for key, value in runs:
        parts = str(key).split(_SEP)
        well_formed = len(parts) >= 4
        module, function = (parts[0], parts[-1]) if well_formed else ("", "")
        key_id = parts[1] if len(parts) > 1 else ""
        key_name = _SEP.join(parts[2:-1]) if well_formed else ""
        out.append(
            StateRun(
                key=str(key),
                state=f"{module}.{function}" if well_formed else "",
                id=str(value.get("__id__") or key_id),
                declared=bool(value.get("__id__")),
                name=str(value.get("name", key_name)),
                result=value.get("result"),
                comment=str(value.get("comment") or ""),
                changes=value.get("changes") or {},
                duration=value.get("duration"),
            )
        )
    return out
