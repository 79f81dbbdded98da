"""Error, retry, timeout and interruption behaviour against a fault-injecting server."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from conftest import free_port, pcm_for
from helpers import FAST, collect, feed

from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    APITimeoutError,
)
from livekit.plugins import custom_tts

TEXT = "The quick brown fox jumps over the lazy dog."


def make_tts(url: str, session, **kwargs) -> custom_tts.TTS:
    return custom_tts.TTS(api_url=url, http_session=session, **kwargs)


def errors_seen(tts: custom_tts.TTS) -> list:
    seen: list = []
    tts.on("error", seen.append)
    return seen


# --- what goes over the wire -----------------------------------------------------------


async def test_audio_is_emitted_byte_exact_at_the_declared_format(fault_server, http_session):
    # 6 chunks of 4801 bytes: every chunk boundary but one splits a 16-bit sample.
    tts = make_tts(f"{fault_server.url}/audio?chunks=6&chunk_bytes=4801", http_session)
    result = await collect(tts.synthesize(TEXT, conn_options=FAST))
    assert result.error is None
    assert result.pcm == pcm_for(TEXT, 6 * 4801) == bytes(fault_server.records[0].sent)
    assert {(ev.frame.sample_rate, ev.frame.num_channels) for ev in result.events} == {(24000, 1)}
    assert [ev.is_final for ev in result.events].count(True) == 1 and result.events[-1].is_final


async def test_request_carries_options_and_api_key(fault_server, http_session):
    tts = make_tts(
        f"{fault_server.url}/audio",
        http_session,
        api_key="k-123",
        options=custom_tts.TTSOptions(
            voice_description="A friendly, conversational voice.",
            sample_rate=16000,
            extra={"speed": 1.5},
        ),
    )
    assert (await collect(tts.synthesize(TEXT, conn_options=FAST))).error is None
    rec = fault_server.records[0]
    assert rec.body == {
        "text": TEXT,
        "language": "en",
        "description": "A friendly, conversational voice.",
        "format": "pcm",
        "sample_rate": 16000,
        "speed": 1.5,
    }
    assert rec.headers["Authorization"] == "Api-Key k-123"
    assert rec.headers["Content-Type"] == "application/json"

    stream = tts.stream(conn_options=FAST)  # created before the update: keeps its options
    tts.update_options(voice="amy", extra={})
    assert (await collect(tts.synthesize(TEXT, conn_options=FAST))).error is None
    assert fault_server.records[1].body["voice"] == "amy"
    assert "speed" not in fault_server.records[1].body
    await feed(stream, TEXT)
    assert (await collect(stream)).error is None
    assert "voice" not in fault_server.records[2].body
    assert fault_server.records[2].body["speed"] == 1.5


@pytest.mark.parametrize(
    "query, message, played",
    [
        ("chunks=1&chunk_bytes=4801", "16-bit sample", None),  # odd-length body: an error
        ("rate=16000", "16000 Hz", False),  # wrong sample rate: refused, not played
        ("ctype=application/json", "application/json", False),  # a 200 that is not audio
    ],
    ids=["odd-length", "wrong-rate", "not-audio"],
)
async def test_bad_audio_answer_is_a_final_error(query, message, played, fault_server, http_session):
    tts = make_tts(f"{fault_server.url}/audio?{query}", http_session)
    result = await collect(tts.synthesize(TEXT, conn_options=FAST))
    assert isinstance(result.error, APIError) and not result.error.retryable
    assert message in result.error.message
    if played is not None:
        assert bool(result.events) == played
    assert len(fault_server.records) == 1  # not retried


# --- status codes and retries ----------------------------------------------------------


@pytest.mark.parametrize("code", [400, 401, 422])
async def test_client_errors_carry_the_message_and_are_not_retried(code, fault_server, http_session):
    tts = make_tts(f"{fault_server.url}/status/{code}", http_session)
    errors = errors_seen(tts)
    result = await collect(tts.synthesize(TEXT, conn_options=FAST))
    assert isinstance(result.error, APIStatusError)
    assert result.error.status_code == code
    assert result.error.message == f"injected {code}"
    assert result.error.body["error"] == f"injected {code}"
    assert result.error.retryable is False
    assert len(fault_server.records) == 1
    assert [e.recoverable for e in errors] == [False]


@pytest.mark.parametrize("code", [500, 503])
async def test_server_errors_are_retried_per_conn_options(code, fault_server, http_session):
    tts = make_tts(f"{fault_server.url}/status/{code}", http_session)
    errors = errors_seen(tts)
    conn = APIConnectOptions(max_retry=3, retry_interval=0.05, timeout=5)
    result = await collect(tts.synthesize(TEXT, conn_options=conn))
    assert isinstance(result.error, APIStatusError) and result.error.status_code == code
    assert result.error.message == f"injected {code}"
    assert len(fault_server.records) == 4  # the first attempt + max_retry
    assert [e.recoverable for e in errors] == [True, True, True, False]


async def test_no_retry_when_max_retry_is_zero(fault_server, http_session):
    tts = make_tts(f"{fault_server.url}/status/503", http_session)
    conn = APIConnectOptions(max_retry=0, retry_interval=0.05, timeout=5)
    result = await collect(tts.synthesize(TEXT, conn_options=conn))
    assert isinstance(result.error, APIStatusError) and len(fault_server.records) == 1


async def test_transient_503_recovers_with_full_audio(fault_server, http_session):
    tts = make_tts(f"{fault_server.url}/flaky/503/2?chunks=4&chunk_bytes=4800", http_session)
    result = await collect(tts.synthesize(TEXT, conn_options=FAST))
    assert result.error is None
    assert result.pcm == pcm_for(TEXT, 4 * 4800)
    assert len(fault_server.records) == 3


async def test_connection_refused_is_retried_then_a_connection_error(http_session):
    tts = make_tts(f"http://127.0.0.1:{free_port()}", http_session)
    errors = errors_seen(tts)
    result = await collect(tts.synthesize(TEXT, conn_options=FAST))
    assert type(result.error) is APIConnectionError
    assert [e.recoverable for e in errors] == [True, True, False]


async def test_unexpected_client_failure_is_still_an_api_error(fault_server):
    import aiohttp

    session = aiohttp.ClientSession()
    await session.close()  # a closed session raises RuntimeError inside aiohttp
    tts = make_tts(f"{fault_server.url}/audio", session)
    for stream in (tts.synthesize(TEXT, conn_options=FAST), tts.stream(conn_options=FAST)):
        if hasattr(stream, "push_text"):
            await feed(stream, TEXT)
        result = await collect(stream)
        assert isinstance(result.error, APIConnectionError) and not result.error.retryable
        assert "RuntimeError" in result.error.message


# --- timeouts --------------------------------------------------------------------------


async def test_slow_server_times_out_and_is_retried(fault_server, http_session):
    tts = make_tts(f"{fault_server.url}/audio?first_byte_ms=2000", http_session)
    conn = APIConnectOptions(max_retry=1, retry_interval=0.05, timeout=0.3)
    started = time.monotonic()
    result = await collect(tts.synthesize(TEXT, conn_options=conn))
    assert isinstance(result.error, APITimeoutError)
    assert len(fault_server.records) == 2
    assert time.monotonic() - started < 1.5  # two 0.3 s waits, not two 2 s ones


async def test_slow_first_byte_within_timeout_is_fine_and_total_is_not_capped(fault_server, http_session):
    # First byte after 0.4 s, then 0.3 s gaps: 1.6 s in all, with a 0.8 s timeout.
    url = f"{fault_server.url}/audio?first_byte_ms=400&gap_ms=300&chunks=5&chunk_bytes=4800"
    tts = make_tts(url, http_session)
    conn = APIConnectOptions(max_retry=0, timeout=0.8)
    started = time.monotonic()
    result = await collect(tts.synthesize(TEXT, conn_options=conn))
    assert result.error is None
    assert time.monotonic() - started > 1.5
    expected = pcm_for(TEXT, 5 * 4800)
    assert result.pcm[: len(expected)] == expected
    # Audio slower than real time makes the framework's emitter release its held-back
    # tail early; it then ends the segment with its 10 ms silent marker frame.
    assert set(result.pcm[len(expected) :]) <= {0} and len(result.pcm) - len(expected) <= 480


async def test_stall_after_audio_started_times_out_without_retry(fault_server, http_session):
    tts = make_tts(f"{fault_server.url}/audio?stall_after=3&chunk_bytes=9600", http_session)
    conn = APIConnectOptions(max_retry=3, retry_interval=0.05, timeout=0.3)
    result = await collect(tts.synthesize(TEXT, conn_options=conn))
    assert isinstance(result.error, APITimeoutError)
    assert result.error.retryable is False
    assert len(fault_server.records) == 1
    assert result.events, "the audio before the stall was delivered"


# --- a stream cut short ----------------------------------------------------------------


async def test_cut_stream_after_audio_is_an_error_and_not_retried(fault_server, http_session):
    tts = make_tts(f"{fault_server.url}/audio?chunks=10&cut_after=4&chunk_bytes=9600", http_session)
    errors = errors_seen(tts)
    result = await collect(tts.synthesize(TEXT, conn_options=FAST))
    assert isinstance(result.error, APIConnectionError)
    assert "cut short" in result.error.message
    assert result.error.retryable is False
    assert len(fault_server.records) == 1, "retrying would replay audio already heard"
    assert [e.recoverable for e in errors] == [False]
    sent = bytes(fault_server.records[0].sent)
    assert len(sent) == 4 * 9600
    assert result.events and sent.startswith(result.pcm)  # a prefix, never silently "done"


async def test_body_cut_before_any_audio_is_retried(fault_server, http_session):
    """A 200 whose body ends before its first byte played nothing: asked again."""
    tts = make_tts(f"{fault_server.url}/cut_first/1?chunks=4&chunk_bytes=4800", http_session)
    errors = errors_seen(tts)
    result = await collect(tts.synthesize(TEXT, conn_options=FAST))
    assert result.error is None
    assert result.pcm == pcm_for(TEXT, 4 * 4800)
    assert len(fault_server.records) == 2
    assert fault_server.records[0].sent == b""  # the first answer really carried no audio
    assert [e.recoverable for e in errors] == [True]


async def test_body_cut_before_any_audio_is_retried_per_sentence(fault_server, http_session):
    result = await stream_sentences(
        fault_server, http_session, "/cut_first/1?chunks=2&chunk_bytes=4800", SENTENCES[:2]
    )
    assert result.error is None
    texts = [r.body["text"] for r in fault_server.records]
    cut = texts[0]  # the first request to arrive was cut; only it was asked again
    assert sorted(texts) == sorted([*SENTENCES[:2], cut]) and texts.count(cut) == 2
    assert result.pcm == b"".join(pcm_for(s, 2 * 4800) for s in SENTENCES[:2])


async def test_cut_stream_in_stream_mode_is_an_error(fault_server, http_session):
    tts = make_tts(f"{fault_server.url}/audio?chunks=10&cut_after=2&chunk_bytes=9600", http_session)
    stream = tts.stream(conn_options=FAST)
    await feed(stream, "This is the first sentence here. And this is the second one.")
    result = await collect(stream)
    assert isinstance(result.error, APIConnectionError) and not result.error.retryable
    texts = [r.body["text"] for r in fault_server.records]
    assert texts[0] == "This is the first sentence here."
    assert len(texts) == len(set(texts))  # nothing requested twice


# --- stream(): pipelining, segments, per-sentence retries ------------------------------

SENTENCES = [
    "This is the first sentence of the reply.",
    "Here comes a second sentence, a bit longer.",
    "A third one follows right after that one.",
    "And the fourth sentence closes the answer.",
]


async def stream_sentences(fault_server, http_session, route: str, sentences: list[str], **options: Any):
    """`sentences` fed to stream() as one text, each one a request to `route`."""
    tts = make_tts(f"{fault_server.url}{route}", http_session, **options)
    stream = tts.stream(conn_options=FAST)
    await feed(stream, " ".join(sentences))
    return await collect(stream)


async def test_stream_pipelines_sentences_bounded_and_in_order(fault_server, http_session):
    # Each sentence takes 0.5 s to arrive: sequential requests would never overlap.
    result = await stream_sentences(
        fault_server,
        http_session,
        "/audio?chunks=5&gap_ms=100&chunk_bytes=9600",
        SENTENCES,
        max_inflight_requests=2,
    )
    assert result.error is None

    recs = fault_server.records
    assert [r.body["text"] for r in recs] == SENTENCES
    assert recs[1].started < recs[0].ended, "the next sentence was requested while one played"
    # At most max_inflight_requests requests open at any moment.
    edges = sorted([(r.started, 1) for r in recs] + [(r.ended, -1) for r in recs])
    open_now = peak = 0
    for _, delta in edges:
        open_now += delta
        peak = max(peak, open_now)
    assert peak == 2
    # Audio in text order, byte for byte, in one segment with one final frame.
    assert result.pcm == b"".join(pcm_for(s, 5 * 9600) for s in SENTENCES)
    assert len({ev.segment_id for ev in result.events}) == 1
    assert [ev.is_final for ev in result.events].count(True) == 1 and result.events[-1].is_final


async def test_one_inflight_request_means_strictly_sequential(fault_server, http_session):
    result = await stream_sentences(
        fault_server,
        http_session,
        "/audio?chunks=3&gap_ms=50&chunk_bytes=4800",
        SENTENCES[:3],
        max_inflight_requests=1,
    )
    assert result.error is None
    recs = fault_server.records
    assert all(b.started >= a.ended for a, b in zip(recs, recs[1:], strict=False))


async def test_flush_ends_the_segment_without_ending_input(fault_server, http_session):
    tts = make_tts(f"{fault_server.url}/audio?chunks=2&chunk_bytes=4800", http_session)
    stream = tts.stream(conn_options=FAST)
    for token in ["Hello", " there", ", how", " are", " you"]:  # no sentence end yet
        stream.push_text(token)
    stream.flush()
    events = []
    async for ev in stream:
        events.append(ev)
        if ev.is_final:
            break
    assert events[-1].is_final
    assert [r.body["text"] for r in fault_server.records] == ["Hello there, how are you"]
    stream.end_input()
    rest = await collect(stream)
    assert rest.error is None and rest.events == []
    assert len(fault_server.records) == 1


async def test_stream_retries_a_failed_sentence_alone(fault_server, http_session):
    result = await stream_sentences(
        fault_server, http_session, "/flaky/503/1?chunks=2&chunk_bytes=4800", SENTENCES[:2]
    )
    assert result.error is None
    assert len(fault_server.records) == 3  # sentence 1 twice, sentence 2 once
    assert result.pcm == b"".join(pcm_for(s, 2 * 4800) for s in SENTENCES[:2])


async def test_stream_client_error_is_not_retried(fault_server, http_session):
    result = await stream_sentences(fault_server, http_session, "/status/422", SENTENCES[:1])
    assert isinstance(result.error, APIStatusError) and result.error.status_code == 422
    assert result.error.message == "injected 422"
    assert len(fault_server.records) == 1


async def test_stream_gives_up_after_retries_without_replaying(fault_server, http_session):
    result = await stream_sentences(fault_server, http_session, "/status/500", SENTENCES[:1])
    assert isinstance(result.error, APIStatusError) and result.error.status_code == 500
    assert result.error.retryable is False  # our retries are spent; no framework replay
    assert len(fault_server.records) == 1 + FAST.max_retry


# --- barge-in --------------------------------------------------------------------------


async def _wait_disconnect(rec, timeout: float = 2.0) -> float:
    deadline = time.monotonic() + timeout
    while rec.disconnected_at is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert rec.disconnected_at is not None, "the server never saw the client leave"
    return rec.disconnected_at


async def test_closing_a_chunked_stream_closes_the_request(fault_server, http_session):
    tts = make_tts(f"{fault_server.url}/audio?chunks=400&gap_ms=25&chunk_bytes=4800", http_session)
    stream = tts.synthesize(TEXT, conn_options=FAST)
    await stream.__anext__()
    closed_at = time.monotonic()
    await stream.aclose()
    rec = fault_server.records[0]
    assert await _wait_disconnect(rec) - closed_at < 1.0
    assert len(rec.sent) < 400 * 4800
    assert len(fault_server.records) == 1


async def test_closing_a_synthesize_stream_closes_every_request(fault_server, http_session):
    tts = make_tts(f"{fault_server.url}/audio?chunks=400&gap_ms=25&chunk_bytes=4800", http_session)
    stream = tts.stream(conn_options=FAST)
    await feed(stream, " ".join(SENTENCES[:2]))
    await stream.__anext__()
    while len(fault_server.records) < 2:  # the second sentence is being fetched ahead
        await asyncio.sleep(0.01)
    closed_at = time.monotonic()
    await stream.aclose()
    for rec in fault_server.records:
        assert await _wait_disconnect(rec) - closed_at < 1.0


async def test_tts_aclose_interrupts_open_streams(fault_server, http_session):
    tts = make_tts(f"{fault_server.url}/audio?chunks=400&gap_ms=25&chunk_bytes=4800", http_session)
    stream = tts.stream(conn_options=FAST)
    await feed(stream, SENTENCES[0])
    await stream.__anext__()
    await tts.aclose()
    await _wait_disconnect(fault_server.records[0])


# --- WebSocket mode ------------------------------------------------------------------


def fault_ws_url(fault_server, behaviour: str) -> str:
    return fault_server.url.replace("http://", "ws://") + f"/ws/{behaviour}"


async def test_ws_socket_closed_before_audio_is_retried_then_a_connection_error(fault_server, http_session):
    tts = make_tts(fault_ws_url(fault_server, "close"), http_session, api_key="k-ws")
    errors = errors_seen(tts)
    stream = tts.stream(conn_options=FAST)
    await feed(stream, TEXT)
    result = await collect(stream)
    assert type(result.error) is APIConnectionError
    assert "closed the WebSocket before any audio" in result.error.message
    assert [e.recoverable for e in errors] == [True, True, False]
    assert len(fault_server.records) == 1 + FAST.max_retry  # a fresh socket each time
    first = fault_server.records[0]
    assert first.headers["Authorization"] == "Api-Key k-ws"  # as over HTTP
    kinds = [m["type"] for m in first.body]
    assert kinds[0] == "session.config" and kinds[-1] == "input.done"
    assert "".join(m["text"] for m in first.body if m["type"] == "input.text") == TEXT


async def test_ws_retry_before_audio_replays_every_word_once(fault_server, http_session):
    """The socket is cut after the first words went out, before any audio: the retry
    sends the whole text again (the words the first socket took included), once."""
    tts = make_tts(fault_ws_url(fault_server, "cut_once"), http_session)
    stream = tts.stream(conn_options=FAST)
    await feed(stream, TEXT)
    result = await collect(stream)
    assert result.error is None and result.pcm == pcm_for("ws", 4800)
    first, retry = fault_server.records
    assert [m["type"] for m in first.body].count("input.text") == 1  # cut at its first word
    sent = "".join(m["text"] for m in retry.body if m["type"] == "input.text")
    assert sent == TEXT


async def test_ws_socket_closed_after_audio_is_final(fault_server, http_session):
    tts = make_tts(fault_ws_url(fault_server, "close_after_audio"), http_session)
    result = await collect(tts.synthesize(TEXT, conn_options=FAST))
    assert isinstance(result.error, APIConnectionError) and not result.error.retryable
    assert "after 9600 bytes" in result.error.message
    assert len(fault_server.records) == 1, "retrying would replay audio already heard"
    assert result.events and pcm_for("ws", 9600).startswith(result.pcm)


async def test_ws_error_event_is_a_status_error_with_its_message(fault_server, http_session):
    tts = make_tts(fault_ws_url(fault_server, "error"), http_session)
    for stream in (tts.synthesize(TEXT, conn_options=FAST), tts.stream(conn_options=FAST)):
        if isinstance(stream, custom_tts.SynthesizeStream):
            await feed(stream, TEXT)
        result = await collect(stream)
        assert isinstance(result.error, APIStatusError)
        assert result.error.message == "voice: unknown voice 'nobody'"
        assert result.error.body["field"] == "voice"
        assert result.error.retryable is False and not result.events
    assert len(fault_server.records) == 2  # once each, not retried


# --- secrets ---------------------------------------------------------------------------

SECRET = "sk-live-TOPSECRET-9f8e7d"


def _texts(err: BaseException) -> list[str]:
    out, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        out += [str(err), repr(err), str(getattr(err, "body", ""))]
        err = err.__cause__ or err.__context__
    return out


@pytest.mark.parametrize(
    "route, conn_timeout",
    [
        ("/status/401", 5.0),
        ("/status/500", 5.0),
        ("/audio?first_byte_ms=1000", 0.2),
        ("/audio?chunks=10&cut_after=2&chunk_bytes=9600", 5.0),
        ("/audio?rate=8000", 5.0),
        (None, 5.0),  # connection refused
        ("ws:close", 5.0),
        ("ws:error", 5.0),
        ("ws:", 5.0),  # connection refused
    ],
)
async def test_api_key_never_appears_in_errors_or_logs(
    route, conn_timeout, fault_server, http_session, caplog
):
    caplog.set_level(logging.DEBUG)
    if route == "ws:":
        url = f"ws://127.0.0.1:{free_port()}"
    elif route and route.startswith("ws:"):
        url = fault_ws_url(fault_server, route[3:])
    else:
        url = f"{fault_server.url}{route}" if route else f"http://127.0.0.1:{free_port()}"
    tts = make_tts(url, http_session, api_key=SECRET)
    conn = APIConnectOptions(max_retry=1, retry_interval=0.01, timeout=conn_timeout)
    result = await collect(tts.synthesize(TEXT, conn_options=conn))
    stream = tts.stream(conn_options=conn)
    await feed(stream, TEXT)
    streamed = await collect(stream)

    assert result.error is not None and streamed.error is not None
    for err in (result.error, streamed.error):
        for text in _texts(err):
            assert SECRET not in text
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert caplog.records, "nothing was logged: the check would be vacuous"
    assert SECRET not in logged
    if route and route != "ws:":  # the key was really sent, so there was something to leak
        assert fault_server.records[0].headers["Authorization"] == f"Api-Key {SECRET}"
