"""Error ids: what a person is shown, and a log line carries, instead of a foreign exception's text.

A foreign exception (SQLAlchemy's, a driver's, Redis', a model library's, a bug's) may quote
whatever it was handed: PostgreSQL's "Failing row contains (…)" holds a whole ticket, a tokenizer
error quotes its input, a connection error names hosts. So its message never leaves the process
that caught it: `logged()` writes one log line with the exception's type, a short random id
(8 hex digits), our own ids (ticket, run, version…) and where it was raised (file:line of the
innermost frames, no message, no locals), and returns the id; the Slack message, the stored
run or shadow row, the HTTP answer says "<Type> (error id 1a2b3c4d)". The admin greps the logs
for the id.

The rule for what may be shown as it is: the message of a `TuesdayError` (inference.errors) we
raised ourselves. Those texts are written here; they name versions, tasks, settings and files,
never ticket text or secrets, and may quote a library's error *type* but not its message.
Anything else is shown only as `shown(exc)`.

    try:
        ...
    except SQLAlchemyError as exc:
        eid = logged(log, exc, "upkeep: tickets", ticket=7)   # log: upkeep: tickets failed: IntegrityError
        reply = f"… ({shown(exc, eid)})"                       #      (error id 1a2b3c4d; ticket=7) at …
"""

from __future__ import annotations

import logging
import os
import secrets
import traceback

from inference.errors import TuesdayError

FRAMES = 3  # innermost frames of our code named in the log line: where it broke, and who called it
OUR_PACKAGES = ("bot", "inference", "trainer")


def new_error_id() -> str:
    """A short random id, unique enough to find one log line among a week's ('1a2b3c4d')."""
    return secrets.token_hex(4)


def where(exc: BaseException) -> str:
    """'bot/store/tickets.py:12 in fn < bot/web/app.py:40 in caller (raised in sqlalchemy/engine/default.py:9)':
    the innermost frames of our own code in exc's traceback, and the library's frame it was raised in; no message."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if not frames:
        return "no traceback"
    named = [(_short(f.filename), f) for f in frames]
    own = [(name, f) for name, f in named if name.split("/", 1)[0] in OUR_PACKAGES][-FRAMES:]
    text = " < ".join(f"{name}:{f.lineno} in {f.name}" for name, f in reversed(own or named[-FRAMES:]))
    innermost_name, innermost = named[-1]
    if own and innermost is not own[-1][1]:
        text += f" (raised in {innermost_name}:{innermost.lineno})"
    return text


def _short(filename: str) -> str:
    # The path from the package on (bot/store/tickets.py, sqlalchemy/engine/base.py), not the host's folders.
    parts = filename.replace(os.sep, "/").split("/")
    for root in ("bot", "inference", "trainer", "sqlalchemy", "redis", "rq", "slack_sdk", "psycopg", "psycopg2"):
        if root in parts[:-1]:
            return "/".join(parts[len(parts) - 1 - parts[::-1].index(root):])
    return parts[-1]


def logged(log: logging.Logger, exc: BaseException, what: str, *, level: int = logging.WARNING,
           error_id: str | None = None, **ids) -> str:
    """Log that `what` failed with exc: its type, a new error id, our ids and where; never its message. The id.

    The cause's type is named too (SQLAlchemy wraps the driver's error: 'IntegrityError from UniqueViolation')."""
    eid = error_id or new_error_id()
    cause = exc.__cause__ or getattr(exc, "orig", None)
    kind = type(exc).__name__ + (f" from {type(cause).__name__}" if cause is not None else "")
    context = "".join(f"; {key}={value}" for key, value in ids.items())
    log.log(level, "%s failed: %s (error id %s%s) at %s", what, kind, eid, context, where(exc))
    return eid


def withheld_traceback(exc: BaseException, error_id: str) -> str:
    """exc's traceback with its frames but not its message, for what keeps tracebacks (RQ's failed jobs)."""
    frames = "".join(traceback.format_tb(exc.__traceback__)) if exc.__traceback__ else ""
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return f"Traceback (most recent call last):\n{frames}{kind}: message withheld (error id {error_id})\n"


def ours(exc: BaseException) -> bool:
    """True for an error whose message we wrote (a TuesdayError): it may be shown as it is."""
    return isinstance(exc, TuesdayError)


def shown(exc: BaseException, error_id: str) -> str:
    """What a person may read about exc: our own message, or its type and the error id to find in the logs."""
    if ours(exc):
        return str(exc)
    return f"{type(exc).__name__} (error id {error_id})"
