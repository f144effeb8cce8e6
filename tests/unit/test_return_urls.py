"""Return URLs: what is accepted, what the allowlist admits, how outcomes are added."""

from __future__ import annotations

import pytest

from calendar_connect.return_urls import ReturnUrlError, is_allowed, validate_return_url, with_outcome

PREFIXES = ["https://booking.example.com/calendar/", "http://127.0.0.1:3000/"]


@pytest.mark.parametrize(
    "url",
    [
        "https://booking.example.com/calendar/done",
        "http://localhost:8080/back",
        "http://127.0.0.1:3000/",
        "https://booking.example.com/calendar/done?x=1&y=%20",
    ],
)
def test_accepted(url):
    assert validate_return_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,x",
        "ftp://booking.example.com/",
        "//booking.example.com/x",
        "/relative",
        "http://booking.example.com/x",
        "https://user@booking.example.com/",
        "https://a:b@booking.example.com/",
        "https://booking.example.com/a b",
        "https://booking.example.com/\x00",
        "https://booking.example.com/\\evil",
        "https://booking.example.com/x#frag",
        "https://booking.example.com:99999/",
        "https:///nohost",
    ],
)
def test_refused(url):
    with pytest.raises(ReturnUrlError):
        validate_return_url(url)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://booking.example.com/calendar/", True),
        ("https://booking.example.com/calendar/x/y?z=1", True),
        ("https://BOOKING.example.com/calendar/x", True),
        ("https://booking.example.com:443/calendar/x", True),
        ("https://booking.example.com/calendarx", False),
        ("https://booking.example.com/other", False),
        ("https://booking.example.com.evil.net/calendar/", False),
        ("https://booking.example.com:8443/calendar/", False),
        ("http://127.0.0.1:3000/demo", True),
        ("http://127.0.0.1:3001/demo", False),
        ("http://localhost:3000/demo", False),
    ],
)
def test_allowlist(url, allowed):
    assert is_allowed(url, PREFIXES) is allowed


def test_prefix_without_trailing_slash_matches_whole_segments():
    assert is_allowed("https://a.example.com/app/x", ["https://a.example.com/app"])
    assert is_allowed("https://a.example.com/app", ["https://a.example.com/app"])
    assert not is_allowed("https://a.example.com/application", ["https://a.example.com/app"])


def test_outcome_keeps_the_return_urls_parameters_and_ours_win():
    url = with_outcome(
        "https://b.example.com/cb?tab=1&error=spoofed", [("error", "reject"), ("reason", "access_denied")]
    )
    assert url == "https://b.example.com/cb?tab=1&error=reject&reason=access_denied"
