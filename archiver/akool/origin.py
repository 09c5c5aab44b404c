"""Where the API client may go: Akool's read endpoints in ``api.base_url``'s origin, and
nowhere else. The credentials travel with every request, so a redirect is followed by
hand, only within that origin, only for a GET, and never to a path whose name says it
changes something; the families' poll paths and getToken are the allowlist
(:class:`PathRefused` for anything else)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote_plus

from yarl import URL

from ..errors import APIError, FatalRunError
from ..models import redact_url
from .families import FAMILIES, Family

TOKEN_PATH = "/api/open/v3/getToken"
#: Longest URL a batched GET sends: proxies and CDNs commonly refuse 8 KiB; half that
#: keeps every hop happy (about 150 ids of 24 characters).
MAX_URL_LENGTH = 4000
#: What a query value keeps unescaped: what yarl's ``update_query`` keeps (the ids'
#: commas included), so a URL built from text is the one yarl would build.
QUERY_SAFE = "?/:@,!$'()*"

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


class Endpoints:
    """The URLs the client may call under *base_url*: each family's poll endpoint and
    getToken - the read-only allowlist - and nothing else."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        base = URL(base_url)
        #: The API's origin: the only one redirects may lead to.
        self.home = base.origin()
        path = base.path.rstrip("/")
        #: (method, path) of every request the client may make: read-only endpoints.
        self._allowed = frozenset(
            {(f.method, path + f.path) for f in FAMILIES.values()}
            | {("POST", path + TOKEN_PATH)})
        # Each family's endpoint as text, built on first use, then kept: parsing URLs
        # per poll (yarl's update_query) showed in the profile.
        self._prefixes: dict[str, str] = {}

    def poll(self, fam: Family, ids: str) -> URL:
        """*fam*'s endpoint, with *ids* (comma-separated) in its query for a GET."""
        prefix = self._prefixes.get(fam.name)
        if prefix is None:
            base = self.checked(fam.method, URL(self.base_url + fam.path))
            prefix = self._prefixes[fam.name] = str(base) + (
                f"?{quote_plus(fam.id_param, safe=QUERY_SAFE)}=" if fam.method == "GET"
                else "")
        if fam.method != "GET":
            return URL(prefix, encoded=True)
        # Akool's ids are hex: nothing to escape (quote_plus would return them as they are).
        if not (ids.isascii() and ids.replace(",", "").isalnum()):
            ids = quote_plus(ids, safe=QUERY_SAFE)
        return URL(prefix + ids, encoded=True)

    def fits(self, fam: Family, ids: Sequence[str]) -> bool:
        """Whether one request of *fam* can carry *ids* (a GET's URL stays short)."""
        return fam.method != "GET" or len(str(self.poll(fam, ",".join(ids)))) <= MAX_URL_LENGTH

    def token(self) -> URL:
        return self.checked("POST", URL(self.base_url + TOKEN_PATH))

    def checked(self, method: str, url: URL) -> URL:
        """*url*, if the client may send *method* to it (:class:`PathRefused` if not)."""
        if (method, url.path) not in self._allowed:
            raise PathRefused(method, url.path)
        return url


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
