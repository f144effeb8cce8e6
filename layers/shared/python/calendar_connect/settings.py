"""Settings: one model, read from the environment once per container."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    pending_table: str = Field(alias="PENDING_TABLE")
    connections_table: str = Field(alias="CONNECTIONS_TABLE")
    api_clients_table: str = Field(alias="API_CLIENTS_TABLE")
    # Empty: the callback URL is derived from the domain API Gateway received the request on.
    public_base_url: str = Field(default="", alias="PUBLIC_BASE_URL")
    # Extra provider files, comma-separated; later files override earlier ones by provider id.
    providers_file: str = Field(default="", alias="PROVIDERS_FILE")
    # Local runner and tests only: where DynamoDB Local listens.
    dynamodb_endpoint: str = Field(default="", alias="DYNAMODB_ENDPOINT")
    # Token encryption: a KMS key in AWS, or a base64 AES-256 key in the embedded default.
    token_kms_key_id: str = Field(default="", alias="TOKEN_KMS_KEY_ID")
    local_token_key: str = Field(default="", alias="LOCAL_TOKEN_KEY", repr=False)
    # Secrets Manager secret of the OAuth clients (JSON: provider id -> {client_id, client_secret}).
    client_secrets_id: str = Field(default="", alias="CLIENT_SECRETS_ID")
    # Bind each attempt to the browser that opened it (RFC 9700 2.1.1) through /oauth2/start.
    browser_binding: bool = Field(default=True, alias="BROWSER_BINDING")
    # How long an oauthUrl nobody has opened yet can be opened (a bearer link until a browser binds it).
    start_link_seconds: int = Field(default=120, ge=1, alias="START_LINK_SECONDS")
    # Per attempt, and never past the invocation's deadline (deadline.py): providers over HTTP...
    http_connect_timeout: float = Field(default=3.0, alias="HTTP_CONNECT_TIMEOUT")
    http_read_timeout: float = Field(default=8.0, alias="HTTP_READ_TIMEOUT")
    # ...and DynamoDB and KMS (a millisecond service: a dead one answers 503 within about one read timeout).
    storage_connect_timeout: float = Field(default=1.0, alias="STORAGE_CONNECT_TIMEOUT")
    storage_read_timeout: float = Field(default=2.0, alias="STORAGE_READ_TIMEOUT")
    max_body_bytes: int = Field(default=16 * 1024, alias="MAX_BODY_BYTES")
    page_size: int = Field(default=50, alias="CONNECTIONS_PAGE_SIZE")
    # Webhooks: undelivered events wait in this table; private receivers only where the deployment allows them.
    webhook_deliveries_table: str = Field(default="", alias="WEBHOOK_DELIVERIES_TABLE")
    allow_private_webhooks: bool = Field(default=False, alias="ALLOW_PRIVATE_WEBHOOKS")
    # The keep-alive job: refreshes in flight at once, and the time it keeps for those when it stops taking work.
    keepalive_concurrency: int = Field(default=32, ge=1, le=256, alias="KEEPALIVE_CONCURRENCY")
    keepalive_stop_margin_seconds: int = Field(default=60, ge=0, alias="KEEPALIVE_STOP_MARGIN_SECONDS")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.model_validate({k: v for k, v in os.environ.items() if v != ""})
