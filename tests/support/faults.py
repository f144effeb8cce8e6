"""Dependencies that fail the way outages do, for fault-injection tests: nothing listening, or a silent peer."""

from __future__ import annotations

import socket
import threading

from local.dynamodb import free_port


def refused_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens: every connection is refused at once."""
    return f"http://127.0.0.1:{free_port()}"


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers: a hanging dependency.

    Counts the connections it accepted, so a test can tell whether a call was attempted at all.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue  # wake up to see whether stop() was called
            except OSError:
                return
            self.accepted.append(connection)  # held open, never read from or written to

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()
        for connection in self.accepted:
            connection.close()
