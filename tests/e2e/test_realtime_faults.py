"""The shared realtime session's failure paths, on the real truss server with a
synthetic model whose faults the text chooses (tests/trusses/fault-realtime): a
failure mid-unit is an `error` event, never silence; a wedged model is abandoned
and the replica reports unhealthy until it returns."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import httpx
import pytest
from httpx_ws import WebSocketDisconnect, connect_ws
from wsproto.events import BytesMessage

CONFIG = {"type": "session.config", "sample_rate": 16000}


@pytest.fixture(scope="module")
def faults(serve):
    return serve("tests/trusses/fault-realtime")


def events(ws, until: str, timeout: float = 20.0) -> list[dict | int]:
    """Events (and the byte count of each audio frame) up to the first of type `until`."""
    seen: list[dict | int] = []
    while True:
        message = ws.receive(timeout=timeout)
        if isinstance(message, BytesMessage):
            seen.append(len(message.data))
            continue
        seen.append(json.loads(message.data))
        if seen[-1]["type"] == until:
            return seen


def ready(server) -> int:
    try:
        with urllib.request.urlopen(f"{server.base_url}/v1/models/model", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_a_failure_mid_unit_is_an_error_event_and_the_turn_goes_on(faults):
    with httpx.Client() as client, connect_ws(f"{faults.base_url}/v1/websocket", client) as ws:
        ws.send_text(json.dumps(CONFIG))
        ws.send_text(json.dumps({"type": "input.text", "text": "This one will fail. This one is fine."}))
        ws.send_text(json.dumps({"type": "input.done"}))
        seen = events(ws, "session.done")
    kinds = [e["type"] if isinstance(e, dict) else "audio" for e in seen]
    # unit 0: its first two chunks, then the error in their place of audio.done
    assert kinds[:4] == ["audio.start", "audio", "audio", "error"]
    error = seen[3]
    assert isinstance(error, dict) and error["sentence_index"] == 0 and not error["fatal"]
    assert "sentence 0 failed" in error["message"] and "injected" not in error["message"]  # no internals
    assert kinds[4] == "audio.start" and kinds[-2:] == ["audio.done", "session.done"]
    assert seen[-1] == {"type": "session.done", "sentences": 2}


def test_a_wedged_model_is_abandoned_and_the_replica_unhealthy_until_it_returns(faults):
    with httpx.Client() as client, connect_ws(f"{faults.base_url}/v1/websocket", client) as ws:
        ws.send_text(json.dumps(CONFIG))
        ws.send_text(json.dumps({"type": "input.text", "text": "This one will hang."}))
        ws.send_text(json.dumps({"type": "input.done"}))
        started = time.monotonic()
        seen = events(ws, "error")
        assert time.monotonic() - started < 4  # at the 2 s stall timeout, not when the model returns
        error = seen[-1]
        assert isinstance(error, dict) and error["fatal"] and "stalled" in error["message"]
        assert ready(faults) == 503
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive(timeout=5)
        assert closed.value.code == 1011
    deadline = time.monotonic() + 10
    while ready(faults) != 200:
        assert time.monotonic() < deadline, "never healthy again"
        time.sleep(0.2)
