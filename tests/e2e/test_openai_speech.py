"""End to end: the OpenAI-compatible Trusses (piper-openai, xtts-openai) served as
their docker_server runs them, spoken to by the official OpenAI SDK."""

import base64
import json
import time

import openai
import pytest
import requests
from audio_checks import assert_speech_like, decode, ffprobe, pcm16
from conftest import REPO
from metrics_scrape import requests_total, scrape, settled, value

SENTENCE = "This is a test of the OpenAI compatible speech endpoint."
WORDS = len(SENTENCE.split())
KEY = "k-openai-0123456789"
MODEL = "piper-openai"
FORMATS = {  # response_format: (what ffprobe names its codec, the rate it decodes at)
    "mp3": ("mp3", "24000"),
    "opus": ("opus", "48000"),
    "aac": ("aac", "24000"),
    "flac": ("flac", "24000"),
    "wav": ("pcm_s16le", "24000"),
}


@pytest.fixture(scope="module")
def piper_openai(serve):
    return serve("piper-openai")


@pytest.fixture(scope="module")
def piper_openai_key(serve):
    return serve("piper-openai", extra_env={"TRUSS_SECRET_tts_api_key": KEY}, name="piper-openai-key")


@pytest.fixture(scope="module")
def piper_openai_one_slot(serve):
    env = {"TTS_MAX_STREAMS": "1", "TTS_QUEUE_TIMEOUT_S": "0.5", "TTS_MAX_BODY_BYTES": "100000"}
    return serve("piper-openai", extra_env=env, name="piper-openai-one-slot")


@pytest.fixture(scope="module")
def xtts_openai(serve, xtts_checkpoint):
    return serve(
        "xtts-openai",
        extra_env={
            "XTTS_MODEL_DIR": str(xtts_checkpoint),
            "XTTS_SPEAKERS_DIR": str(REPO / "xtts-streaming/data/speakers"),
            "TTS_QUEUE_TIMEOUT_S": "300",
        },
    )


def client(server, key="unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0)


def speak(server, **kwargs) -> tuple[bytes, dict[str, str], list[bytes]]:
    """The body, headers and pieces as they arrived, through the SDK's streaming response."""
    args = {"model": "tts-1", "voice": "alloy", "input": SENTENCE, **kwargs}
    with client(server).audio.speech.with_streaming_response.create(**args) as response:
        pieces = list(response.iter_bytes())
        return b"".join(pieces), dict(response.headers), pieces


def sse_audio(body: bytes) -> tuple[bytes, list[dict]]:
    """The audio of an SSE body (its deltas, decoded) and its events."""
    events = [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    return audio, events


def test_pcm_is_24k_s16le_as_openai_defines_it(piper_openai):
    body, headers, _ = speak(piper_openai, response_format="pcm")
    assert headers["content-type"] == "audio/pcm;rate=24000"
    assert_speech_like(pcm16(body), 24000, WORDS)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_response_format_decodes_with_ffmpeg(piper_openai, fmt):
    body, _, pieces = speak(piper_openai, response_format=fmt)
    codec, rate = FORMATS[fmt]
    assert ffprobe(body) == {"codec_name": codec, "sample_rate": rate}
    assert_speech_like(decode(body, 24000), 24000, WORDS)
    assert len(pieces) > 1  # streamed as made, not sent whole


@pytest.mark.parametrize("fmt", ["pcm", *sorted(FORMATS)])
def test_sse_wraps_the_same_audio_in_delta_events_then_done(piper_openai, fmt):
    body, headers, _ = speak(piper_openai, response_format=fmt, stream_format="sse", model="gpt-4o-mini-tts")
    assert headers["content-type"].startswith("text/event-stream")
    audio, events = sse_audio(body)
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1) and len(events) > 2
    assert events[-1]["type"] == "speech.audio.done" and "usage" in events[-1]
    samples = pcm16(audio) if fmt == "pcm" else decode(audio, 24000)
    assert_speech_like(samples, 24000, WORDS)


def test_first_compressed_bytes_come_long_before_the_end(piper_openai):
    long_text = " ".join([SENTENCE] * 6)
    started = time.perf_counter()
    with client(piper_openai).audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=long_text, response_format="opus"
    ) as response:
        arrivals = [time.perf_counter() - started for _ in response.iter_bytes()]
    assert len(arrivals) > 10 and arrivals[0] < arrivals[-1] / 3


