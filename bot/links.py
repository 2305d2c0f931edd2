"""Signed links to pages of `tuesday serve`: whoever holds the link may read the page until it expires.

A link is the page's path plus `expires` (Unix seconds) and `sig`, the hex HMAC-SHA256 of
"<path>\\n<expires>" under TUESDAY_LINK_SECRET. Anyone who changes the path, the expiry or the
signature gets 403; an empty secret turns every signed page off. Links are posted in Slack, so
they are meant for the people in the channel, like the messages around them.

    links = Links.from_settings(settings)
    links.url("/review/v3")   # https://tuesday.example.com/review/v3?expires=1767225600&sig=9f2c…
    links.verify("/review/v3", {"expires": "1767225600", "sig": "9f2c…"})   # True until then
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Callable, Mapping
from urllib.parse import urlencode

from inference.errors import TuesdayError


class LinksOff(TuesdayError):
    """Signed links are not configured (no TUESDAY_LINK_SECRET or TUESDAY_PUBLIC_URL)."""


def signature(secret: str, path: str, expires: int) -> str:
    return hmac.new(secret.encode("utf-8"), f"{path}\n{int(expires)}".encode("utf-8"), hashlib.sha256).hexdigest()


class Links:
    """Make and check signed links; `clock` is injectable for expiry tests."""

    def __init__(self, secret: str, public_url: str = "", ttl_s: float = 7 * 24 * 3600,
                 clock: Callable[[], float] = time.time):
        self.secret, self.public_url, self.ttl_s, self.clock = secret, public_url.rstrip("/"), ttl_s, clock

    @classmethod
    def from_settings(cls, settings, clock: Callable[[], float] = time.time) -> Links:
        return cls(settings.link_secret, settings.public_url, settings.link_ttl_hours * 3600, clock)

    @property
    def enabled(self) -> bool:
        """Pages can be served: there is a secret to check links with."""
        return bool(self.secret)

    @property
    def can_link(self) -> bool:
        """Links can be handed out: a secret, and an address people reach `tuesday serve` at."""
        return bool(self.secret and self.public_url)

    def url(self, path: str, ttl_s: float | None = None) -> str:
        """The full signed URL of `path` (starting with '/'), valid for ttl_s seconds."""
        if not self.can_link:
            raise LinksOff("signed links are off: set TUESDAY_LINK_SECRET and TUESDAY_PUBLIC_URL")
        if not path.startswith("/"):
            raise ValueError(f"a link path starts with '/': {path!r}")
        return f"{self.public_url}{self.relative(path, int(self.clock() + (self.ttl_s if ttl_s is None else ttl_s)))}"

    def relative(self, path: str, expires: int) -> str:
        """'/path?expires=…&sig=…': a link from one signed page to another that expires with it."""
        return f"{path}?{urlencode({'expires': int(expires), 'sig': signature(self.secret, path, expires)})}"

    def verify(self, path: str, query: Mapping[str, str]) -> bool:
        """True for an unexpired link to exactly this path signed with this secret."""
        if not self.secret:
            return False
        expires, sig = query.get("expires") or "", query.get("sig") or ""
        if not (expires.isascii() and expires.isdigit() and len(expires) <= 12) or not sig.isascii():
            return False
        if int(expires) < self.clock():
            return False
        return hmac.compare_digest(signature(self.secret, path, int(expires)), sig)


def review_path(version: str, fmt: str = "") -> str:
    """Path of a version's review sheet on `tuesday serve` ('/review/v3' or '/review/v3.csv')."""
    return f"/review/{version}{'.' + fmt if fmt else ''}"
