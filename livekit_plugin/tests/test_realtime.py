"""custom_tts over a WebSocket, against the real truss server serving piper-realtime
(started once per session): text streamed in as an LLM writes it, audio and word
timings out, one socket reused across turns, barge-in."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import ws_url
from helpers import FAST, Result, collect, make_collecting_output

from livekit.agents import APIConnectOptions, APIStatusError
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT, TimedString
from livekit.plugins import custom_tts
from livekit.plugins.custom_tts import websocket

PARAGRAPH = (
    "Sure, I can help with that today. The weather is sunny with a light breeze from the west. "
    "You might want to bring sunglasses if you go outside later."
)
SENTENCE = "This is a long passage that keeps the synthesizer busy for a while."
LONG_TEXT = " ".join([SENTENCE] * 30)


def make_tts(server, http_session, **kwargs) -> custom_tts.TTS:
    return custom_tts.TTS(api_url=ws_url(server), http_session=http_session, **kwargs)


async def feed_words(stream, text: str, every: float) -> float:
    """Push `text` a word at a time, as an LLM streams it; when the last word went."""
    for i, word in enumerate(text.split(" ")):
        stream.push_text(word if i == 0 else " " + word)
        await asyncio.sleep(every)
    stream.end_input()
    return time.monotonic()


def timed_words(result: Result) -> list[TimedString]:
    return [w for ev in result.events for w in ev.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT, [])]


def assert_words_timed_inside_the_audio(words: list[TimedString], text: str, duration: float) -> None:
    assert [w.strip() for w in words] == text.split()  # one per word, as sent
    starts = [w.start_time for w in words]
    ends = [w.end_time for w in words]
    assert all(a < b for a, b in zip(starts, starts[1:], strict=False)), starts  # increasing
    assert all(s < e for s, e in zip(starts, ends, strict=True))
    assert all(e <= b + 1e-6 for e, b in zip(ends, starts[1:], strict=False))  # no overlap
    assert starts[0] >= 0 and ends[-1] <= duration + 0.01, (ends[-1], duration)
    assert ends[-1] > 0.7 * duration  # spread over the audio, not bunched at its start


async def test_audio_arrives_while_text_is_pushed_with_a_timing_per_word(piper_realtime, http_session):
    tts = make_tts(piper_realtime, http_session, word_timestamps=True)
    assert tts.capabilities.aligned_transcript and tts.capabilities.streaming
    stream = tts.stream(conn_options=FAST)
    feeding = asyncio.create_task(feed_words(stream, PARAGRAPH, every=0.04))
    first = await stream.__anext__()
    first_audio_at = time.monotonic()
    rest = await collect(stream)
    last_word_at = await feeding
    await tts.aclose()

    assert rest.error is None
    assert first_audio_at < last_word_at, "no audio until the whole text was in"
    result = Result(events=[first, *rest.events])
    assert {(ev.frame.sample_rate, ev.frame.num_channels) for ev in result.events} == {(24000, 1)}
    assert len({ev.segment_id for ev in result.events}) == 1 and result.events[-1].is_final
    assert 4.0 < result.duration < 15.0  # three sentences of speech
    assert_words_timed_inside_the_audio(timed_words(result), PARAGRAPH, result.duration)


async def test_synthesize_is_one_turn_with_word_timings(piper_realtime, http_session):
    tts = make_tts(piper_realtime, http_session, word_timestamps=True)
    result = await collect(tts.synthesize(PARAGRAPH, conn_options=FAST))
    await tts.aclose()
    assert result.error is None
    assert result.events[-1].is_final
    assert_words_timed_inside_the_audio(timed_words(result), PARAGRAPH, result.duration)


async def test_without_word_timestamps_no_timings_are_pushed(piper_realtime, http_session):
    tts = make_tts(piper_realtime, http_session)
    assert not tts.capabilities.aligned_transcript
    result = await collect(tts.synthesize("Just the audio, please.", conn_options=FAST))
    await tts.aclose()
    assert result.error is None and result.duration > 0.5
    assert timed_words(result) == []


async def speak(tts: custom_tts.TTS, text: str) -> Result:
    stream = tts.stream(conn_options=FAST)
    feeding = asyncio.create_task(feed_words(stream, text, every=0.005))
    result = await collect(stream)
    await feeding
    return result


async def test_turns_reuse_one_socket_and_a_changed_config_is_sent_again(piper_realtime, http_session):
    tts = make_tts(piper_realtime, http_session)
    metrics: list = []
    tts.on("metrics_collected", metrics.append)
    first = await speak(tts, "This is the first turn of the conversation.")
    socket = tts._pool._parked.ws
    second = await speak(tts, "This is the first turn of the conversation.")
    assert tts._pool._parked.ws is socket
    tts.update_options(extra={"speed": 2.0})  # the next turn re-configures the same socket
    faster = await speak(tts, "This is the first turn of the conversation.")
    assert tts._pool._parked.ws is socket
    await tts.aclose()

    assert first.error is None and second.error is None and faster.error is None
    assert [m.connection_reused for m in metrics] == [False, True, True]
    assert faster.duration < 0.75 * second.duration


async def test_a_parked_socket_is_kept_alive(piper_realtime, http_session, monkeypatch):
    monkeypatch.setattr(websocket, "KEEPALIVE_INTERVAL_S", 0.2)
    tts = make_tts(piper_realtime, http_session)
    assert (await speak(tts, "Hello there.")).error is None
    parked = tts._pool._parked
    idle_since = parked.idle_since
    await asyncio.sleep(1.0)  # several keepalive round trips
    assert tts._pool._parked is parked and parked.idle_since > idle_since
    metrics: list = []
    tts.on("metrics_collected", metrics.append)
    assert (await speak(tts, "Still here.")).error is None
    await tts.aclose()
    assert [m.connection_reused for m in metrics] == [True]


async def test_barge_in_stops_piper_and_the_next_stream_works(piper_realtime, http_session):
    tts = make_tts(piper_realtime, http_session)
    stream = tts.stream(conn_options=APIConnectOptions(max_retry=0))
    stream.push_text(LONG_TEXT)
    stream.end_input()
    await stream.__anext__()
    busy_from = piper_realtime.cpu_seconds()
    await asyncio.sleep(0.5)
    assert piper_realtime.cpu_seconds() - busy_from > 0.2, "piper was not generating"

    await stream.aclose()  # mid-turn: the socket is closed, not parked
    assert tts._pool._parked is None
    await asyncio.sleep(1.0)
    idle_from = piper_realtime.cpu_seconds()
    await asyncio.sleep(1.0)
    idle = piper_realtime.cpu_seconds() - idle_from
    assert idle < 0.1, f"piper kept generating after barge-in ({idle:.2f} s CPU in 1 s)"

    metrics: list = []
    tts.on("metrics_collected", metrics.append)
    after = await speak(tts, "Are you still there?")
    await tts.aclose()
    assert after.error is None and after.duration > 0.5
    assert [m.connection_reused for m in metrics] == [False]


@pytest.mark.parametrize("how", ["stream", "synthesize"])
async def test_an_unknown_voice_is_an_error_naming_it(piper_realtime, http_session, how):
    tts = make_tts(piper_realtime, http_session, options=custom_tts.TTSOptions(voice="nobody"))
    errors: list = []
    tts.on("error", errors.append)
    if how == "stream":
        result = await speak(tts, "Who is speaking?")
    else:
        result = await collect(tts.synthesize("Who is speaking?", conn_options=FAST))
    await tts.aclose()
    assert isinstance(result.error, APIStatusError)
    assert "nobody" in result.error.message and "voice" in result.error.message
    assert not result.events
    assert [e.recoverable for e in errors] == [False]  # not retried


async def test_agent_session_say_plays_piper_realtime_audio(piper_realtime, http_session):
    from livekit.agents import Agent, AgentSession

    tts = make_tts(piper_realtime, http_session, word_timestamps=True)
    errors: list = []
    tts.on("error", errors.append)
    output = make_collecting_output()
    session = AgentSession(tts=tts, use_tts_aligned_transcript=True)
    session.output.audio = output
    await session.start(Agent(instructions="You are a test agent."))
    try:
        handle = session.say(PARAGRAPH)
        await asyncio.wait_for(handle.wait_for_playout(), timeout=60)
    finally:
        await session.aclose()
        await tts.aclose()

    assert not errors, errors
    assert {(f.sample_rate, f.num_channels) for f in output.frames} == {(24000, 1)}
    heard = sum(f.duration for f in output.frames)
    assert 4.0 < heard < 15.0  # the whole paragraph, once
    words = [w for f in output.frames for w in f.userdata.get(USERDATA_TIMED_TRANSCRIPT, [])]
    assert_words_timed_inside_the_audio(words, PARAGRAPH, heard + 0.2)
