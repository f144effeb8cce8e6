"""Return URLs: what is accepted, what the allowlist admits, how outcomes are added."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calendar_connect.return_urls import (
    ReturnUrlError,
    is_allowed,
    remove_dot_segments,
    validate_prefix,
    validate_return_url,
    with_outcome,
)

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


# --- dot segments: what a browser resolves is what is checked, stored and redirected to ---------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a/b/c/./../../g", "/a/g"),  # RFC 3986 §5.2.4's own example
        ("/a/..", "/"),
        ("/a/.", "/a/"),
        ("/..", "/"),
        ("/../../x", "/x"),
        ("/a//../b", "/a/b"),
        ("/a/b/../c/", "/a/c/"),
        ("/a/.../b", "/a/.../b"),  # three dots are an ordinary segment
        ("/a/..b/.c", "/a/..b/.c"),
        ("/", "/"),
        ("", ""),
    ],
)
def test_remove_dot_segments(path, expected):
    assert remove_dot_segments(path) == expected


@given(st.lists(st.sampled_from(["a", "bc", ".", ".."]), max_size=12), st.booleans())
def test_remove_dot_segments_agrees_with_the_standard_library_resolver(segments, trailing_slash):
    # urllib.parse.urljoin resolves references as RFC 3986 §5.2 says: an independent oracle, for paths without
    # empty segments (it drops those, where the RFC keeps them; the cases above cover them).
    path = "/" + "/".join(segments) + ("/" if trailing_slash and segments else "")
    assert remove_dot_segments(path) == urlsplit(urljoin("https://h.example/", path)).path


CAL = ["https://b.example.com/cal/"]


@pytest.mark.parametrize(
    "url",
    [
        "https://b.example.com/cal/../admin",
        "https://b.example.com/cal/%2e%2e/admin",
        "https://b.example.com/cal/.%2e/admin",
        "https://b.example.com/cal/%2e./admin",
        "https://b.example.com/cal/%2E%2E/admin",
        "https://b.example.com/cal/./../admin",
        "https://b.example.com/cal/%2E/%2e%2E/admin",
        "https://b.example.com/cal/x/../../admin?next=1",
        "https://b.example.com/cal/..",
        "https://b.example.com/cal/%2e%2e",
    ],
)
def test_a_path_that_resolves_outside_the_prefix_is_not_allowed(url):
    normalised = validate_return_url(url)
    assert not urlsplit(normalised).path.startswith("/cal/")
    assert not is_allowed(url, CAL)
    assert not is_allowed(normalised, CAL)


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://b.example.com/cal/x/../done?tab=1&y=%20", "https://b.example.com/cal/done?tab=1&y=%20"),
        ("https://b.example.com/cal/./%2e/done", "https://b.example.com/cal/done"),
        ("https://b.example.com/cal/a/%2E%2E/", "https://b.example.com/cal/"),
        ("https://b.example.com/cal/%7Eme/%c3%a9", "https://b.example.com/cal/~me/%C3%A9"),
        ("https://b.example.com/cal/done?x=../..", "https://b.example.com/cal/done?x=../.."),  # the query is kept
    ],
)
def test_a_path_that_stays_inside_is_allowed_in_its_normal_form(url, normalised):
    assert validate_return_url(url) == normalised
    assert is_allowed(url, CAL)


@pytest.mark.parametrize(
    "url",
    [
        "https://b.example.com/cal/..%2Fadmin",  # a server that decodes before routing reads /admin
        "https://b.example.com/cal/..%2fadmin",
        "https://b.example.com/cal/..%5Cadmin",
        "https://b.example.com/cal/..;/admin",  # Tomcat and Spring drop `;x` first
        "https://b.example.com/cal/%2e%2e;x/admin",
    ],
)
def test_encoded_separators_and_dot_segments_with_parameters_are_refused(url):
    with pytest.raises(ReturnUrlError):
        validate_return_url(url)


def test_a_prefix_with_dot_segments_is_refused():
    with pytest.raises(ReturnUrlError):
        validate_prefix("https://b.example.com/cal/../")
    with pytest.raises(ReturnUrlError):
        validate_prefix("https://b.example.com/cal/%2e%2e/x/")
    assert validate_prefix("https://b.example.com/cal/") == "https://b.example.com/cal/"
