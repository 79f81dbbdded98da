"""Driving the fault-streaming test Truss over HTTP: streamed requests, cut bodies,
and the events its generations record (FAULT_EVENTS_PATH)."""

from __future__ import annotations

import json

import pytest
import requests


def events(server) -> list[dict]:
    if not server.events_path.exists():
        return []
    return [json.loads(line) for line in server.events_path.read_text().splitlines()]


def open_stream(server, body: dict) -> requests.Response:
    """POST `body`; the response streams (use it as a context manager)."""
    return requests.post(server.predict_url, json=body, stream=True, timeout=60)


def read_all(server, body) -> tuple[int, bytes]:
    with open_stream(server, body) as r:
        return r.status_code, b"".join(r.iter_content(chunk_size=None))


def assert_cut_mid_stream(server, body) -> None:
    """A 200 whose chunked body breaks off: an incomplete read, never a clean end."""
    with open_stream(server, body) as r:
        assert r.status_code == 200
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            b"".join(r.iter_content(chunk_size=None))
