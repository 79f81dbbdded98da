"""The request schema: defaults, aliases and the errors each bad field gets."""

import json

import pytest

from tts_common.contract import (
    DEFAULT_SAMPLE_RATE,
    MAX_TEXT_CHARS,
    AudioFormat,
    RequestError,
    StreamRequest,
    parse_request,
)


def parse(body) -> StreamRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_request(raw, StreamRequest)


def test_defaults():
    req = parse({"text": "Hello."})
    assert req.format is AudioFormat.pcm
    assert req.output_rate == DEFAULT_SAMPLE_RATE
    assert req.language == "en"
    assert req.voice is None


def test_speaker_is_an_alias_of_voice():
    assert parse({"text": "Hi", "speaker": "joe"}).voice == "joe"


def test_basetens_default_shape_is_accepted():
    """LiveKit's Baseten plugins in default mode POST {prompt, voice, temperature,
    language} (Node adds max_tokens) and read 24 kHz PCM."""
    req = parse({"prompt": "Hi", "voice": "joe", "temperature": 0.6, "language": "en", "max_tokens": 2000})
    assert (req.text, req.voice, req.temperature, req.max_tokens) == ("Hi", "joe", 0.6, 2000)
    assert req.output_rate == DEFAULT_SAMPLE_RATE == 24000 and req.format is AudioFormat.pcm


@pytest.mark.parametrize("field, value", [("temperature", 0), ("temperature", 3), ("max_tokens", 0)])
def test_basetens_fields_keep_their_bounds(field, value):
    with pytest.raises(RequestError) as refused:
        parse({"prompt": "Hi", field: value})
    assert refused.value.errors[0]["field"] == field


def test_mulaw_defaults_to_8k():
    req = parse({"text": "Hi", "format": "mulaw"})
    assert req.output_rate == 8000


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({}, 422, "text"),
        ({"text": ""}, 422, "text"),
        ({"text": "   \n\t"}, 422, "text"),
        ({"text": "x" * (MAX_TEXT_CHARS + 1)}, 422, "text"),
        ({"text": 42}, 422, "text"),
        ({"text": ["a"]}, 422, "text"),
        ({"text": "Hi", "vocie": "joe"}, 422, "vocie"),
        ({"text": "Hi", "format": "ogg"}, 422, "format"),
        ({"text": "Hi", "sample_rate": 12345}, 422, "sample_rate"),
        ({"text": "Hi", "sample_rate": "24000"}, 422, "sample_rate"),
        ({"text": "Hi", "sample_rate": True}, 422, "sample_rate"),
        ({"text": "Hi", "format": "mulaw", "sample_rate": 24000}, 422, "sample_rate"),
        ({"text": "Hi", "language": 7}, 422, "language"),
        (b"{not json", 400, "body"),
        (b"text=hello", 400, "body"),
        (b"[1, 2]", 400, "body"),
        (b'"just a string"', 400, "body"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "body"),
        (b'{"text": "\\ud800"}', 400, "body"),
        (b'{"text": "\xff"}', 400, "body"),
        ({"text": "a\u0000b"}, 422, "text"),
        ({"text": "bell\u0007"}, 422, "text"),
        ({"text": "\u200b \u200c\ufeff\u2060\u00a0"}, 422, "text"),
    ],
)
def test_bad_input_names_the_field(body, status, field):
    with pytest.raises(RequestError) as info:
        parse(body)
    assert info.value.status == status
    assert info.value.errors[0]["field"] == field
    assert field in str(info.value)


def test_text_at_the_limit_is_accepted():
    assert len(parse({"text": "x" * MAX_TEXT_CHARS}).text) == MAX_TEXT_CHARS


def test_layout_characters_and_emoji_are_text():
    assert parse({"text": "Line one.\nLine\ttwo.\r\n"}).text.startswith("Line one.")
    assert parse({"text": "Hi \U0001f600"}).text == "Hi \U0001f600"


def test_errors_say_what_is_wrong():
    with pytest.raises(RequestError) as deep:
        parse(b"[" * 1000 + b"]" * 1000)
    assert "nested too deeply" in str(deep.value)
    with pytest.raises(RequestError) as lone:
        parse(b'{"text": "\\ud800"}')
    assert "surrogate" in str(lone.value)
    with pytest.raises(RequestError) as nul:
        parse({"text": "ab\u0000"})
    assert "U+0000 at index 2" in str(nul.value)


@pytest.mark.parametrize(
    "body", [{"text": "Hi", "voice": "v" * 1_000_000}, {"text": "Hi", "k" * 1_000_000: 1}]
)
def test_a_huge_client_value_is_refused_without_being_echoed(body):
    with pytest.raises(RequestError) as refused:
        parse(body)
    assert refused.value.status == 422 and len(str(refused.value)) < 500
