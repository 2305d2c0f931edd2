"""The access log without secrets: a signed link's signature never reaches uvicorn's access log.

Signed pages (/review/v3?expires=…&sig=…, the dashboard's links) carry their credential in the query
string, which uvicorn logs with the path. Whoever reads the logs could open the page until it expires;
`RedactSecrets` writes `sig=[redacted]` (and the same for `token`) instead.
"""

from __future__ import annotations

import logging
import re

SECRET_PARAMS = re.compile(r"([?&](?:sig|token)=)[^&#\s]*+")
ACCESS_LOGGER = "uvicorn.access"


def redact(path: str) -> str:
    """The path with every secret query value replaced.

    >>> redact("/review/v3?expires=1767225600&sig=9f2c1e")
    '/review/v3?expires=1767225600&sig=[redacted]'
    """
    return SECRET_PARAMS.sub(r"\1[redacted]", path)


class RedactSecrets(logging.Filter):
    """For uvicorn's access records: '%s - "%s %s HTTP/%s" %d' % (client, method, path+query, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "=" in args[2]:
            record.args = (*args[:2], redact(args[2]), *args[3:])
        return True


def redact_access_log() -> None:
    """Install the filter on uvicorn's access logger of this process (once; uvicorn's logging set-up keeps it)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(RedactSecrets())
