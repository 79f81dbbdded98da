"""The realtime (WebSocket) side of client/call.py: a minimal RFC 6455 client and the
session it speaks (session.config, input.text as typed, input.done, audio back).

Standard library only, like call.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
WEBSOCKET_PATH = "/v1/websocket"


class WebSocketError(Exception):
    pass


class WebSocket:
    """A blocking client WebSocket: `recv()` from one thread, `send_*` from any."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float):
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if secure else 80)
        raw = socket.create_connection((host, port), timeout=timeout)
        self._sock: socket.socket = (
            ssl.create_default_context().wrap_socket(raw, server_hostname=host) if secure else raw
        )
        self._lock = threading.Lock()
        self._buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = self._read_until(b"\r\n\r\n").decode("iso-8859-1")
        status, *fields = head.split("\r\n")
        if " 101 " not in f"{status} ":
            raise WebSocketError(f"the server refused the WebSocket: {status.strip()}")
        answers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
        expected = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
        if answers.get("sec-websocket-accept") != expected:
            raise WebSocketError("the server's handshake answer is wrong (not a WebSocket server?)")

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            self._fill()
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _fill(self) -> None:
        data = self._sock.recv(65536)
        if not data:
            raise WebSocketError("the connection closed")
        self._buffer += data

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)  # a client masks every frame
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with self._lock:
            self._sock.sendall(header + mask + masked)

    def send_json(self, message: dict[str, Any]) -> None:
        self._send_frame(TEXT, json.dumps(message).encode())

    def recv(self) -> tuple[int, bytes]:
        """The next message: (TEXT or BINARY, payload), or (CLOSE, code and reason)."""
        opcode, message = None, b""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if second & 0x80 else None
            payload = self._read(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            kind = first & 0x0F
            if kind == PING:
                self._send_frame(PONG, payload)
                continue
            if kind == PONG:
                continue
            if kind == CLOSE:
                return CLOSE, payload
            if kind != CONTINUATION:
                opcode = kind
            message += payload
            if first & 0x80 and opcode is not None:
                return opcode, message

    def close(self, code: int = 1000) -> None:
        try:
            self._send_frame(CLOSE, struct.pack("!H", code))
        except OSError:
            pass
        self._sock.close()


def websocket_url(url: str | None, model_id: str | None) -> str:
    if model_id:
        return f"wss://model-{model_id}.api.baseten.co/environments/production/websocket"
    assert url is not None
    if urllib.parse.urlsplit(url).path in ("", "/"):
        return url.rstrip("/") + WEBSOCKET_PATH
    return url


def close_reason(payload: bytes) -> str:
    if len(payload) < 2:
        return "no close code"
    code = struct.unpack("!H", payload[:2])[0]
    reason = payload[2:].decode("utf-8", "replace")
    return f"close code {code}" + (f": {reason}" if reason else "")


# An empty input.done keeps a session whose text comes slowly (someone typing) off
# the server's idle timeout; each is answered with a session.done.
KEEPALIVE_S = 15.0


def speak(
    url: str,
    headers: dict[str, str],
    config: dict[str, Any],
    pieces: Iterable[str],
    on_audio: Callable[[bytes], None],
    on_event: Callable[[dict[str, Any]], None],
    timeout: float,
) -> None:
    """One session: the config, each piece as an input.text the moment it is there,
    input.done at the end; audio to `on_audio` as it arrives, until the last
    session.done. Raises WebSocketError on an `error` event or a closed socket."""
    ws = WebSocket(url, headers, timeout)
    failure: list[BaseException] = []
    finished = threading.Event()
    flushes = [0]  # input.done sent; each is answered by one session.done
    lock = threading.Lock()

    def flush(last: bool = False) -> None:
        with lock:  # counted and marked last together: the reader decides under the same lock
            flushes[0] += 1
            ws.send_json({"type": "input.done"})
            if last:
                finished.set()

    def send_text() -> None:
        try:
            for piece in pieces:
                ws.send_json({"type": "input.text", "text": piece})
            flush(last=True)
        except BaseException as exc:  # reported by the receiving side
            failure.append(exc)
        finally:
            finished.set()

    def keepalive() -> None:
        while not finished.wait(KEEPALIVE_S):
            try:
                flush()
            except OSError:
                return

    try:
        ws.send_json({"type": "session.config", **config})
        for job in (send_text, keepalive):
            threading.Thread(target=job, name=job.__name__, daemon=True).start()
        done = 0
        while True:
            try:
                kind, payload = ws.recv()
            except OSError as exc:  # timeout, reset
                raise WebSocketError(f"no answer from the server: {exc}") from exc
            if kind == BINARY:
                on_audio(payload)
                continue
            if kind == CLOSE:
                raise WebSocketError(f"the server closed the session ({close_reason(payload)})")
            event = json.loads(payload)
            on_event(event)
            if event.get("type") == "error":
                raise WebSocketError(f"server error: {event.get('message')}")
            if event.get("type") == "session.done":
                done += 1
                with lock:
                    if finished.is_set() and done >= flushes[0]:
                        break
        if failure:
            raise WebSocketError(f"sending text failed: {failure[0]}")
        ws.send_json({"type": "session.close"})
    finally:
        finished.set()
        ws.close()
