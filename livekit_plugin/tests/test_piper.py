"""Against the real truss server serving piper-streaming (started once per session).

piper adds random duration noise, so two syntheses of one text differ. Exactness is
proved within one response: the fault server's /proxy relays piper's bytes to the
plugin and records them, and the frames the plugin emitted must equal them. A
direct request for the same text bounds the length (within piper's noise).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from helpers import FAST, collect, feed, make_collecting_output

from livekit.agents import APIConnectOptions, APIStatusError
from livekit.plugins import custom_tts

TEXT = "Hello from the LiveKit plugin. This sentence is synthesized by piper."
PARAGRAPH = (
    "Sure, I can help with that. The weather today is sunny with a light breeze. "
    "You might want to bring sunglasses if you go outside. Is there anything else?"
)
SENTENCE = "This is a long passage that keeps the synthesizer busy for a while."
MEDIUM_TEXT = " ".join([SENTENCE] * 8)
LONG_TEXT = " ".join([SENTENCE] * 40)


async def direct_pcm(session: aiohttp.ClientSession, url: str, text: str, rate: int) -> bytes:
    body = {"text": text, "format": "pcm", "sample_rate": rate, "language": "en"}
    async with session.post(url, json=body) as resp:
        assert resp.status == 200
        return await resp.read()


def assert_close_length(got: int, expected: int, tolerance: float = 0.2) -> None:
    # piper's duration noise changes lengths by a few percent between runs
    assert abs(got - expected) <= tolerance * expected, (got, expected)


@pytest.mark.parametrize("rate", [24000, 16000])
async def test_synthesize_frames_carry_the_declared_format(piper, http_session, rate):
    tts = custom_tts.TTS(
        api_url=piper.base_url,
        options=custom_tts.TTSOptions(sample_rate=rate),
        http_session=http_session,
    )
    result = await collect(tts.synthesize(TEXT, conn_options=FAST))
    assert result.error is None
    assert {(ev.frame.sample_rate, ev.frame.num_channels) for ev in result.events} == {(rate, 1)}
    assert result.events[-1].is_final
    assert len({ev.request_id for ev in result.events}) == 1
    expected = await direct_pcm(http_session, piper.predict_url, TEXT, rate)
    assert_close_length(len(result.pcm), len(expected))
    assert 2.0 < result.duration < 10.0  # two sentences of speech, not noise or silence


@pytest.mark.parametrize(("fmt", "rate"), [("opus", 24000), ("mp3", 16000)])
async def test_a_compressed_stream_is_decoded_to_frames(piper, http_session, fmt, rate):
    tts = custom_tts.TTS(
        api_url=piper.base_url,
        options=custom_tts.TTSOptions(sample_rate=rate, audio_format=fmt),
        http_session=http_session,
    )
    result = await collect(tts.synthesize(TEXT, conn_options=FAST))
    assert result.error is None
    assert {(ev.frame.sample_rate, ev.frame.num_channels) for ev in result.events} == {(rate, 1)}
    expected = await direct_pcm(http_session, piper.predict_url, TEXT, rate)
    # the codec's frame and an MP3 decoder's start delay on top of piper's noise
    assert_close_length(len(result.pcm), len(expected), tolerance=0.25)


def test_a_compressed_format_is_http_only():
    with pytest.raises(ValueError, match="audio_format"):
        custom_tts.TTS(api_url="ws://127.0.0.1:1", options=custom_tts.TTSOptions(audio_format="opus"))
    with pytest.raises(ValueError, match="audio_format"):
        custom_tts.TTSOptions(audio_format="ogg")  # type: ignore[arg-type]


async def test_emitted_audio_equals_the_bytes_piper_sent(piper, fault_server, http_session):
    fault_server.upstream = piper.predict_url
    tts = custom_tts.TTS(api_url=f"{fault_server.url}/proxy", http_session=http_session)
    result = await collect(tts.synthesize(TEXT, conn_options=FAST))
    assert result.error is None
    relayed = bytes(fault_server.records[0].sent)
    assert len(relayed) > 24000 * 2  # over a second of audio
    assert result.pcm == relayed


async def test_first_audio_arrives_before_the_body_ends(piper, http_session):
    """PCM is pushed as it arrives: the first frame comes long before the last byte."""
    tts = custom_tts.TTS(api_url=piper.base_url, http_session=http_session)
    started = time.monotonic()
    stream = tts.synthesize(MEDIUM_TEXT, conn_options=FAST)
    first = await stream.__anext__()
    first_at = time.monotonic() - started
    rest = await collect(stream)
    total = time.monotonic() - started
    assert rest.error is None
    assert first.frame.sample_rate == 24000
    assert first_at < total / 4, (first_at, total)


async def test_voice_description_is_refused_by_piper_with_its_message(piper, fault_server, http_session):
    """The seed example's options: piper has no `description` field, so a clear 422."""
    fault_server.upstream = piper.predict_url
    tts = custom_tts.TTS(
        api_url=f"{fault_server.url}/proxy",
        options=custom_tts.TTSOptions(
            voice_description="A friendly, conversational voice.", sample_rate=24000
        ),
        http_session=http_session,
    )
    result = await collect(tts.synthesize(TEXT, conn_options=FAST))
    assert isinstance(result.error, APIStatusError)
    assert result.error.status_code == 422
    assert result.error.message == "description: unknown field"
    assert result.error.body["field"] == "description"
    assert result.error.retryable is False
    assert len(fault_server.records) == 1


