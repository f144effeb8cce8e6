"""Return URLs: where the browser goes after the provider. Checked strictly, built without surprises."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")


class ReturnUrlError(ValueError):
    pass


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
    return parts, port


def validate_return_url(url: str) -> str:
    _parts(url)
    return url


def validate_prefix(prefix: str) -> str:
    parts, _ = _parts(prefix)
    if parts.query:
        raise ReturnUrlError("a return-URL prefix has no query")
    return prefix


def _origin(parts, port) -> tuple[str, str, int]:
    return parts.scheme, (parts.hostname or "").lower(), port or (443 if parts.scheme == "https" else 80)


def is_allowed(url: str, prefixes: list[str]) -> bool:
    """Same origin as a prefix, and a path under it (segment-wise: /app does not allow /application)."""
    parts, port = _parts(url)
    for prefix in prefixes:
        allowed, allowed_port = _parts(prefix)
        if _origin(parts, port) != _origin(allowed, allowed_port):
            continue
        base = allowed.path or "/"
        path = parts.path or "/"
        if path == base or path.startswith(base if base.endswith("/") else base + "/"):
            return True
    return False


def with_outcome(url: str, outcome: list[tuple[str, str]]) -> str:
    """The return URL with the outcome's parameters; its own parameters are kept (ours win on a clash)."""
    parts = urlsplit(url)
    ours = {k for k, _ in outcome}
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ours]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query + outcome), ""))
