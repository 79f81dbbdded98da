from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

from livekit import rtc
from livekit.agents import APIConnectOptions, APIError
from livekit.agents import tts as agents_tts

# Fast retries so a test of three attempts takes milliseconds, not the 2 s default.
FAST = APIConnectOptions(max_retry=2, retry_interval=0.05, timeout=5.0)


@dataclass
class Result:
    events: list[agents_tts.SynthesizedAudio] = field(default_factory=list)
    error: APIError | None = None

    @property
    def pcm(self) -> bytes:
        return b"".join(bytes(ev.frame.data.cast("B")) for ev in self.events)

    @property
    def duration(self) -> float:
        return sum(ev.frame.duration for ev in self.events)


async def collect(stream) -> Result:
    """Drain a ChunkedStream or SynthesizeStream, keeping frames and the error."""
    result = Result()
    try:
        async for ev in stream:
            result.events.append(ev)
    except APIError as e:
        result.error = e
    finally:
        await stream.aclose()
    return result


def llm_tokens(text: str) -> list[str]:
    """Text cut the way an LLM streams it: words, spaces and punctuation apart,
    long words split in two."""
    tokens: list[str] = []
    for piece in re.findall(r"\s*\w+|\s*[^\w\s]", text):
        if len(piece) > 6:
            tokens += [piece[:4], piece[4:]]
        else:
            tokens.append(piece)
    assert "".join(tokens) == text
    return tokens


async def feed(stream: agents_tts.SynthesizeStream, text: str, delay: float = 0.002) -> None:
    for token in llm_tokens(text):
        stream.push_text(token)
        await asyncio.sleep(delay)
    stream.end_input()


def make_collecting_output():
    from livekit.agents.voice import io

    class _Output(io.AudioOutput):
        """An audio sink that keeps frames and reports playback as done at once."""

        def __init__(self) -> None:
            super().__init__(label="collect", capabilities=io.AudioOutputCapabilities(pause=False))
            self.frames: list[rtc.AudioFrame] = []
            self._segment = 0.0

        async def capture_frame(self, frame: rtc.AudioFrame) -> None:
            await super().capture_frame(frame)
            if not self._segment:
                self.on_playback_started(created_at=time.time())
            self._segment += frame.duration
            self.frames.append(frame)

        def flush(self) -> None:
            super().flush()
            if self._segment:
                played, self._segment = self._segment, 0.0
                self.on_playback_finished(playback_position=played, interrupted=False)

        def clear_buffer(self) -> None:
            if self._segment:
                played, self._segment = self._segment, 0.0
                self.on_playback_finished(playback_position=played, interrupted=True)

    return _Output()
