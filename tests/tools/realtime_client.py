"""A raw WebSocket client of the realtime protocol (docs/protocol.md)
for the serving-side tests: open a session, send messages, read a turn's units."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from httpx_ws import WebSocketSession, connect_ws
from wsproto.events import BytesMessage, TextMessage


@contextmanager
def session(server: Any, key: str | None = None) -> Iterator[WebSocketSession]:
    headers = {"Authorization": f"Api-Key {key}"} if key else {}
    url = f"{server.base_url}/v1/websocket"
    with httpx.Client(timeout=30) as client, connect_ws(url, client, headers=headers) as ws:
        yield ws


def send(ws: WebSocketSession, **message: Any) -> None:
    ws.send_text(json.dumps(message))


def event(ws: WebSocketSession, timeout: float = 15.0) -> dict[str, Any]:
    """The next JSON event (failing on audio)."""
    message = ws.receive(timeout=timeout)
    assert isinstance(message, TextMessage), message
    parsed: dict[str, Any] = json.loads(message.data)
    return parsed


@dataclass
class Unit:
    start: dict[str, Any]
    audio: bytearray = field(default_factory=bytearray)
    done: dict[str, Any] | None = None

    @property
    def seconds(self) -> float:
        return len(self.audio) / 2 / self.start["sample_rate"]


def turn(
    ws: WebSocketSession, timeout: float = 30.0, units: list[Unit] | None = None
) -> tuple[list[Unit], dict[str, Any]]:
    """Read units (after `units`, begun already) until session.done; an error event fails the test."""
    units = units or []
    deadline = time.monotonic() + timeout
    while True:
        message = ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(message, BytesMessage):
            assert units and units[-1].done is None, "audio outside a unit"
            units[-1].audio += message.data
            continue
        ev = json.loads(message.data)
        if ev["type"] == "audio.start":
            units.append(Unit(ev))
        elif ev["type"] == "audio.done":
            assert ev["sentence_index"] == units[-1].start["sentence_index"]
            units[-1].done = ev
        elif ev["type"] == "session.done":
            return units, ev
        else:
            pytest.fail(f"unexpected event {ev}")


def push_words(ws: WebSocketSession, text: str) -> None:
    """The text as an LLM sends it: a word (and its space) at a time."""
    for word in text.split(" "):
        send(ws, type="input.text", text=word + " ")
