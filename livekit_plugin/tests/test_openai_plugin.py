"""LiveKit's own OpenAI TTS plugin (`livekit-plugins-openai`, unchanged) with
`base_url` pointed at piper-openai: its defaults (model gpt-4o-mini-tts, so SSE;
MP3) and the formats it decodes, through its synthesize API (what an AgentSession's
TTS node calls for this non-streaming TTS)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import serve_piper

from livekit.agents import APIConnectOptions, APIStatusError
from livekit.plugins import openai

TEXT = "Hello from LiveKit's OpenAI plugin. Our voice answers it."
ONCE = APIConnectOptions(max_retry=0, retry_interval=0.05, timeout=10.0)


@pytest.fixture(scope="module")
def piper_openai(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    yield from serve_piper(tmp_path_factory.mktemp("piper-openai"), truss="piper-openai")


def plugin(server, **options) -> openai.TTS:
    return openai.TTS(base_url=f"{server.base_url}/v1", api_key="unused-locally", **options)


async def speak(tts: openai.TTS, text: str = TEXT) -> tuple[float, int]:
    samples, rate = 0, 0
    try:
        async for ev in tts.synthesize(text, conn_options=ONCE):
            samples += ev.frame.samples_per_channel
            rate = ev.frame.sample_rate
    finally:
        await tts.aclose()
    return samples / rate if rate else 0.0, rate


@pytest.mark.parametrize(
    "options",
    [
        {},  # gpt-4o-mini-tts: SSE with MP3 inside
        {"model": "tts-1"},  # bytes as they are made
        {"model": "tts-1", "response_format": "opus"},
        {"response_format": "pcm"},
        {"response_format": "wav", "voice": "en_US-joe-medium", "speed": 1.25},
    ],
)
async def test_the_plugin_speaks(piper_openai, options):
    seconds, rate = await speak(plugin(piper_openai, **options))
    assert rate == 24000 and 1.5 < seconds < 8, seconds


async def test_a_bad_voice_is_the_plugins_status_error(piper_openai):
    with pytest.raises(APIStatusError) as refused:
        await speak(plugin(piper_openai, voice="nobody"))
    assert refused.value.status_code == 400 and "voice" in str(refused.value)
