"""What both transports need of a client's connection: its request id, and its
socket's send buffer, bounded the same way."""

from __future__ import annotations

import re
import socket
import uuid

from starlette.requests import HTTPConnection

REQUEST_ID_HEADER = "X-Request-Id"
# Ids we echo back: short and plain, so a header cannot smuggle anything into logs.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(connection: HTTPConnection) -> str:
    """The platform's own id when it sends one, else the caller's, else a new one."""
    for header in ("x-baseten-request-id", "x-request-id"):
        value = connection.headers.get(header, "")
        if _SAFE_ID.fullmatch(value):
            return value
    return uuid.uuid4().hex


def cap_send_buffer(connection: HTTPConnection, bytes_per_s: int, backlog_s: float) -> bool:
    """Shrink the connection's kernel send buffer to a quarter of a backlog of
    `backlog_s` seconds at `bytes_per_s` (Linux doubles the value asked for: the
    kernel then holds about half a backlog more, so a client is at most about 1.5
    backlogs behind), instead of the kernel's autotuned buffer (up to 4 MB on
    Linux: 85 s of 24 kHz PCM). Best effort: it needs the socket, which ASGI does
    not expose; uvicorn's `receive` (a request's or a WebSocket's) is bound to its
    connection, which holds the transport. Returns whether it applied."""
    nbytes = max(16384, int(bytes_per_s * backlog_s / 4))
    bound = getattr(getattr(connection, "_receive", None), "__self__", None)
    transport = getattr(bound, "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, nbytes)
    except OSError:
        return False
    return True