def test_voices_models_and_truss_routes(piper_openai):
    ids = [m.id for m in client(piper_openai).models.list()]
    assert ids[0] == "piper-openai" and {"tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= set(ids)
    voices = requests.get(f"{piper_openai.base_url}/v1/audio/voices", timeout=10).json()
    assert voices["voices"] == ["en_US-joe-medium"] and voices["aliases"]["alloy"] == "default"
    # Our own voice name, the SDK's voice object, and truss's predict route (Baseten's /predict)
    assert speak(piper_openai, voice="en_US-joe-medium")[0]
    assert speak(piper_openai, voice={"id": "en_US-joe-medium"})[0]
    r = requests.post(
        piper_openai.predict_url,
        json={"model": "tts-1", "input": "Hi.", "response_format": "pcm"},
        timeout=60,
    )
    assert r.status_code == 200 and r.headers["content-type"] == "audio/pcm;rate=24000"
    assert requests.get(f"{piper_openai.base_url}/v1/models/model", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("args", "status", "param"),
    [
        ({"voice": "nobody"}, 400, "voice"),
        ({"input": " \u200b "}, 400, "input"),
        ({"input": "x" * 5001}, 400, "input"),
        ({"speed": 9.0}, 400, "speed"),
        ({"speed": 3.0}, 400, "speed"),  # OpenAI's range, beyond piper's 0.5 to 2.0
        ({"response_format": "ogg"}, 400, "response_format"),
        ({"stream_format": "chunks"}, 400, "stream_format"),
        ({"model": "whisper-1"}, 404, "model"),
        ({"extra_body": {"temperature": 0.5}}, 400, "temperature"),
    ],
)
def test_bad_requests_get_openai_errors_naming_the_param(piper_openai, args, status, param):
    request = {"model": "tts-1", "voice": "alloy", "input": "Hello.", **args}
    with pytest.raises(openai.APIStatusError) as caught:
        client(piper_openai).audio.speech.create(**request)
    error = caught.value
    assert error.status_code == status
    assert set(error.body) == {"message", "type", "param", "code"}  # the SDK unwraps {"error": ...}
    assert error.body["type"] == "invalid_request_error" and error.body["param"] == param
    assert param in error.body["message"]
    if status == 404:
        assert error.body["code"] == "model_not_found"


def test_malformed_json_is_an_openai_400(piper_openai):
    r = requests.post(f"{piper_openai.base_url}/v1/audio/speech", data=b"{nope", timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == "body"


def test_a_busy_replica_and_a_big_body_get_openai_errors(piper_openai_one_slot):
    """Bounds: TTS_MAX_STREAMS with TTS_QUEUE_TIMEOUT_S (503, Retry-After), TTS_MAX_BODY_BYTES (413)."""
    server = piper_openai_one_slot
    long_text = " ".join([SENTENCE] * 20)
    with requests.post(
        f"{server.base_url}/v1/audio/speech",
        json={"model": "tts-1", "input": long_text, "response_format": "pcm"},
        stream=True,
        timeout=60,
    ) as holding:  # holds the one slot while it is not read
        assert holding.status_code == 200
        with pytest.raises(openai.InternalServerError) as caught:
            client(server).audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
    assert caught.value.status_code == 503 and caught.value.response.headers["retry-after"] == "1"
    assert caught.value.body["type"] == "server_error" and caught.value.body["code"] == "overloaded"
    r = requests.post(f"{server.base_url}/v1/audio/speech", data=b"x" * 100_001, timeout=10)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_the_api_key_is_checked_as_bearer(piper_openai_key):
    with pytest.raises(openai.AuthenticationError) as caught:
        client(piper_openai_key, key="wrong").audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
    assert caught.value.body["code"] == "invalid_api_key"
    audio = client(piper_openai_key, key=KEY).audio.speech.create(
        model="tts-1", voice="alloy", input="Hi there.", response_format="pcm"
    )
    assert len(audio.content) > 4800
    assert requests.get(f"{piper_openai_key.base_url}/health/ready", timeout=10).status_code == 200


def test_requests_are_counted_under_the_openai_transport(piper_openai):
    before = scrape(piper_openai)
    speak(piper_openai, response_format="pcm")
    with pytest.raises(openai.BadRequestError):
        client(piper_openai).audio.speech.create(model="tts-1", voice="nobody", input="Hi.")
    after = settled(
        piper_openai, lambda m: requests_total(m, "ok", 200, MODEL) > requests_total(before, "ok", 200, MODEL)
    )
    utterances = "tts_utterances_total"
    assert value(after, utterances, MODEL, transport="openai", outcome="ok") > value(
        before, utterances, MODEL, transport="openai", outcome="ok"
    )
    assert requests_total(after, "rejected", 400, MODEL) == requests_total(before, "rejected", 400, MODEL) + 1


def test_xtts_speaks_built_in_and_cloned_voices(xtts_openai):
    voices = requests.get(f"{xtts_openai.base_url}/v1/audio/voices", timeout=10).json()["voices"]
    assert "joe" in voices and "Tiny Speaker B" in voices  # a clone of data/speakers/joe.wav, a built-in
    for voice in ("Tiny Speaker B", "joe", {"id": "joe"}, "alloy"):
        body, headers, _ = speak(
            xtts_openai, voice=voice, response_format="pcm", extra_body={"language": "en"}
        )
        assert headers["content-type"] == "audio/pcm;rate=24000" and len(body) > 4800
    body, _, _ = speak(xtts_openai, voice="joe", response_format="opus", stream_format="sse")
    audio, events = sse_audio(body)
    assert events[-1]["type"] == "speech.audio.done" and ffprobe(audio)["codec_name"] == "opus"
    with pytest.raises(openai.BadRequestError) as caught:
        speak(xtts_openai, voice="joe", extra_body={"language": "tlh"})
    assert caught.value.body["param"] == "language"


def test_a_model_that_fails_to_load_ends_the_server(tmp_path):
    """The model loads after the server starts; when loading fails the process exits 1
    (under docker_server, supervisord then stops the container), never a server that
    stays up unready."""
    from local_truss.process import free_port
    from local_truss.server import LocalTrussServer

    server = LocalTrussServer(
        REPO / "xtts-openai",
        port=free_port(),
        extra_env={"XTTS_MODEL_DIR": str(tmp_path)},  # no checkpoint there
        log_path=tmp_path / "server.log",
    )
    try:
        with pytest.raises(RuntimeError, match="exited with 1"):
            server.start().wait_ready(300)
    finally:
        server.stop()
    assert "loading the model failed" in (tmp_path / "server.log").read_text()
