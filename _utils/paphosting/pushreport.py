"""The texts an admin reads about pushes: a revision, a refusal, what a test push would change,
the status table of a master."""

import re


def describe(rev):
    """``r12 by alice, 2026-01-31 12:00:00 UTC: "message"`` for a revision dict or object."""
    get = rev.get if isinstance(rev, dict) else lambda k, d=None: getattr(rev, k, d)
    number = get("number", None) or get("revision", None)
    msg = (get("message", "") or "").strip().splitlines()
    text = f"r{number} by {get('author', '?') or '?'}, {short_time(get('date', ''))}"
    return text + (f': "{msg[0]}"' if msg else "")


def short_time(stamp):
    """An svn or record timestamp as ``2026-01-31 12:00:00 UTC``."""
    if not stamp:
        return "?"
    match = re.match(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)", stamp)
    return f"{match.group(1)} {match.group(2)} UTC" if match else stamp


def refusal_text(revision, problems, live):
    """What an admin reads when a push is refused."""
    n = len(problems)
    kept = f"r{live}" if live is not None else "nothing (no revision was ever made live here)"
    lines = [f"push refused: r{revision} has {n} problem{'s' * (n != 1)}:"]
    lines += [f"  - {p}" for p in problems]
    lines.append(f"Nothing was changed: the live pillar stays {kept} and no minion was touched.")
    return "\n".join(lines)


def status_text(master, record, live, held):
    """The status table of one master."""
    rows = [("master", master)]
    info = record.get("live") or {}
    if live is None:
        rows.append(("live", "nothing yet (run svnpillar.push)"))
    else:
        if info.get("revision") == live:
            rows.append(("live", describe(info)))
            rows.append(("since", f"{short_time(info.get('since'))} ({info.get('by', '?')})"))
        else:
            rows.append(("live", f"r{live}"))
    rows.append(("held", ", ".join(f"r{n}" for n in held) or "-"))
    push = record.get("last_push")
    if push:
        mode = " test=True" if push.get("test") else ""
        rows.append(
            (
                "last push",
                f"{short_time(push.get('time'))} r{push.get('revision', '?')}{mode}: {push.get('outcome', '?')}",
            )
        )
        for line in push.get("minions", []):
            rows.append(("", line))
        if push.get("outcome") not in ("applied", "tested") and push.get("detail"):
            for line in push["detail"].splitlines()[:12]:
                rows.append(("", line))
    sync = record.get("last_sync")
    if sync:
        rows.append(("last sync", f"{short_time(sync.get('time'))}: {sync.get('outcome', '?')}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}".rstrip() for k, v in rows)


def diff_lines(outcomes, max_lines=60):
    """What each minion's highstate would change (``{minion: Outcome}``), with the diffs
    (shortened to ``max_lines`` each)."""
    lines = []
    for minion in sorted(outcomes):
        for sid, comment, diff in outcomes[minion].changed:
            lines.append(f"{minion}: {sid}: {comment.splitlines()[0] if comment else ''}".rstrip())
            text = str(diff).splitlines() if diff else []
            lines += [f"    {ln}" for ln in text[:max_lines]]
            if len(text) > max_lines:
                lines.append(f"    ... ({len(text) - max_lines} more lines)")
    return lines
