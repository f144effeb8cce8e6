"""A client's webhook: register, read, remove, rotate its secret. Secrets are sealed to the client id at rest."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time

from .api_models import WebhookDeletedResponse, WebhookResponse, WebhookSecretResponse
from .deployment import Deployment
from .errors import Internal, InvalidArgument, NotFound, Unavailable
from .records import ApiClient, WebhookRecord, WebhookSecretEntry
from .timestamps import iso
from .token_cipher import DecryptionError
from .webhook_urls import WebhookUrlError, resolve_webhook_url

SECRET_PREFIX = "whsec_"
ROTATION_OVERLAP_SECONDS = 24 * 3600  # the old secret keeps signing beside the new one this long
_MIN_SECRET_BYTES = 24
_KEPT_SECRETS = 5  # rotating again and again keeps at most this many signing at once
_TRIES = 5


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def check_secret(secret: str) -> str:
    """A secret given by configuration (the local runner's LOCAL_WEBHOOK_SECRET) must be as strong as ours."""
    try:
        raw = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not secret.startswith(SECRET_PREFIX) or len(raw) < _MIN_SECRET_BYTES:
        raise ValueError(f"a webhook secret is {SECRET_PREFIX} + base64 of at least {_MIN_SECRET_BYTES} bytes")
    return secret


def _associated(client_id: str) -> str:
    return f"webhook-secrets:{client_id}"


def _seal(deployment: Deployment, client_id: str, entries: list[WebhookSecretEntry]) -> bytes:
    plain = json.dumps([e.model_dump() for e in entries]).encode()
    return deployment.cipher.seal(_associated(client_id), plain)


def open_secrets(deployment: Deployment, record: WebhookRecord) -> list[WebhookSecretEntry]:
    plain = deployment.cipher.open(_associated(record.clientId), record.sealedSecrets)
    return [WebhookSecretEntry.model_validate(e) for e in json.loads(plain)]


def signing_secrets(deployment: Deployment, record: WebhookRecord, now: int) -> list[str]:
    """The secrets that sign at `now`: the current one, and any rotated out less than 24 hours ago."""
    return [e.secret for e in open_secrets(deployment, record) if e.signs_at(now)]


def _checked_url(deployment: Deployment, url: str) -> str:
    try:
        resolve_webhook_url(url, deployment.settings.allow_private_webhooks)
    except WebhookUrlError as error:
        raise InvalidArgument.for_field("url", str(error)) from None
    return url


def put_webhook(
    deployment: Deployment, client: ApiClient, url: str, now: int | None = None, secret: str | None = None
) -> WebhookResponse:
    """Set the URL; a new webhook gets a secret (answered once). An existing one keeps its secrets."""
    _checked_url(deployment, url)
    stamp = iso(int(time.time()) if now is None else now)
    store = deployment.storage.api_clients
    for _ in range(_TRIES):  # another request may create or delete it between our two writes
        if store.set_webhook_url(client.clientId, url, stamp):
            return WebhookResponse(url=url)
        created = secret or new_secret()
        sealed = _seal(deployment, client.clientId, [WebhookSecretEntry(secret=created)])
        if store.create_webhook(client.clientId, url, sealed, stamp):
            return WebhookResponse(url=url, secret=created)
    raise Unavailable("The webhook changed during the request; try again")


def get_webhook(deployment: Deployment, client: ApiClient) -> WebhookResponse:
    record = deployment.storage.api_clients.get_webhook(client.clientId)
    if record is None:
        raise NotFound("No webhook is registered")
    return WebhookResponse(url=record.url)


def delete_webhook(deployment: Deployment, client: ApiClient) -> WebhookDeletedResponse:
    return WebhookDeletedResponse(deleted=deployment.storage.api_clients.delete_webhook(client.clientId))


def rotate_secret(deployment: Deployment, client: ApiClient, now: int | None = None) -> WebhookSecretResponse:
    """A new current secret; the one it replaces signs beside it for 24 more hours."""
    now = int(time.time()) if now is None else now
    store = deployment.storage.api_clients
    for _ in range(_TRIES):
        record = store.get_webhook(client.clientId)
        if record is None:
            raise NotFound("No webhook is registered")
        try:
            entries = open_secrets(deployment, record)
        except DecryptionError:
            raise Internal("The webhook's secrets cannot be read") from None
        kept = [
            e if e.signsUntil is not None else e.model_copy(update={"signsUntil": now + ROTATION_OVERLAP_SECONDS})
            for e in entries
            if e.signs_at(now)
        ]
        created = new_secret()
        fresh = [WebhookSecretEntry(secret=created), *kept[: _KEPT_SECRETS - 1]]
        if store.replace_webhook_secrets(
            client.clientId, record.sealedSecrets, _seal(deployment, client.clientId, fresh), iso(now)
        ):
            return WebhookSecretResponse(secret=created)
    raise Unavailable("The webhook changed during the request; try again")
