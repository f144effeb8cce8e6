"""Secrets at rest (tokens, webhook secrets): AES-256-GCM, what they belong to as associated data.

Envelope: one data key per container, from KMS (GenerateDataKey) in AWS or a locally configured
key in the embedded default. A stored blob is `v1 | len(wrapped key) | wrapped key | nonce | ciphertext`;
because the connection id is authenticated, a blob copied onto another connection fails to decrypt.
"""

from __future__ import annotations

import base64
import os
import struct
from typing import TYPE_CHECKING, Any, Protocol

from .errors import StorageUnavailable
from .records import TokenSet

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"
_CONTEXT = {"purpose": "calendar-connect-tokens"}


class DecryptionError(Exception):
    pass


class KeySource(Protocol):
    def data_key(self) -> tuple[bytes, bytes]:
        """(plaintext key, wrapped key) to encrypt with."""

    def unwrap(self, wrapped: bytes) -> bytes:
        """The plaintext key of a wrapped key."""

    def prime(self) -> None:
        """Make what encrypting will need, without a call and without a key (before a SnapStart snapshot)."""

    def renew(self) -> None:
        """Forget the data key to encrypt with and drop connections: a SnapStart copy must make its own."""


class LocalKeySource:
    """The embedded default: one AES-256 key from configuration, 'wrapped' as a fixed marker."""

    _MARKER = b"local"

    def __init__(self, key_b64: str) -> None:
        key = base64.b64decode(key_b64)
        if len(key) != 32:
            raise ValueError("LOCAL_TOKEN_KEY must be 32 bytes, base64-encoded")
        self._key = key

    def data_key(self) -> tuple[bytes, bytes]:
        return self._key, self._MARKER

    def unwrap(self, wrapped: bytes) -> bytes:
        if wrapped != self._MARKER:
            raise DecryptionError("blob was not written with the local key")
        return self._key

    def prime(self) -> None:
        pass

    def renew(self) -> None:
        """The configured key is the deployment's, shared by design."""


class KmsKeySource:
    """A data key generated once per container; unwrapped keys cached by their wrapped form."""

    def __init__(self, key_id: str, client: Any | None = None, timeouts: tuple[float, float] = (1.0, 2.0)) -> None:
        self._key_id = key_id
        self._client = client
        self._timeouts = timeouts  # connect, read: per attempt, within the invocation's deadline (aws_calls)
        self._current: tuple[bytes, bytes] | None = None
        self._unwrapped: dict[bytes, bytes] = {}

    def _kms(self) -> Any:
        if self._client is None:
            import boto3

            from .aws_calls import client_config

            self._client = boto3.client("kms", config=client_config(*self._timeouts))
        return self._client

    def _call(self, operation: str, **request: Any) -> Any:
        from .aws_calls import call

        try:
            return call(getattr(self._kms(), operation), sum(self._timeouts), **request)
        except StorageUnavailable:
            raise
        except Exception as error:  # botocore errors: KMS refused the call
            raise StorageUnavailable("kms") from error

    def data_key(self) -> tuple[bytes, bytes]:
        if self._current is None:
            answer = self._call("generate_data_key", KeyId=self._key_id, KeySpec="AES_256", EncryptionContext=_CONTEXT)
            self._current = (answer["Plaintext"], answer["CiphertextBlob"])
            self._unwrapped[answer["CiphertextBlob"]] = answer["Plaintext"]
        return self._current

    def unwrap(self, wrapped: bytes) -> bytes:
        if wrapped not in self._unwrapped:
            answer = self._call("decrypt", CiphertextBlob=wrapped, EncryptionContext=_CONTEXT, KeyId=self._key_id)
            self._unwrapped[wrapped] = answer["Plaintext"]
        return self._unwrapped[wrapped]

    def prime(self) -> None:
        # The client and its operations' setup (answered in-process: aws_priming), no data key: one made now would
        # be in every copy of the snapshot.
        from botocore.client import BaseClient

        from . import aws_priming

        client = self._kms()
        if isinstance(client, BaseClient):
            aws_priming.prime(client, aws_priming.kms_calls(self._key_id, _CONTEXT))

    def renew(self) -> None:
        # Every container restored from one snapshot would otherwise encrypt with the same data key (and random
        # GCM nonces under one key are safe only up to a bounded number of messages).
        self._current = None
        if self._client is not None:
            self._client.close()


def _aesgcm() -> type[AESGCM]:
    """cryptography on first use (list/get never decrypt), outside any `except`: a broken install must fail
    loudly, not read as a token that does not decrypt."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM as cipher

    return cipher


class TokenCipher:
    def __init__(self, keys: KeySource) -> None:
        self._keys = keys

    def encrypt(self, connection_id: str, tokens: TokenSet) -> bytes:
        return self.seal(connection_id, tokens.model_dump_json().encode())

    def prime(self) -> None:
        # OpenSSL sets up AES-GCM on its first use (~1 ms); an all-zero key and nonce use no randomness and no secret.
        _aesgcm()(bytes(32)).encrypt(bytes(12), b"", None)
        self._keys.prime()  # after cryptography's import, whose ABC registrations empty isinstance caches

    def renew_data_key(self) -> None:
        self._keys.renew()

    def decrypt(self, connection_id: str, blob: bytes) -> TokenSet:
        return TokenSet.model_validate_json(self.open(connection_id, blob))

    def seal(self, associated: str, plain: bytes) -> bytes:
        """Any secret at rest (tokens, webhook secrets), bound to `associated`: it opens only with the same value."""
        key, wrapped = self._keys.data_key()
        nonce = os.urandom(12)
        sealed = _aesgcm()(key).encrypt(nonce, plain, associated.encode())
        return _VERSION + struct.pack(">H", len(wrapped)) + wrapped + nonce + sealed

    def open(self, associated: str, blob: bytes) -> bytes:
        aesgcm = _aesgcm()
        try:
            if blob[:1] != _VERSION:
                raise DecryptionError("unknown token blob version")
            (length,) = struct.unpack(">H", blob[1:3])
            wrapped = blob[3 : 3 + length]
            nonce, sealed = blob[3 + length : 15 + length], blob[15 + length :]
            return aesgcm(self._keys.unwrap(wrapped)).decrypt(nonce, sealed, associated.encode())
        except (struct.error, ValueError) as error:
            raise DecryptionError("token blob is malformed") from error
        except Exception as error:
            if isinstance(error, (DecryptionError, StorageUnavailable)):
                raise
            raise DecryptionError("token blob does not belong to this connection") from error


def cipher_from_settings(kms_key_id: str, local_key: str, timeouts: tuple[float, float] = (1.0, 2.0)) -> TokenCipher:
    if kms_key_id:
        return TokenCipher(KmsKeySource(kms_key_id, timeouts=timeouts))
    if local_key:
        return TokenCipher(LocalKeySource(local_key))
    raise ValueError("token encryption needs TOKEN_KMS_KEY_ID (AWS) or LOCAL_TOKEN_KEY (embedded default)")
