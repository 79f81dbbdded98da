"""LiveKit's own Baseten plugin (`livekit-plugins-baseten`, `TTS(model="qwen3-tts")`),
unchanged, against the real piper-realtime Truss served by truss's server: the
realtime WebSocket protocol as that client speaks it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from baseten_turns import speak
from conftest import ServedTruss, serve_piper, ws_url

from livekit.plugins import baseten

VOICE = "en_US-joe-medium"
PARAGRAPH = (
    "Sure, I can help with that. The weather today is sunny with a light breeze, "
    "so you might want to bring sunglasses. Is there anything else?"
)
SENTENCE = "This is a long passage that keeps the synthesizer busy for a while."
LONG_TEXT = " ".join([SENTENCE] * 40)


@pytest.fixture(scope="module")
def realtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTruss]:
    # One synthesis slot: a barged-in session that kept its slot would starve the next.
    yield from serve_piper(
        Path(tmp_path_factory.mktemp("piper-realtime")),
        {"TTS_MAX_STREAMS": "1", "TTS_QUEUE_TIMEOUT_S": "3"},
        truss="piper-realtime",
    )


def baseten_tts(server: ServedTruss, http_session, voice: str = VOICE) -> baseten.TTS:
    return baseten.TTS(
        model="qwen3-tts",
        model_endpoint=ws_url(server),
        voice=voice,
        api_key="unused-locally",  # the plugin requires one; the local server has no key set
        word_timestamps=True,
        http_session=http_session,
    )


def sessions_opened(server: ServedTruss) -> int:
    assert server.log_path is not None
    return server.log_path.read_text(errors="replace").count("realtime session opened")


async def test_audio_arrives_while_text_is_still_pushed_with_one_time_per_word(realtime, http_session):
    tts = baseten_tts(realtime, http_session)
    try:
        turn = await speak(tts, PARAGRAPH, delay=0.04)  # an LLM's pace: a token every 40 ms
    finally:
        await tts.aclose()
    assert turn.error is None
    assert turn.first_audio_at is not None and turn.last_text_at is not None
    assert turn.first_audio_at < turn.last_text_at  # speaking began before the text ended
    assert [w.strip() for w in turn.words] == PARAGRAPH.split()
    starts = [w.start_time for w in turn.words]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)  # strictly increasing
    for word, following in zip(turn.words, turn.words[1:], strict=False):
        assert word.start_time < word.end_time <= following.start_time
    assert 0.0 <= turn.words[0].start_time and turn.words[-1].end_time <= turn.seconds


async def test_two_turns_share_one_socket(realtime, http_session):
    tts = baseten_tts(realtime, http_session)
    before = sessions_opened(realtime)
    try:
        first = await speak(tts, "The first turn says this.")
        second = await speak(tts, "And the second turn says that, on the same socket.")
    finally:
        await tts.aclose()
    assert first.error is None and second.error is None
    assert [str(w) for w in first.words] == ["The ", "first ", "turn ", "says ", "this. "]
    assert len(second.words) == 10 and second.seconds > first.seconds
    assert sessions_opened(realtime) - before == 1


async def test_barge_in_frees_the_only_slot_at_once(realtime, http_session):
    tts = baseten_tts(realtime, http_session)
    try:
        interrupted = await speak(tts, LONG_TEXT, stop_after_audio=True)
        assert interrupted.error is None and interrupted.samples > 0
        # 40 sentences would hold the only slot for seconds; cut, it is free for the next turn
        # well within the 3 s queue timeout (else that turn's unit is refused as busy).
        started = time.monotonic()
        after = await speak(tts, "Right after the interruption.")
        waited = time.monotonic() - started
    finally:
        await tts.aclose()
    assert after.error is None, after.error
    assert after.seconds > 0.5 and waited < 3.0
    assert realtime.log_path is not None
    assert "cancelled" in realtime.log_path.read_text(errors="replace")


async def test_an_unknown_voice_is_an_error_naming_it(realtime, http_session):
    tts = baseten_tts(realtime, http_session, voice="bob")
    try:
        turn = await speak(tts, "Nobody will hear this.")
    finally:
        await tts.aclose()
    assert turn.error is not None and turn.samples == 0
    assert "voice" in str(turn.error) and "'bob'" in str(turn.error)
