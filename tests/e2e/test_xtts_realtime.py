"""xtts-realtime served by truss's real server on the tiny random XTTS-v2 checkpoint
(tests/fixtures/tiny_xtts.py), spoken to with a raw WebSocket client: its own
config fields, voice.list, voice.add cloning (pinned, usable at once), what it
refuses, and two turns on one socket. The protocol's shared behaviour (timeouts,
limits, barge-in) is piper-realtime's tests' (test_piper_realtime.py)."""

from __future__ import annotations

import base64
import time

import pytest
from audio_checks import tone, wav_b64
from conftest import REPO
from realtime_client import event, push_words, send, session, turn

CONFIG = {
    "type": "session.config",
    "voice": "Tiny Speaker A",
    "task_type": "Base",
    "language": "Auto",
    "speed": 1.0,
    "response_format": "pcm",
    "stream_audio": True,
    "seed": 7,
}
JOE = base64.b64encode((REPO / "xtts-streaming/data/speakers/joe.wav").read_bytes()).decode()


@pytest.fixture(scope="module")
def realtime(serve, xtts_checkpoint):
    return serve(
        "xtts-realtime",
        extra_env={
            "XTTS_MODEL_DIR": str(xtts_checkpoint),
            "TTS_QUEUE_TIMEOUT_S": "300",  # a loaded 2-core machine is slow even on the tiny model
            "XTTS_MAX_VOICES_PER_CALLER": "2",
            "XTTS_VOICE_TTL_S": "8",
        },
    )


def test_voice_list_has_the_checkpoints_speakers(realtime):
    with session(realtime) as ws:
        send(ws, type="voice.list")
        listed = event(ws)
        assert listed["type"] == "voice.list" and "Tiny Speaker A" in listed["voices"]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"voice": "bob"}, "voice"),
        ({"language": "xx"}, "language"),
        ({"temperature": 0.0}, "temperature"),
        ({"top_k": "5"}, "top_k"),
        ({"timestamp_type": "word"}, "timestamp_type"),  # XTTS has no honest word times
        ({"instructions": "cheerful"}, "instructions"),  # a qwen3 field XTTS has not
    ],
)
def test_a_bad_config_is_an_error_naming_the_field(realtime, change, field):
    with session(realtime) as ws:
        send(ws, **{**CONFIG, **change})
        error = event(ws)
        assert error["type"] == "error" and error["field"] == field, error


def test_two_turns_on_one_socket(realtime):
    with session(realtime) as ws:
        send(ws, **CONFIG)
        for text in ("Hello world, this is a test.", "And a second turn."):
            push_words(ws, text)
            send(ws, type="input.done")
            units, done = turn(ws, timeout=240)
            assert done["sentences"] == len(units) >= 1
            assert all(u.start["sample_rate"] == 24000 and u.seconds > 0 for u in units)
            assert all(u.done is not None and "timestamp_info" not in u.done for u in units)
            assert " ".join(u.start["text"] for u in units) == text


def add_voice(ws, name: str, clip: str = JOE) -> dict:
    send(ws, type="voice.add", name=name, audio_data=clip, audio_format="wav", consent="user_consent")
    return event(ws, timeout=120)


def speak(ws, voice: str) -> bytes:
    send(ws, **{**CONFIG, "voice": voice})
    send(ws, type="input.text", text="Spoken in the cloned voice.")
    send(ws, type="input.done")
    units, _ = turn(ws, timeout=240)
    assert units and units[0].seconds > 0
    return b"".join(bytes(u.audio) for u in units)


def listed(ws) -> list[str]:
    send(ws, type="voice.list")
    return event(ws)["uploaded_voices"]


