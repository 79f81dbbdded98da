"""The plugin's API key against real piper servers whose optional key (truss secret
`tts_api_key`) is set, over HTTP (piper-streaming) and over a WebSocket (piper-realtime):
sent, the audio streams; missing or wrong, the server's refusal comes back as a 401
status error that is not retried."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ServedTruss, serve_piper, ws_url
from helpers import FAST, collect

from livekit.agents import APIStatusError
from livekit.plugins import custom_tts

KEY = "plugin-test-key-5f1c"


@pytest.fixture(scope="module", params=["piper-streaming", "piper-realtime"])
def piper_with_key(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTruss]:
    log_dir = Path(tmp_path_factory.mktemp(f"{request.param}-key"))
    yield from serve_piper(log_dir, {"TRUSS_SECRET_tts_api_key": KEY}, truss=request.param)


def url_of(server: ServedTruss) -> str:
    return ws_url(server) if server.truss == "piper-realtime" else server.base_url


async def test_the_key_is_sent_and_the_audio_streams(piper_with_key, http_session):
    tts = custom_tts.TTS(api_url=url_of(piper_with_key), api_key=KEY, http_session=http_session)
    result = await collect(tts.synthesize("The key opens the door.", conn_options=FAST))
    assert result.error is None
    assert sum(ev.frame.samples_per_channel for ev in result.events) > 24000 // 2  # over half a second


@pytest.mark.parametrize("key", ["", "wrong-key"], ids=["none", "wrong"])
async def test_a_missing_or_wrong_key_is_a_401_not_retried(piper_with_key, http_session, monkeypatch, key):
    monkeypatch.delenv("BASETEN_API_KEY", raising=False)
    tts = custom_tts.TTS(api_url=url_of(piper_with_key), api_key=key or None, http_session=http_session)
    result = await collect(tts.synthesize("No key, no audio.", conn_options=FAST))
    assert isinstance(result.error, APIStatusError) and result.error.status_code == 401
    assert result.error.retryable is False
    assert "API key" in result.error.message
    assert KEY not in result.error.message and not result.events
