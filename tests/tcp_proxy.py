"""A loopback TCP proxy that tests stop and restart to simulate a server going away.

``TcpProxy(port)`` forwards 127.0.0.1:<its own port> to 127.0.0.1:``port``. ``stop()``
drops every open connection and closes the listening socket, so new connections are
refused, as by a server that is down; ``start()`` listens again on the same port, so
clients reconnect with the URL they had. Setting ``hang_after`` makes it accept the
connections after that many and never answer them, as a server that hangs. Threads only,
loopback only.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

_CHUNK = 65536


class TcpProxy:
    """Forward 127.0.0.1:``self.port`` to 127.0.0.1:``target``, until stopped."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.accepted = 0
        """Connections accepted since the proxy was made (a client that reconnected)."""
        self.hang_after: int | None = None
        """Forward only this many connections; accept later ones and hold them unanswered."""
        self.held = 0
        """Connections accepted and held unanswered."""
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the proxy accepts connections."""
        return self._listener is not None

    def start(self) -> None:
        """Listen (on the port of the first start, once there was one) and forward."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and drop the open ones (each side sees a reset or EOF)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            dropped, self._open = self._open, set()
        for sock in dropped:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            if self.hang_after is not None and self.accepted >= self.hang_after:
                with self._lock:
                    self._open.add(client)  # closed by stop()
                    self.held += 1
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    client.close()
                    server.close()
                    return
                self._open.update((client, server))
                self.accepted += 1
            done = threading.Barrier(2, action=functools.partial(self._close, client, server))
            for source, sink in ((client, server), (server, client)):
                pump = threading.Thread(target=self._pump, args=(source, sink, done), daemon=True)
                pump.start()

    def _pump(self, source: socket.socket, sink: socket.socket, done: threading.Barrier) -> None:
        try:
            while data := source.recv(_CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with contextlib.suppress(threading.BrokenBarrierError):
            done.wait()

    def _close(self, *pair: socket.socket) -> None:
        """Both directions ended: forget and close the connection's two sockets."""
        with self._lock:
            self._open.difference_update(pair)
        for sock in pair:
            sock.close()


def through(url: str, proxy: TcpProxy, **query: object) -> str:
    """``url`` with its host and port replaced by the proxy's, and ``query`` added."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    netloc = f"{user}@127.0.0.1:{proxy.port}" if user else f"127.0.0.1:{proxy.port}"
    extra = "&".join(f"{key}={value}" for key, value in query.items())
    joined = "&".join(part for part in (parts.query, extra) if part)
    return urlunsplit(parts._replace(netloc=netloc, query=joined))
