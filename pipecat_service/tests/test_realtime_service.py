"""TrussRealtimeTTSService inside real Pipecat pipelines (Pipecat's own test
runner), against the real piper-realtime Truss: the LLM's tokens in, audio frames
and word frames out in order, an interruption that stops the server's synthesis,
and the next turn on a fresh session."""

from __future__ import annotations

import re
import time
import urllib.request

from conftest import ws_url
from pipecat.frames.frames import (
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.tests.utils import SleepFrame, run_test

from pipecat_tts_stack import TrussRealtimeTTSService

RATE = 24000
TEXT = "Hello from Pipecat. Our voice speaks every word, and times it too."
SENTENCE = "This long passage keeps the synthesizer busy for quite a while."


def llm_turn(text: str, end_after_s: float = 0.0) -> list:
    """A turn as an LLM service pushes it: a start, tokens of a word each, an end
    (`end_after_s` after the last token: an LLM still writing)."""
    tokens = [LLMTextFrame(t) for t in re.findall(r"\S+\s*|\s+", text)]
    pause = [SleepFrame(end_after_s)] if end_after_s else []
    return [LLMFullResponseStartFrame(), *tokens, *pause, LLMFullResponseEndFrame()]


class Arrivals(BaseObserver):
    """When each frame left the TTS service."""

    def __init__(self, service: TrussRealtimeTTSService):
        super().__init__()
        self._service = service
        self.frames: list[tuple[float, object]] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if data.source is self._service:
            self.frames.append((time.monotonic(), data.frame))


def audio_seconds(frames) -> float:
    return sum(len(f.audio) for f in frames if isinstance(f, TTSAudioRawFrame)) / 2 / RATE


def spoken_words(frames) -> list[str]:
    return [f.text.strip() for f in frames if isinstance(f, TTSTextFrame)]


def service(server) -> TrussRealtimeTTSService:
    return TrussRealtimeTTSService(url=ws_url(server), sample_rate=RATE)


def websocket_utterances(server, outcome: str) -> float:
    body = urllib.request.urlopen(f"{server.base_url}/metrics", timeout=10).read().decode()
    pattern = rf'^tts_utterances_total\{{[^}}]*outcome="{outcome}"[^}}]*transport="websocket"[^}}]*\}} (\S+)$'
    return sum(float(m) for m in re.findall(pattern, body, re.M))


async def test_a_turn_speaks_as_the_llm_writes_with_words_in_order(piper_realtime):
    tts = service(piper_realtime)
    arrivals = Arrivals(tts)
    down, _ = await run_test(
        tts, frames_to_send=[*llm_turn(TEXT, end_after_s=2.0), SleepFrame(4.0)], observers=[arrivals]
    )
    started = next(t for t, f in arrivals.frames if isinstance(f, TTSStartedFrame))
    first_audio = next(t for t, f in arrivals.frames if isinstance(f, TTSAudioRawFrame))
    assert first_audio - started < 1.5  # spoken while the LLM's turn was still open
    kinds = [type(f) for f in down if isinstance(f, TTSStartedFrame | TTSStoppedFrame)]
    assert kinds == [TTSStartedFrame, TTSStoppedFrame]
    assert 2.5 < audio_seconds(down) < 8.0
    assert spoken_words(down) == TEXT.split()  # the text as sent, word by word
    stamps = [f.pts for f in down if isinstance(f, TTSTextFrame)]
    assert all(a < b for a, b in zip(stamps, stamps[1:], strict=False)), stamps  # played in order


async def test_an_interruption_stops_the_servers_synthesis_and_the_next_turn_speaks(piper_realtime):
    tts = service(piper_realtime)
    arrivals = Arrivals(tts)
    cancelled = websocket_utterances(piper_realtime, "cancelled")
    long_turn = llm_turn(" ".join([SENTENCE] * 40))  # minutes of speech
    frames = [
        *long_turn,
        SleepFrame(1.0),
        InterruptionFrame(),
        SleepFrame(2.0),
        *llm_turn(TEXT),
        SleepFrame(4.0),
    ]
    down, _ = await run_test(tts, frames_to_send=frames, observers=[arrivals])
    assert websocket_utterances(piper_realtime, "cancelled") > cancelled  # stopped mid-sentence
    # Audio of the interrupted turn stopped; the next turn spoke all its words.
    first_turn_audio = audio_seconds(
        down[: down.index(next(f for f in down if isinstance(f, InterruptionFrame)))]
    )
    assert 0 < first_turn_audio < 60
    assert spoken_words(down)[-len(TEXT.split()) :] == TEXT.split()
    assert isinstance(
        [f for f in down if isinstance(f, TTSStartedFrame | TTSStoppedFrame)][-1], TTSStoppedFrame
    )


async def test_a_session_the_server_closed_reconnects_for_the_next_turn(piper_realtime_quick_idle):
    """The server closes the idle session (after 2 s here); the next turn speaks in full."""
    tts = service(piper_realtime_quick_idle)
    frames = [SleepFrame(4.0), *llm_turn(TEXT), SleepFrame(4.0)]
    down, _ = await run_test(tts, frames_to_send=frames)
    assert spoken_words(down) == TEXT.split()
    assert 2.5 < audio_seconds(down) < 8.0
