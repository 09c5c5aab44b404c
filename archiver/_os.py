"""Operating-system errors as words for one-line messages."""

from __future__ import annotations


def os_reason(exc: BaseException) -> str:
    """Why *exc* happened, in a few words (``Permission denied``, ``not UTF-8 text``).

    Only the reason: the caller names the path, once, in its own words.
    """
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return type(exc).__name__
