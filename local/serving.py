"""Werkzeug's threaded WSGI server in a background thread, logging requests without their query strings."""

from __future__ import annotations

import sys
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class _PathOnlyRequestHandler(WSGIRequestHandler):
    """Query strings carry codes, states and attempts: the access log shows method, path and status only."""

    quiet = False

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.quiet:
            return
        path = self.path.split("?", 1)[0]
        sys.stderr.write(f"{self.address_string()} {self.command} {path} {code}\n")

    def log_error(self, format: str, *args: Any) -> None:
        # The default includes the request line, query string and all.
        sys.stderr.write(f"{self.address_string()} {self.command} error\n")


class ServerThread:
    """Serve a WSGI app on 127.0.0.1:port (0: a free port) until stop()."""

    def __init__(self, app: Any, port: int = 0, host: str = "127.0.0.1", name: str = "server", quiet: bool = False):
        handler = type(f"{name}Handler", (_PathOnlyRequestHandler,), {"quiet": quiet})
        self.server: BaseWSGIServer = make_server(host, port, app, threaded=True, request_handler=handler)
        self.host = host
        self.name = name
        self.port = int(self.server.server_port)
        self._thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join(10)
        self.server.server_close()
