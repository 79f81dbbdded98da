"""What both transports need of a client's connection: its request id, its
socket's send buffers, bounded the same way, and a way to drop it at once."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
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


def _socket_transport(connection: HTTPConnection) -> asyncio.Transport | None:
    """The connection's asyncio transport: ASGI does not expose it, but uvicorn's
    `receive` (a request's or a WebSocket's) is bound to its protocol, which holds it."""
    bound = getattr(getattr(connection, "_receive", None), "__self__", None)
    transport = getattr(bound, "transport", None)
    return transport if hasattr(transport, "abort") else None


def cap_send_buffer(connection: HTTPConnection, bytes_per_s: int, backlog_s: float) -> bool:
    """Keep what waits below the serving core for a client small beside its
    backlog of `backlog_s` seconds at `bytes_per_s`: the kernel's send buffer at
    an eighth of a backlog (Linux doubles the value asked for: a quarter), not its
    autotuned buffer (up to 4 MB: 85 s of 24 kHz PCM), and the server's own write
    buffer (64 KiB by default: 4 s of 8 kHz PCM) at an eighth. So the core's
    backlog, and its minimum drain rate, see a client that does not read within
    about a third of a backlog of audio. Best effort; returns whether it applied."""
    nbytes = max(4096, int(bytes_per_s * backlog_s / 8))
    transport = _socket_transport(connection)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if transport is None or sock is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, nbytes)
        transport.set_write_buffer_limits(high=nbytes)
    except (OSError, AttributeError, ValueError):
        return False
    return True


def drop(connection: HTTPConnection) -> bool:
    """Drop the connection at once (TCP reset), whatever its sends wait for: a
    client that takes no audio cannot then hold the server's send on a full
    buffer, and a cut-short HTTP body has no terminating chunk. Returns False
    where the transport is out of reach (then the caller raises instead)."""
    transport = _socket_transport(connection)
    if transport is None:
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0: close sends RST and discards what the kernel still holds for the
        # client; a plain close would queue a FIN behind it, for a slow reader to find
        # only after reading everything.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    return True
