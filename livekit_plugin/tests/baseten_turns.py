"""Turns through LiveKit's own Baseten plugin: text pushed as an LLM streams it while
the audio and its word times are read back."""

from __future__ import annotations

import asyncio
import time

from helpers import llm_tokens

from livekit.agents import APIConnectOptions, APIError
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT, TimedString
from livekit.plugins import baseten

# One try: a retried turn would hide what the server answered the first time.
ONCE = APIConnectOptions(max_retry=0, retry_interval=0.05, timeout=10.0)


class Turn:
    """What one stream() turn gave: audio, timed words, when things happened."""

    def __init__(self) -> None:
        self.samples = 0
        self.rate = 0
        self.words: list[TimedString] = []
        self.first_audio_at: float | None = None
        self.last_text_at: float | None = None
        self.error: APIError | None = None

    @property
    def seconds(self) -> float:
        return self.samples / self.rate


async def speak(
    tts: baseten.TTS,
    text: str,
    delay: float = 0.0,
    stop_after_audio: bool = False,
    conn_options: APIConnectOptions = ONCE,
) -> Turn:
    """Push `text` as an LLM streams it (a token every `delay` s) while reading."""
    turn = Turn()
    stream = tts.stream(conn_options=conn_options)

    async def push() -> None:
        for token in llm_tokens(text):
            stream.push_text(token)
            await asyncio.sleep(delay)
        turn.last_text_at = time.monotonic()
        stream.end_input()

    pusher = asyncio.create_task(push())
    try:
        async for ev in stream:
            if turn.first_audio_at is None:
                turn.first_audio_at = time.monotonic()
            turn.samples += ev.frame.samples_per_channel
            turn.rate = ev.frame.sample_rate
            turn.words += ev.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT) or []
            if stop_after_audio:
                break  # barge-in: the listener interrupts
    except APIError as e:
        turn.error = e
    finally:
        pusher.cancel()
        await stream.aclose()
    return turn
