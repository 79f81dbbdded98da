"""The plugin's API key against a real piper-streaming server whose optional key
(truss secret `tts_api_key`) is set: sent, the audio streams; missing or wrong, the
server's 401 comes back as a status error that is not retried."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ServedTruss, serve_piper
from helpers import FAST, collect

from livekit.agents import APIStatusError
from livekit.plugins import custom_tts

KEY = "plugin-test-key-5f1c"


@pytest.fixture(scope="module")
def piper_with_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTruss]:
    yield from serve_piper(Path(tmp_path_factory.mktemp("piper-key")), {"TRUSS_SECRET_tts_api_key": KEY})


async def test_the_key_is_sent_and_the_audio_streams(piper_with_key, http_session):
    tts = custom_tts.TTS(api_url=piper_with_key.base_url, api_key=KEY, http_session=http_session)
    result = await collect(tts.synthesize("The key opens the door.", conn_options=FAST))
    assert result.error is None
    assert sum(ev.frame.samples_per_channel for ev in result.events) > 24000 // 2  # over half a second


@pytest.mark.parametrize("key", ["", "wrong-key"], ids=["none", "wrong"])
async def test_a_missing_or_wrong_key_is_a_401_not_retried(piper_with_key, http_session, monkeypatch, key):
    monkeypatch.delenv("BASETEN_API_KEY", raising=False)
    tts = custom_tts.TTS(api_url=piper_with_key.base_url, api_key=key or None, http_session=http_session)
    result = await collect(tts.synthesize("No key, no audio.", conn_options=FAST))
    assert isinstance(result.error, APIStatusError) and result.error.status_code == 401
    assert result.error.retryable is False
    assert "API key" in result.error.message
    assert KEY not in result.error.message and not result.events