def test_a_cloned_voice_is_the_callers_alone(realtime):
    """XTTS_VOICE_SCOPE=caller with no API key: each session has its own voices. B
    neither sees nor speaks with A's `alice`; its own `alice` (another clip) leaves
    A's untouched; A's voices go when A's session ends."""
    other = wav_b64(tone(3.0, 16000), 16000)
    with session(realtime) as a, session(realtime) as b:
        for ws in (a, b):  # configured: the first-config limit (10 s) does not close them
            send(ws, **CONFIG)
        assert add_voice(a, "alice") == {"type": "voice.add", "success": True, "voice": {"name": "alice"}}
        assert listed(a) == ["alice"] and listed(b) == []
        mine = speak(a, "alice")
        send(b, **{**CONFIG, "voice": "alice"})
        error = event(b)
        assert error["type"] == "error" and error["field"] == "voice", error
        send(b, **{**CONFIG, "voice": "upload:" + "0" * 32})  # engine-side ids are no names
        assert event(b)["field"] == "voice"
        assert add_voice(b, "alice", other)["success"]
        assert speak(a, "alice") == mine  # seeded: the same voice, byte for byte
        assert speak(b, "alice") != mine
    with session(realtime) as c:
        assert listed(c) == []


def test_sessions_presenting_one_key_share_its_voices_and_no_other(realtime):
    """As LiveKit's `register_voice` then `TTS` do, on separate sockets with one key."""
    with session(realtime, "k-alpha") as ws:
        assert add_voice(ws, "kay")["success"]
    with session(realtime, "k-alpha") as same, session(realtime, "k-beta") as other:
        assert listed(same) == ["kay"] and listed(other) == []
        send(other, **{**CONFIG, "voice": "kay"})
        assert event(other)["field"] == "voice"
        send(same, type="voice.delete", name="kay")
        assert event(same)["success"]


def test_voice_delete_cap_per_caller_and_expiry(realtime):
    """voice.delete; XTTS_MAX_VOICES_PER_CALLER (2 here); XTTS_VOICE_TTL_S (8 here)."""
    with session(realtime) as ws:
        send(ws, **CONFIG)  # configured: the first-config limit (10 s) does not close it
        assert add_voice(ws, "one")["success"] and add_voice(ws, "two")["success"]
        full = add_voice(ws, "three")
        assert full["type"] == "error" and full["field"] == "name" and "at most 2" in full["message"], full
        assert add_voice(ws, "two")["success"]  # replacing one's own voice takes no new place
        send(ws, type="voice.delete", name="one")
        assert event(ws) == {"type": "voice.delete", "success": True, "voice": {"name": "one"}}
        send(ws, type="voice.delete", name="one")
        assert event(ws)["field"] == "name"
        assert add_voice(ws, "three")["success"]
        assert listed(ws) == ["three", "two"]
        time.sleep(9)  # unused past the TTL
        assert listed(ws) == []


@pytest.mark.parametrize(
    "change, field",
    [
        ({"audio_data": "not base64!"}, "audio_data"),
        ({"audio_data": wav_b64(tone(0.3), 16000)}, "audio_data"),  # under a second
        ({"audio_format": "mp3"}, "audio_format"),
        ({"name": "Tiny Speaker A"}, "name"),  # a built-in voice
        ({"name": ""}, "name"),
        ({"speaker": "x"}, "speaker"),
    ],
)
def test_voice_add_refuses_what_it_cannot_clone(realtime, change, field):
    with session(realtime) as ws:
        send(ws, **{"type": "voice.add", "name": "clip", "audio_data": JOE, "audio_format": "wav", **change})
        error = event(ws, timeout=60)
        assert error["type"] == "error" and error["field"] == field, error


def test_a_number_too_long_is_an_error_naming_the_text_and_the_turn_goes_on(realtime):
    with session(realtime) as ws:
        send(ws, **CONFIG)
        send(ws, type="input.text", text="Call " + "7" * 21 + " now. Then hang up.")
        send(ws, type="input.done")
        error = event(ws, timeout=60)
        assert error["type"] == "error" and error["field"] == "text" and not error["fatal"], error
        assert "at most 20" in error["message"]
        units, done = turn(ws, timeout=240)
        assert [u.start["text"] for u in units] == ["Then hang up."] and done["sentences"] == 2
