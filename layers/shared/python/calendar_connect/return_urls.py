"""Return URLs: where the browser goes after the provider. Checked strictly, built without surprises."""

from __future__ import annotations

import re
import string
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# A server that decodes before routing would read these as a separator: /cal/..%2Fadmin is /admin to it.
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c)", re.IGNORECASE)
# `..;x` is a dot segment to servers that drop path parameters first (Tomcat, Spring), though not to RFC 3986.
_DOTS_WITH_PARAMETERS = re.compile(r"(^|/)\.{1,2};")


class ReturnUrlError(ValueError):
    pass


def _decode_unreserved(path: str) -> str:
    """RFC 3986 §6.2.2.1-2: percent-encoded unreserved characters decoded (`%2E` is `.`), other escapes in
    upper case. The URL means the same; only now `%2e%2E` reads as the dot segment a browser resolves."""

    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return _PERCENT.sub(one, path)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path: `.` and `..` resolved as a browser resolves them."""
    if not path.startswith("/"):
        return path
    segments = path.split("/")[1:]
    output: list[str] = []
    for position, segment in enumerate(segments, start=1):
        if segment in (".", ".."):
            if segment == ".." and output:
                output.pop()
            if position == len(segments):  # a trailing dot segment leaves the path ending in "/"
                output.append("")
        else:
            output.append(segment)
    return "/" + "/".join(output)


def normalise_path(path: str) -> str:
    return remove_dot_segments(_decode_unreserved(path))


def _parts(url: str):
    if _FORBIDDEN.search(url):
        raise ReturnUrlError("must not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ReturnUrlError("is not a valid URL") from error
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ReturnUrlError("must be an absolute https URL")
    if parts.scheme == "http" and parts.hostname not in {"localhost", "127.0.0.1", "::1"}:
        raise ReturnUrlError("must use https (http only for localhost or 127.0.0.1)")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ReturnUrlError("must not carry user information")
    if parts.fragment:
        raise ReturnUrlError("must not carry a fragment")
    if _ENCODED_SEPARATOR.search(parts.path):
        raise ReturnUrlError("must not carry an encoded slash or backslash (%2F, %5C) in its path")
    if _DOTS_WITH_PARAMETERS.search(_decode_unreserved(parts.path)):
        raise ReturnUrlError("must not carry parameters on a '.' or '..' path segment")
    return parts, port


def validate_return_url(url: str) -> str:
    """The URL with its path normalised (dot segments removed, in any percent-encoding); its query kept.

    The normalised URL is the one to check against the prefixes, store and redirect to: a browser resolves
    /cal/%2e%2E/admin to /admin, so that is where it would go."""
    parts, _ = _parts(url)
    path = normalise_path(parts.path)
    return url if path == parts.path else urlunsplit(parts._replace(path=path))


def validate_prefix(prefix: str) -> str:
    parts, _ = _parts(prefix)
    if parts.query:
        raise ReturnUrlError("a return-URL prefix has no query")
    if normalise_path(parts.path) != _decode_unreserved(parts.path):
        raise ReturnUrlError("a return-URL prefix has no '.' or '..' path segments")
    return prefix


def _origin(parts, port) -> tuple[str, str, int]:
    return parts.scheme, (parts.hostname or "").lower(), port or (443 if parts.scheme == "https" else 80)


def is_allowed(url: str, prefixes: list[str]) -> bool:
    """Same origin as a prefix, and a normalised path under it (segment-wise: /app does not allow /application)."""
    parts, port = _parts(url)
    path = normalise_path(parts.path) or "/"
    for prefix in prefixes:
        allowed, allowed_port = _parts(prefix)
        if _origin(parts, port) != _origin(allowed, allowed_port):
            continue
        base = normalise_path(allowed.path) or "/"
        if path == base or path.startswith(base if base.endswith("/") else base + "/"):
            return True
    return False


def with_outcome(url: str, outcome: list[tuple[str, str]]) -> str:
    """The return URL with the outcome's parameters; its own parameters are kept (ours win on a clash)."""
    parts = urlsplit(url)
    ours = {k for k, _ in outcome}
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ours]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query + outcome), ""))