async def test_unknown_voice_is_a_422_naming_the_voice(piper, http_session):
    tts = custom_tts.TTS(
        api_url=piper.base_url,
        options=custom_tts.TTSOptions(voice="nobody"),
        http_session=http_session,
    )
    result = await collect(tts.synthesize(TEXT, conn_options=FAST))
    assert isinstance(result.error, APIStatusError) and result.error.status_code == 422
    assert "nobody" in result.error.message and "voice" in result.error.message


async def test_extra_model_field_reaches_piper(piper, http_session):
    async def duration(speed: float) -> float:
        tts = custom_tts.TTS(
            api_url=piper.base_url,
            options=custom_tts.TTSOptions(extra={"speed": speed}),
            http_session=http_session,
        )
        result = await collect(tts.synthesize(TEXT, conn_options=FAST))
        assert result.error is None
        return result.duration

    assert await duration(2.0) < 0.75 * await duration(1.0)


async def test_stream_llm_tokens_sentence_by_sentence(piper, fault_server, http_session):
    fault_server.upstream = piper.predict_url
    tts = custom_tts.TTS(api_url=f"{fault_server.url}/proxy", http_session=http_session)
    stream = tts.stream(conn_options=FAST)
    feeding = asyncio.create_task(feed(stream, PARAGRAPH, delay=0.01))
    result = await collect(stream)
    await feeding
    assert result.error is None

    texts = [r.body["text"] for r in fault_server.records]
    assert len(texts) >= 3, texts  # split into sentences, not sent whole
    assert " ".join(texts) == PARAGRAPH
    # Every byte piper sent, in sentence order, and nothing else.
    assert result.pcm == b"".join(bytes(r.sent) for r in fault_server.records)
    assert {(ev.frame.sample_rate, ev.frame.num_channels) for ev in result.events} == {(24000, 1)}
    assert len({ev.segment_id for ev in result.events}) == 1
    assert [ev.is_final for ev in result.events].count(True) == 1 and result.events[-1].is_final
    whole = await direct_pcm(http_session, piper.predict_url, PARAGRAPH, 24000)
    assert_close_length(len(result.pcm), len(whole), tolerance=0.3)


async def test_barge_in_stops_piper_generating(piper, http_session):
    """Closing the stream drops the request; the server's CPU goes idle within ~1 s."""
    tts = custom_tts.TTS(api_url=piper.base_url, http_session=http_session)
    stream = tts.synthesize(LONG_TEXT, conn_options=APIConnectOptions(max_retry=0))
    await stream.__anext__()
    busy_from = piper.cpu_seconds()
    await asyncio.sleep(0.5)
    busy = piper.cpu_seconds() - busy_from
    assert busy > 0.2, "piper was not generating: the check below would prove nothing"

    await stream.aclose()
    await asyncio.sleep(1.5)  # DISCONNECT_POLL_S plus the chunk in progress
    idle_from = piper.cpu_seconds()
    await asyncio.sleep(1.0)
    idle = piper.cpu_seconds() - idle_from
    assert idle < 0.1, f"piper kept generating after barge-in ({idle:.2f} s CPU in 1 s)"

    # and it serves the next request normally
    assert (await collect(tts.synthesize("Are you still there?", conn_options=FAST))).error is None


async def test_agent_session_say_plays_piper_audio(piper, fault_server, http_session):
    from livekit.agents import Agent, AgentSession

    fault_server.upstream = piper.predict_url
    tts = custom_tts.TTS(api_url=f"{fault_server.url}/proxy", http_session=http_session)
    errors: list = []
    tts.on("error", errors.append)
    output = make_collecting_output()
    session = AgentSession(tts=tts)
    session.output.audio = output
    await session.start(Agent(instructions="You are a test agent."))
    try:
        handle = session.say(PARAGRAPH)
        await asyncio.wait_for(handle.wait_for_playout(), timeout=60)
    finally:
        await session.aclose()

    assert output.frames, "no audio reached the output"
    assert {(f.sample_rate, f.num_channels) for f in output.frames} == {(24000, 1)}
    played = b"".join(bytes(f.data.cast("B")) for f in output.frames)
    relayed = b"".join(bytes(r.sent) for r in fault_server.records)
    assert not errors, errors
    texts = [r.body["text"] for r in fault_server.records]
    assert " ".join(texts) == PARAGRAPH  # every sentence went through the plugin, once
    assert all(r.ended is not None and r.sent for r in fault_server.records)
    assert played == relayed
