"""Where the API client may go: Akool's read endpoints in ``api.base_url``'s origin, and
nowhere else. The credentials travel with every request, so a redirect is followed by
hand, only within that origin, only for a GET, and never to a path whose name says it
changes something; the families' poll paths and getToken are the allowlist
(:class:`PathRefused` for anything else)."""

from __future__ import annotations

from yarl import URL

from ..errors import APIError, FatalRunError
from ..models import redact_url

REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Same-origin redirects followed per request (an API moving paths, a trailing slash).
MAX_REDIRECTS = 5
#: A redirected GET may go anywhere in the API's origin (an API moving paths), but never
#: to a path whose name says it changes something.
WRITE_WORDS = ("del", "remove", "close", "update", "create", "cancel")


class RedirectRefused(FatalRunError):
    """The API redirected to another origin: following would hand it the credentials."""

    def __init__(self, base_url: str, target: URL) -> None:
        # Origins only: a query string may carry a signature or the id.
        super().__init__(f"the API at {redact_url(base_url)} redirected to "
                         f"{origin_text(target)}; refusing to send credentials there "
                         "(set api.base_url to the right address)")


class PathRefused(FatalRunError):
    """A request to an endpoint the archiver may not call: it only ever reads."""

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"refusing to {method} {path[:200]}: the archiver only calls "
                         "Akool's result endpoints and getToken, never anything that "
                         "changes or deletes results")


def redirect_target(url: URL, location: str | None, home: URL, base_url: str) -> URL:
    """Where a redirect from *url* to *location* goes, if the client may follow it: in
    the API's origin *home* (else :class:`RedirectRefused`) and to a path that reads
    (else :class:`PathRefused`)."""
    if not location:
        raise APIError(None, f"HTTP redirect without a Location from {url.path}")
    try:
        target = url.join(URL(location))
        same = target.absolute and target.origin() == home
    except ValueError:
        raise APIError(None, "the API redirected to an invalid URL") from None
    if not same:
        raise RedirectRefused(base_url, target)
    if any(word in target.path.lower() for word in WRITE_WORDS):
        raise PathRefused("GET", target.path)
    return target


def origin_text(url: URL) -> str:
    try:
        return str(url.origin())
    except ValueError:
        return redact_url(str(url))
