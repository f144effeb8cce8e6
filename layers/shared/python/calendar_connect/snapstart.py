"""Lambda SnapStart: prime before the snapshot, renew after each restore. A handler module imports this one.

`snapshot_restore_py` ships with Lambda's Python runtimes (3.12 and later) and is not in the layer: a copy in the
layer, earlier on the path, would stand in for the runtime's own, whose registry its snapshot machinery was built to
read. Elsewhere (tests, the local runner) it is used when installed (requirements-dev.txt); without it no snapshot is
ever taken, and the hooks are registered nowhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import deployment, observability

try:
    from snapshot_restore_py import register_after_restore, register_before_snapshot
except ImportError:  # pragma: no cover - not in Lambda, and not installed here

    def register_before_snapshot(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
        return func

    def register_after_restore(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
        return func


__all__ = ["register_after_restore", "register_before_snapshot"]

register_before_snapshot(deployment.prime)
register_after_restore(deployment.after_restore)
register_after_restore(observability.renew_trace_emitter)
