"""Webhook URLs: where a client's events may go. Checked at registration and again before every delivery,
since what a name resolves to can change between the two (DNS rebinding)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
_MAX_LENGTH = 2048


class WebhookUrlError(ValueError):
    pass


def validate_webhook_url(url: str) -> SplitResult:
    """Absolute https (http only for localhost), with a host, no credentials and no fragment."""
    if len(url) > _MAX_LENGTH or any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise WebhookUrlError("must be an absolute URL without spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        raise WebhookUrlError("is not a valid URL") from None
    host = (parts.hostname or "").lower()
    if not host:
        raise WebhookUrlError("must be an absolute URL with a host")
    if parts.scheme != "https" and not (parts.scheme == "http" and host in _LOCAL_HOSTS):
        raise WebhookUrlError("must be https (http only for localhost)")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlError("must not carry credentials")
    if parts.fragment or url.endswith("#"):
        raise WebhookUrlError("must not have a fragment")
    return parts


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class WebhookTarget:
    """A webhook URL and the addresses it was checked at: the request goes to one of them, nowhere else."""

    parts: SplitResult
    addresses: tuple[str, ...]

    def request_url(self, address: str) -> str:
        host = f"[{address}]" if ":" in address else address
        netloc = host + (f":{self.parts.port}" if self.parts.port else "")
        return urlunsplit((self.parts.scheme, netloc, self.parts.path or "/", self.parts.query, ""))

    def host_header(self) -> str:
        return self.parts.netloc

    def extensions(self) -> dict[str, str]:
        # TLS: the certificate is checked for the URL's host name, while the connection goes to the checked address.
        return {"sni_hostname": self.parts.hostname or ""} if self.parts.scheme == "https" else {}


def resolve_webhook_url(url: str, allow_private: bool) -> WebhookTarget:
    """The URL's target, refused when any address its host resolves to is not public (unless allowed)."""
    parts = validate_webhook_url(url)
    host = parts.hostname or ""
    try:
        answers = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise WebhookUrlError("has a host that does not resolve") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in answers]
    if not addresses:
        raise WebhookUrlError("has a host that does not resolve")
    if not allow_private and not all(_public(a) for a in addresses):
        raise WebhookUrlError("resolves to a loopback, private, link-local or otherwise non-public address")
    return WebhookTarget(parts, tuple(dict.fromkeys(str(a) for a in addresses)))
