"""LiveKit's own Baseten plugin in its default mode (`baseten.TTS(model_endpoint=...)`,
Baseten's TTS shape for Orpheus-style Trusses), unchanged, against the real piper
Trusses served by truss's server: over HTTP it POSTs `{prompt, voice, temperature,
language}` and reads 24 kHz PCM; over the WebSocket it sends a config with no `type`,
then the words as plain frames, then `__END__`, and reads audio until the close."""

from __future__ import annotations

import asyncio

import pytest
from conftest import ws_url
from helpers import llm_tokens

from livekit.agents import APIConnectOptions, APIError
from livekit.plugins import baseten

VOICE = "en_US-joe-medium"
TEXT = "Hello from the default mode. It speaks our voices too."
ONCE = APIConnectOptions(max_retry=0, retry_interval=0.05, timeout=10.0)


def default_tts(endpoint: str, http_session, **voice: str) -> baseten.TTS:
    return baseten.TTS(model_endpoint=endpoint, api_key="unused-locally", http_session=http_session, **voice)


async def seconds_of(stream) -> tuple[float, int]:
    samples, rate = 0, 0
    async for ev in stream:
        samples += ev.frame.samples_per_channel
        rate = ev.frame.sample_rate
    return samples / rate if rate else 0.0, rate


async def test_http_default_mode_speaks(piper, http_session):
    tts = default_tts(piper.predict_url, http_session, voice=VOICE)
    try:
        seconds, rate = await seconds_of(tts.synthesize(TEXT, conn_options=ONCE))
    finally:
        await tts.aclose()
    assert rate == 24000 and seconds > 1.5, seconds


async def test_http_default_mode_with_its_default_voice_gets_a_clear_error(piper, http_session):
    tts = default_tts(piper.predict_url, http_session)  # voice "tara": not ours
    try:
        with pytest.raises(APIError) as refused:
            await seconds_of(tts.synthesize(TEXT, conn_options=ONCE))
    finally:
        await tts.aclose()
    assert getattr(refused.value, "status_code", None) == 422


async def stream_turn(tts: baseten.TTS, text: str) -> tuple[float, int]:
    stream = tts.stream(conn_options=ONCE)

    async def push() -> None:
        for token in llm_tokens(text):
            stream.push_text(token)
            await asyncio.sleep(0.005)
        stream.end_input()

    pusher = asyncio.create_task(push())
    try:
        return await seconds_of(stream)
    finally:
        pusher.cancel()
        await stream.aclose()


async def test_websocket_default_mode_speaks_the_words_as_they_come(piper_realtime, http_session):
    tts = default_tts(ws_url(piper_realtime), http_session, voice=VOICE)
    try:
        seconds, rate = await stream_turn(tts, TEXT)
    finally:
        await tts.aclose()
    assert rate == 24000 and seconds > 1.5, seconds


async def test_websocket_default_mode_with_an_unknown_voice_is_closed_with_the_reason(
    piper_realtime, http_session
):
    tts = default_tts(ws_url(piper_realtime), http_session)  # voice "tara"
    try:
        with pytest.raises(APIError):  # no audio: the socket was closed (1008) naming the voice
            await stream_turn(tts, TEXT)
    finally:
        await tts.aclose()
