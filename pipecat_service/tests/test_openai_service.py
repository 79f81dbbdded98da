"""Pipecat's own OpenAITTSService, unchanged, with `base_url` at piper-openai: the
documented way to use the HTTP Trusses from Pipecat, inside a real pipeline."""

from __future__ import annotations

from pipecat.frames.frames import (
    ErrorFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.tests.utils import SleepFrame, run_test

TEXT = "Hello from Pipecat's OpenAI service. It speaks with our voice."


def openai_tts(server, voice: str) -> OpenAITTSService:
    return OpenAITTSService(
        api_key="unused-locally",
        base_url=f"{server.base_url}/v1",
        settings=OpenAITTSService.Settings(voice=voice, model="gpt-4o-mini-tts"),
    )


async def test_the_openai_service_speaks_through_piper_openai(piper_openai):
    down, _ = await run_test(
        openai_tts(piper_openai, "alloy"), frames_to_send=[TTSSpeakFrame(TEXT), SleepFrame(3.0)]
    )
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    seconds = sum(len(f.audio) for f in audio) / 2 / 24000
    assert {f.sample_rate for f in audio} == {24000} and 2.5 < seconds < 8.0, seconds
    assert [type(f) for f in down if isinstance(f, TTSStartedFrame | TTSStoppedFrame)] == [
        TTSStartedFrame,
        TTSStoppedFrame,
    ]


async def test_an_unknown_voice_is_an_error_frame_naming_it(piper_openai):
    _, up = await run_test(
        openai_tts(piper_openai, "nobody"), frames_to_send=[TTSSpeakFrame(TEXT), SleepFrame(1.0)]
    )
    errors = [f for f in up if isinstance(f, ErrorFrame)]
    assert errors and "voice" in errors[0].error
