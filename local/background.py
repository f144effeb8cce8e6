"""A daemon thread that loops until stopped: the base of the runner's scheduled jobs and webhook machinery."""

from __future__ import annotations

import threading
from typing import Self


class BackgroundLoop:
    """Runs `_run` in a daemon thread from start() until stop(); `_run` returns once `_stop` is set."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _run(self) -> None:
        raise NotImplementedError
