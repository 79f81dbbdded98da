"""A client that sends a request and then reads nothing, as a stalled listener does:
what backpressure and the read timeout act on (tests and bench/reliability.py)."""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import urlsplit


def open_unread(
    predict_url: str, body: dict[str, Any], rcvbuf: int | None = None, headers: dict[str, str] | None = None
) -> socket.socket:
    """POST `body` as JSON over a raw socket and return it unread; `rcvbuf` shrinks the
    socket's receive buffer, so the server feels a stalled reader sooner."""
    url = urlsplit(predict_url)
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((url.hostname, url.port))
    data = json.dumps(body).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    sock.sendall(
        f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
        f"{extra}Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    return sock
