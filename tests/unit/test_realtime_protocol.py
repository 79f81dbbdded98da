"""The realtime protocol's client messages: what LiveKit's Baseten plugin sends is
accepted; anything else is refused naming the field."""

import json

import pytest
from pydantic import Field

from tts_common.baseten_dialect import baseten_config, default_session
from tts_common.realtime_protocol import (
    AudioDone,
    ErrorEvent,
    InputText,
    ProtocolError,
    SessionConfig,
    SessionDone,
    TimestampInfo,
    WordAlignment,
    message_type,
    parse_message,
)

# Exactly what livekit-plugins-baseten 1.8.9 sends for TTS(model="qwen3-tts", word_timestamps=True).
PLUGIN_CONFIG = {
    "type": "session.config",
    "task_type": "Base",
    "response_format": "pcm",
    "stream_audio": True,
    "speed": 1.0,
    "voice": "en_US-joe-medium",
    "language": "Auto",
    "timestamp_type": "word",
    "timestamp_transport_strategy": "sync",
}


class BoundedConfig(SessionConfig):
    """As a Truss narrows it (piper: speed 0.5 to 2)."""

    speed: float = Field(default=1.0, ge=0.5, le=2.0)


def parse(message: dict, model: type[SessionConfig] = BoundedConfig):
    kind, data = message_type(json.dumps(message))
    return parse_message(kind, data, model)


def refusal(message: dict) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse(message)
    return caught.value


def test_the_plugins_config_is_accepted_as_sent():
    config = parse(PLUGIN_CONFIG)
    assert isinstance(config, BoundedConfig)
    assert config.word_timestamps and config.sample_rate == 24000 and config.speed == 1.0


def test_a_minimal_config_has_the_defaults():
    config = parse({"type": "session.config"})
    assert (config.voice, config.language, config.sample_rate, config.word_timestamps) == (
        None,
        None,
        24000,
        False,
    )


@pytest.mark.parametrize(
    "change, field",
    [
        ({"vocie": "x"}, "vocie"),  # unknown: refused by name, never ignored
        ({"instructions": "speak softly"}, "instructions"),  # a qwen3 field this model lacks
        ({"speed": 2.5}, "speed"),
        ({"speed": "1.0"}, "speed"),  # strict: a string is not a number
        ({"sample_rate": 12345}, "sample_rate"),
        ({"response_format": "mp3"}, "response_format"),
        ({"stream_audio": False}, "stream_audio"),
        ({"timestamp_type": "phoneme"}, "timestamp_type"),
        ({"timestamp_transport_strategy": "async"}, "timestamp_transport_strategy"),
        ({"task_type": "Clone"}, "task_type"),
        ({"voice": 7}, "voice"),
    ],
)
def test_a_bad_config_field_is_named(change, field):
    error = refusal({**PLUGIN_CONFIG, **change})
    assert error.errors[0]["field"] == field
    event = ErrorEvent.of(error)
    assert event.field == field and field in event.message and event.message.startswith("session.config")


def test_every_bad_field_is_named_at_once():
    error = refusal({**PLUGIN_CONFIG, "speed": 9.0, "colour": "blue"})
    assert {e["field"] for e in error.errors} == {"speed", "colour"}


@pytest.mark.parametrize(
    "raw, field",
    [
        ("not json", "message"),
        ("[1, 2]", "message"),
        ('{"text": "hi"}', "type"),
        ('{"type": "input.txt", "text": "hi"}', "type"),
        ('{"type": "input.text"}', "text"),
        ('{"type": "input.text", "text": "a\\u0000b"}', "text"),
        ('{"type": "input.done", "now": true}', "now"),
    ],
)
def test_bad_messages_are_named(raw, field):
    with pytest.raises(ProtocolError) as caught:
        kind, data = message_type(raw)
        parse_message(kind, data, SessionConfig)
    assert caught.value.errors[0]["field"] == field


def test_text_pieces_may_be_a_lone_space_or_comma():
    assert isinstance(parse({"type": "input.text", "text": " "}), InputText)
    assert parse({"type": "input.text", "text": ","}).text == ","


def test_a_trusses_own_control_message_passes_through_raw():
    data = {"type": "voice.add", "name": "me", "audio_data": "AAAA"}
    assert parse_message("voice.add", data, SessionConfig, ("voice.add",)) == data


def test_server_events_have_the_shapes_the_plugin_reads():
    words = WordAlignment(
        words=["Hi", "there."], word_start_times_seconds=[0.1, 0.4], word_end_times_seconds=[0.3, 0.8]
    )
    done = json.loads(
        AudioDone(
            sentence_index=2, audio_seconds=1.0, timestamp_info=TimestampInfo(word_alignment=words)
        ).json_text()
    )
    assert done["type"] == "audio.done" and done["sentence_index"] == 2
    assert done["timestamp_info"]["word_alignment"]["word_end_times_seconds"] == [0.3, 0.8]
    assert "timestamp_info" not in json.loads(AudioDone(sentence_index=0, audio_seconds=1.0).json_text())
    assert json.loads(SessionDone(sentences=0).json_text()) == {"type": "session.done", "sentences": 0}


HUGE = "x" * 1_000_000


@pytest.mark.parametrize(
    "kind, data, field",
    [
        ("session.config", {"type": "session.config", "voice": HUGE}, "voice"),
        ("session.config", {"type": "session.config", "language": HUGE}, "language"),
        ("session.config", {"type": "session.config", HUGE: 1}, "x"),
        (HUGE, {"type": HUGE}, "type"),
    ],
    ids=["voice", "language", "unknown-key", "type"],
)
def test_a_huge_client_value_is_refused_without_being_echoed(kind, data, field):
    """The error event (and the log line made of it) stays short whatever the client sent."""
    with pytest.raises(ProtocolError) as refused:
        parse_message(kind, data, SessionConfig)
    event = ErrorEvent.of(refused.value).json_text()
    assert refused.value.errors[0]["field"].startswith(field)
    assert len(event) < 500 and len(str(refused.value)) < 500


@pytest.mark.parametrize(
    "raw, is_config",
    [
        ('{"voice": "joe", "max_tokens": 2000, "buffer_size": 10}', True),  # the Python plugin's
        ('{"voice": "joe", "language": "en", "temperature": 0.6}', True),
        ('{"type": "session.config", "voice": "joe"}', False),  # the realtime protocol
        ('{"voice": "joe", "speaker": "x"}', False),  # not the dialect's field
        ("{}", False),
        ("Hello", False),  # words come after the config
    ],
)
def test_basetens_default_config_is_told_from_the_protocol(raw, is_config):
    assert (baseten_config(raw) is not None) is is_config


def test_basetens_default_config_maps_onto_the_session_config():
    config = default_session({"voice": "joe", "max_tokens": 2000, "buffer_size": 10}, SessionConfig)
    assert (config.voice, config.sample_rate, config.word_timestamps) == ("joe", 24000, False)
    with pytest.raises(ProtocolError) as refused:
        default_session({"voice": "x" * 1000}, SessionConfig)
    assert refused.value.errors[0]["field"] == "voice"
