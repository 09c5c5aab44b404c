"""models.redact_url: what of a result URL may reach logs, reports and errors."""

from __future__ import annotations

import pytest

from archiver.models import redact_url


@pytest.mark.parametrize(("url", "expected"), [
    ("https://d11fbe263bhqij.cloudfront.net/agicontent/video/r.mp4?Expires=1&Signature=abc"
     "&Key-Pair-Id=K", "https://d11fbe263bhqij.cloudfront.net/agicontent/video/r.mp4"),
    ("https://bucket.s3.amazonaws.com/k/v.mp4?X-Amz-Credential=AKIA%2F&X-Amz-Signature=f00",
     "https://bucket.s3.amazonaws.com/k/v.mp4"),
    ("https://cdn.example.com/v.mp4#token=secret", "https://cdn.example.com/v.mp4"),
    ("http://cdn.example.com:8080/a/b.srt?sig=1", "http://cdn.example.com:8080/a/b.srt"),
])
def test_query_and_fragment_are_dropped(url: str, expected: str) -> None:
    """Signed query strings and fragments never survive; scheme, host, port and path do."""
    assert redact_url(url) == expected


@pytest.mark.parametrize(("url", "expected"), [
    ("https://user:hunter2@cdn.example.com/v.mp4", "https://cdn.example.com/v.mp4"),
    ("https://AKIAEXAMPLE@cdn.example.com:8443/v.mp4?x=1", "https://cdn.example.com:8443/v.mp4"),
    ("http://:pw@cdn.example.com/v", "http://cdn.example.com/v"),
    ("http://u:p@[2001:db8::1]/v.mp4", "http://[2001:db8::1]/v.mp4"),
])
def test_credentials_in_userinfo_are_dropped(url: str, expected: str) -> None:
    """user:password@ in front of the host is removed, with or without a port."""
    redacted = redact_url(url)
    assert redacted == expected
    assert "@" not in redacted


@pytest.mark.parametrize(("url", "expected"), [
    ("http://[::1]:8080/v.mp4?sig=x", "http://[::1]:8080/v.mp4"),
    ("https://[2001:db8::1]/v.mp4", "https://[2001:db8::1]/v.mp4"),
    ("https://[2001:DB8::A]:443/a?b", "https://[2001:db8::a]:443/a"),
    ("http://[fe80::1%25eth0]:80/x", "http://[fe80::1%25eth0]:80/x"),
])
def test_ipv6_literal_hosts_keep_their_brackets(url: str, expected: str) -> None:
    """An IPv6 host stays bracketed, so the redacted URL is still a URL (and its port clear)."""
    assert redact_url(url) == expected


@pytest.mark.parametrize("url", [
    "http://[::1/v.mp4",  # unclosed bracket
    "https://cdn.example.com:99999/v.mp4?sig=secret",  # port out of range
    "https://cdn.example.com:port/v.mp4?sig=secret",  # port not a number
])
def test_unparseable_url_is_replaced_not_raised(url: str) -> None:
    """A URL urllib cannot take apart becomes a placeholder: no exception, no secret."""
    assert redact_url(url) == "<unparseable URL>"
