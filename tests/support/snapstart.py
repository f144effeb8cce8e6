"""Lambda SnapStart emulated without AWS: the runtime's hooks run as Lambda runs them, and os.fork() stands in for
a restore (the child starts from the parent's memory, as every copy restored from one snapshot starts from it).

`take_snapshot()` runs the before-snapshot hooks (in reverse order of registration, as Lambda does); each child of
`restored_copies()` runs the after-restore hooks (in order of registration) and then its work, and hands back the
work's JSON answer through a pipe. Children run one after the other, so their output never interleaves.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from snapshot_restore_py import get_after_restore, get_before_snapshot


def take_snapshot() -> None:
    for func, args, kwargs in reversed(get_before_snapshot()):
        func(*args, **kwargs)


def restore() -> None:
    for func, args, kwargs in get_after_restore():
        func(*args, **kwargs)


def restored_copies(work: Callable[[int], Any], copies: int = 2, run_hooks: bool = True) -> list[Any]:
    """`work(copy number)` in `copies` forked children of this process, each restored first (unless `run_hooks` is
    False: a copy that skipped the hooks, for comparison); their answers, in order."""
    answers = []
    for number in range(copies):
        sys.stdout.flush()
        sys.stderr.flush()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the restored copy
            os.close(read)
            try:
                if run_hooks:
                    restore()
                payload = {"answer": work(number)}
            except BaseException:
                payload = {"error": traceback.format_exc()}
            with os.fdopen(write, "w") as out:
                out.write(json.dumps(payload))
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as handle:
            received = handle.read()
        os.waitpid(pid, 0)
        payload = json.loads(received or '{"error": "the copy died without an answer"}')
        if "error" in payload:
            raise RuntimeError(f"restored copy {number} failed:\n{payload['error']}")
        answers.append(payload["answer"])
    return answers


class LocalKms:
    """A KMS client at the edge (no KMS runs here): every data key fresh from os.urandom, 'wrapped' in the clear so
    that a test can read which key a stored blob was encrypted with."""

    PREFIX = b"local-kms:"

    def generate_data_key(self, **_: Any) -> dict[str, bytes]:
        key = os.urandom(32)
        return {"Plaintext": key, "CiphertextBlob": self.PREFIX + key}

    def decrypt(self, CiphertextBlob: bytes, **_: Any) -> dict[str, bytes]:
        return {"Plaintext": CiphertextBlob.removeprefix(self.PREFIX)}

    def close(self) -> None:
        pass


def wrapped_key(blob: bytes) -> bytes:
    """The wrapped data key of a stored token blob (token_cipher's `v1 | length | wrapped key | ...`)."""
    length = int.from_bytes(blob[1:3], "big")
    return blob[3 : 3 + length]
