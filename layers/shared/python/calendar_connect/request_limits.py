"""A management request body before any parser sees it: its bytes, its size (a setting) and its JSON nesting."""

from __future__ import annotations

import base64
import re
from typing import Any

from .errors import InvalidArgument

MAX_JSON_DEPTH = 32  # the contract's limit; parsers and validators recurse once per level
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def is_json(content_type: str) -> bool:
    """A body the API reads as JSON: declared so, or undeclared (both dialects default to JSON)."""
    media_type = content_type.split(";")[0].strip().lower()
    return media_type in ("", "application/json") or media_type.endswith("+json")


def json_nesting_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `body`, read as JSON, opens more than `limit` arrays or objects inside each other.

    Counted on the text (brackets inside strings skipped), so no recursion happens before the answer.
    """
    depth = 0
    for bracket in _BRACKET.findall(_JSON_STRING.sub(b"", body)):
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def raw_body(event: dict[str, Any]) -> bytes:
    """The body's bytes as the client sent them (API Gateway base64-encodes what is not text)."""
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except ValueError:
        raise InvalidArgument.for_field("body", "not valid base64") from None
