"""Clients that ask for audio and then take it at a trickle, over HTTP or the
WebSocket: what the serving core's minimum drain rate acts on (tests and
bench/reliability.py)."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from raw_http import open_unread

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "client"))
from realtime import WebSocket  # noqa: E402  (client/call.py's standard-library WebSocket client)

RCVBUF = 4096  # a small receive buffer: the server feels the trickle at once


class SlowReader(threading.Thread):
    """Reads `chunk` bytes every `every_s` from a socket whose request is sent,
    until the server ends the connection, or `hurry()` says to read all there is;
    `ended_after_s` says when the connection ended (None: not yet). What the
    kernel had delivered before a server dropped the connection is still read
    first, at the trickle's pace: `hurry()` reaches the end sooner."""

    def __init__(self, sock: socket.socket, chunk: int = 1024, every_s: float = 3.0):
        super().__init__(daemon=True)
        self.sock, self.chunk, self.every_s = sock, chunk, every_s
        self.received = 0
        self.ended_after_s: float | None = None
        self._opened = time.monotonic()
        self._closed = threading.Event()
        self._hurry = threading.Event()
        self.start()

    def run(self) -> None:
        self.sock.settimeout(60)
        try:
            while not self._closed.is_set():
                data = self.sock.recv(65536 if self._hurry.is_set() else self.chunk)
                if not data:
                    break
                self.received += len(data)
                if not self._hurry.is_set():
                    self._hurry.wait(self.every_s)
        except OSError:  # reset by the server
            pass
        if not self._closed.is_set():
            self.ended_after_s = time.monotonic() - self._opened

    def hurry(self) -> None:
        self._hurry.set()

    def close(self) -> None:
        self._closed.set()
        self._hurry.set()
        self.sock.close()


def http(predict_url: str, body: dict[str, Any], headers: dict[str, str], **trickle: Any) -> SlowReader:
    return SlowReader(open_unread(predict_url, body, rcvbuf=RCVBUF, headers=headers), **trickle)


def websocket(
    base_url: str, headers: dict[str, str], messages: list[dict[str, Any]], **trickle: Any
) -> SlowReader:
    """A realtime session that sends `messages`, then trickles the raw socket."""
    ws = WebSocket(base_url.replace("http://", "ws://") + "/v1/websocket", headers, timeout=30)
    ws._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    for message in messages:
        ws.send_json(message)
    return SlowReader(ws._sock, **trickle)
