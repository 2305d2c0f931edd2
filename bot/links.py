"""Signed links to pages of `tuesday serve`: whoever holds the link may read the page until it expires or is revoked.

A link is the page's path plus `expires` (Unix seconds), `epoch` and `sig`: the hex HMAC-SHA256 of
"<path>\\n<expires>\\n<epoch>" under the key of the page's kind, HMAC-SHA256(TUESDAY_LINK_SECRET,
"tuesday link v2:<kind>"). The kinds are `review` (/review/…) and `dashboard` (/dashboard…): a
signature made for one kind is never valid for another, even for the same path. `epoch` is the
kind's epoch in SQL (bot.store.link_epochs) when the link was made; `tuesday links revoke` bumps it
and every older link of that kind answers 410. Anyone who changes the path, the expiry, the epoch
or the signature gets 403, and so does a link made before epochs (no `epoch`: refused, not
grandfathered); an empty secret turns every signed page off. Links are posted in Slack, so they
are meant for the people in the channel, like the messages around them.

    links = Links.for_runtime(runtime)
    links.url("/review/v3")   # https://tuesday.example.com/review/v3?expires=1767225600&epoch=1&sig=9f2c…
    links.check("/review/v3", {"expires": "1767225600", "epoch": "1", "sig": "9f2c…"})   # 1, until then
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from typing import Callable, Mapping
from urllib.parse import urlencode

from bot.store.link_epochs import current_epochs
from inference.errors import TuesdayError

PAGES = ("review", "dashboard")  # the kinds of signed page, each with its own key and epoch
KEY_LABEL = "tuesday link v2:"


class LinksOff(TuesdayError):
    """Signed links are not configured (no TUESDAY_LINK_SECRET or TUESDAY_PUBLIC_URL)."""


class LinkRefused(TuesdayError):
    """A link that is unsigned, altered, expired, signed for another page, or made before link epochs."""


class LinkRevoked(LinkRefused):
    """A link signed as it should be, whose epoch `tuesday links revoke` has since moved past."""


def page_of(path: str) -> str | None:
    """The kind of signed page a path belongs to ('review', 'dashboard'), None for any other path."""
    if path.startswith("/review/"):
        return "review"
    if path == "/dashboard" or path.startswith("/dashboard/"):
        return "dashboard"
    return None


def page_key(secret: str, page: str) -> bytes:
    """The key of one page kind, derived from the secret (whoever has it cannot sign another kind's links)."""
    return hmac.new(secret.encode("utf-8"), f"{KEY_LABEL}{page}".encode("utf-8"), hashlib.sha256).digest()


def signature(secret: str, page: str, path: str, expires: int, epoch: int) -> str:
    return hmac.new(page_key(secret, page), f"{path}\n{int(expires)}\n{int(epoch)}".encode("utf-8"),
                    hashlib.sha256).hexdigest()


class Epochs:
    """Each page kind's current epoch, read from SQL and kept for at most max_age_s seconds.

    Makers read it fresh (max_age_s 0: a link made right after a revoke carries the new epoch);
    `tuesday serve` keeps it TUESDAY_LINK_EPOCH_CACHE_S (a few seconds), so a revoke takes effect
    within that. The cache holds one entry per kind in PAGES: bounded."""

    def __init__(self, sessions, max_age_s: float = 0.0, monotonic: Callable[[], float] = time.monotonic):
        self.sessions, self.max_age_s, self.monotonic = sessions, max_age_s, monotonic
        self._lock = threading.Lock()
        self._read: dict[str, tuple[float, int]] = {}

    def current(self, page: str) -> int:
        if page not in PAGES:
            raise ValueError(f"no signed page kind {page!r}")
        now = self.monotonic()
        with self._lock:
            cached = self._read.get(page)
        if cached is not None and now - cached[0] < self.max_age_s:
            return cached[1]
        epoch = current_epochs(self.sessions, [page])[page]  # outside the lock: no request waits on another's SQL
        with self._lock:
            self._read[page] = (now, epoch)
        return epoch


class Links:
    """Make and check signed links; `clock` is injectable for expiry tests."""

    def __init__(self, secret: str, public_url: str = "", ttl_s: float = 7 * 24 * 3600,
                 clock: Callable[[], float] = time.time, *, epochs: Epochs):
        self.secret, self.public_url, self.ttl_s, self.clock = secret, public_url.rstrip("/"), ttl_s, clock
        self.epochs = epochs

    @classmethod
    def for_runtime(cls, runtime, clock: Callable[[], float] = time.time, *, epoch_cache_s: float = 0.0) -> Links:
        """Links from the runtime's settings and store; epoch_cache_s > 0 only where links are checked."""
        settings = runtime.settings
        return cls(settings.link_secret, settings.public_url, settings.link_ttl_hours * 3600, clock,
                   epochs=Epochs(runtime.sessions, epoch_cache_s))

    @property
    def enabled(self) -> bool:
        """Pages can be served: there is a secret to check links with."""
        return bool(self.secret)

    @property
    def can_link(self) -> bool:
        """Links can be handed out: a secret, and an address people reach `tuesday serve` at."""
        return bool(self.secret and self.public_url)

    def url(self, path: str, ttl_s: float | None = None) -> str:
        """The full signed URL of `path` (a review or dashboard page), valid for ttl_s seconds or until revoked."""
        if not self.can_link:
            raise LinksOff("signed links are off: set TUESDAY_LINK_SECRET and TUESDAY_PUBLIC_URL")
        page = page_of(path)
        if page is None:
            raise ValueError(f"not a signed page's path: {path!r}")
        expires = int(self.clock() + (self.ttl_s if ttl_s is None else ttl_s))
        return f"{self.public_url}{self.relative(path, expires, self.epochs.current(page))}"

    def relative(self, path: str, expires: int, epoch: int) -> str:
        """'/path?expires=…&epoch=…&sig=…': a link from one signed page to another, expiring and revoked with it."""
        page = page_of(path)
        if page is None:
            raise ValueError(f"not a signed page's path: {path!r}")
        sig = signature(self.secret, page, path, expires, epoch)
        return f"{path}?{urlencode({'expires': int(expires), 'epoch': int(epoch), 'sig': sig})}"

    def check(self, path: str, query: Mapping[str, str]) -> int:
        """The link's epoch, for an unexpired, unrevoked link to exactly this path signed with its kind's key.

        Raises LinkRevoked for a well-signed link of an older epoch, LinkRefused for anything else wrong."""
        page = page_of(path)
        expires, epoch, sig = (query.get(k) or "" for k in ("expires", "epoch", "sig"))
        if not (self.secret and page and _number(expires, 12) and _number(epoch, 9) and sig.isascii()):
            raise LinkRefused("unsigned or altered link")
        if int(expires) < self.clock():
            raise LinkRefused("expired link")
        if not hmac.compare_digest(signature(self.secret, page, path, int(expires), int(epoch)), sig):
            raise LinkRefused("unsigned or altered link")
        if int(epoch) != self.epochs.current(page):
            raise LinkRevoked(f"a {page} link of epoch {epoch}, revoked since")
        return int(epoch)

    def verify(self, path: str, query: Mapping[str, str]) -> bool:
        """True where check() passes."""
        try:
            self.check(path, query)
        except LinkRefused:
            return False
        return True


def _number(value: str, digits: int) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= digits


def review_path(version: str, fmt: str = "") -> str:
    """Path of a version's review sheet on `tuesday serve` ('/review/v3' or '/review/v3.csv')."""
    return f"/review/{version}{'.' + fmt if fmt else ''}"
