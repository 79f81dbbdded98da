"""End to end: the real truss server serving piper-streaming, over real HTTP."""

import io
import time
import wave

import numpy as np
import pytest
import requests
from audio_checks import assert_speech_like, decode, ffprobe, pcm16

from tts_common.audio import mulaw_to_pcm16

SENTENCE = "This is a test of the real-time text-to-speech synthesis system."
PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog. Voice agents need speech that "
    "starts quickly, and keeps flowing. This paragraph has three sentences."
)


def post(server, body, **kwargs) -> requests.Response:
    return requests.post(server.predict_url, json=body, timeout=120, **kwargs)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 44100, 48000])
def test_pcm_at_each_sample_rate(piper, rate):
    r = post(piper, {"text": SENTENCE, "sample_rate": rate})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == f"audio/pcm;rate={rate}"
    assert r.headers["x-sample-rate"] == str(rate)
    assert_speech_like(pcm16(r.content), rate, words=len(SENTENCE.split()))


def test_durations_agree_across_sample_rates(piper):
    seconds = []
    for rate in (8000, 48000):
        r = post(piper, {"text": SENTENCE, "sample_rate": rate})
        seconds.append(len(r.content) / 2 / rate)
    # piper draws phoneme durations with noise, so runs differ a little
    assert abs(seconds[0] - seconds[1]) < 0.25 * max(seconds)


def test_wav_streams_a_header_then_pcm(piper):
    r = post(piper, {"text": SENTENCE, "format": "wav", "sample_rate": 16000})
    assert r.status_code == 200
    assert r.headers["content-type"] == "audio/wav"
    reader = wave.open(io.BytesIO(r.content))
    assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 16000)
    frames = reader.readframes(10**9)
    assert len(frames) == len(r.content) - 44
    assert_speech_like(pcm16(frames), 16000, words=len(SENTENCE.split()))


@pytest.mark.parametrize(
    ("fmt", "codec", "content_type", "rate"),
    [("opus", "opus", "audio/ogg; codecs=opus", 16000), ("mp3", "mp3", "audio/mpeg", 22050)],
)
def test_compressed_formats_stream_and_decode(piper, fmt, codec, content_type, rate):
    with requests.post(
        piper.predict_url,
        json={"text": SENTENCE, "format": fmt, "sample_rate": rate},
        stream=True,
        timeout=120,
    ) as r:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == content_type and r.headers["x-audio-format"] == fmt
        pieces = list(r.iter_content(chunk_size=None))
    body = b"".join(pieces)
    assert len(pieces) > 1 and ffprobe(body)["codec_name"] == codec
    assert_speech_like(decode(body, rate), rate, words=len(SENTENCE.split()))


def test_mulaw_is_8k_g711(piper):
    r = post(piper, {"text": SENTENCE, "format": "mulaw"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "audio/PCMU;rate=8000"
    assert r.headers["x-sample-rate"] == "8000"
    samples = mulaw_to_pcm16(r.content).astype(np.float32) / 32768
    assert_speech_like(samples, 8000, words=len(SENTENCE.split()))


def test_mulaw_and_pcm_carry_the_same_speech_level(piper):
    pcm = pcm16(post(piper, {"text": SENTENCE, "sample_rate": 8000}).content)
    mu = mulaw_to_pcm16(post(piper, {"text": SENTENCE, "format": "mulaw"}).content) / 32768
    level = lambda x: np.sqrt(np.mean(np.square(x)))  # noqa: E731
    assert 0.7 < level(mu) / level(pcm) < 1.4


def test_audio_arrives_in_several_chunks(piper):
    """The paragraph streams: several reads, the first long before the last. (Text
    order, sample for sample: test_piper_sentences.py's paragraph case.)"""
    start = time.perf_counter()
    arrivals = []
    with requests.post(piper.predict_url, json={"text": PARAGRAPH}, stream=True, timeout=120) as r:
        assert r.status_code == 200
        for chunk in r.iter_content(chunk_size=None):
            arrivals.append((time.perf_counter() - start, len(chunk)))
    assert len(arrivals) >= 4  # three sentences, each in chunks
    total = sum(n for _, n in arrivals)
    first_bytes = arrivals[0][1]
    assert first_bytes < total / 3, "the first chunk should be part of a sentence, not the whole text"
    assert arrivals[-1][0] > arrivals[0][0]


def test_a_sentence_streams_in_pieces_smaller_than_itself(piper):
    """Within one sentence the flow and decoder run chunk by chunk: the sentence's
    first read is a fraction of a second of audio, not the sentence."""
    with requests.post(
        piper.predict_url, json={"text": SENTENCE, "sample_rate": 22050}, stream=True, timeout=120
    ) as r:
        reads = [len(chunk) for chunk in r.iter_content(chunk_size=None)]
    assert len(reads) >= 4
    assert reads[0] / 2 / 22050 < 0.5 < sum(reads) / 2 / 22050


def test_abandoned_streams_give_back_their_cpu_lanes(piper):
    """Clients that leave mid-sentence, more of them than there are CPU lanes and
    spare lanes together, must not keep a lane: a later request still completes."""
    long_text = " ".join([PARAGRAPH] * 4)
    for _ in range(6):
        with requests.post(piper.predict_url, json={"text": long_text}, stream=True, timeout=60) as r:
            assert r.status_code == 200
            next(r.iter_content(chunk_size=1024))
        # leaving the block closes the connection with most of the audio unsent
    r = post(piper, {"text": SENTENCE})
    assert r.status_code == 200
    assert_speech_like(pcm16(r.content), 24000, words=len(SENTENCE.split()))


def test_speed_changes_duration(piper):
    normal = len(post(piper, {"text": SENTENCE}).content)
    fast = len(post(piper, {"text": SENTENCE, "speed": 1.6}).content)
    assert fast < 0.8 * normal


def test_voice_by_name_and_speaker_alias(piper):
    for field in ("voice", "speaker"):
        r = post(piper, {"text": "Hello.", field: "en_US-joe-medium"})
        assert r.status_code == 200


BAD_INPUTS = [
    ({}, 422, "text"),
    ({"text": ""}, 422, "text"),
    ({"text": "   "}, 422, "text"),
    ({"text": "x" * 5001}, 422, "text"),
    ({"text": 12}, 422, "text"),
    ({"text": "Hi", "voice": "nobody"}, 422, "voice"),
    ({"text": "Hi", "language": "fr"}, 422, "language"),
    ({"text": "Hi", "format": "ogg"}, 422, "format"),
    ({"text": "Hi", "sample_rate": 11025}, 422, "sample_rate"),
    ({"text": "Hi", "sample_rate": "24000"}, 422, "sample_rate"),
    ({"text": "Hi", "vocie": "joe"}, 422, "vocie"),
    ({"text": "Hi", "speed": 5}, 422, "speed"),
    ({"text": "Hi", "speed": "fast"}, 422, "speed"),
    ({"text": "Hi\u0000there"}, 422, "text"),  # NUL: once a 500 from espeak
    ({"text": "Hi \u001b[31m there"}, 422, "text"),  # a terminal escape code
    ({"text": "\u200b\u200b \ufeff\u2060"}, 422, "text"),  # zero-width only: nothing to say
]


@pytest.mark.parametrize("body, status, field", BAD_INPUTS)
def test_bad_input_gets_4xx_naming_the_field(piper, body, status, field):
    r = post(piper, body)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["field"] == field


@pytest.mark.parametrize(
    "raw, content_type",
    [
        (b"{oops", "application/json"),
        (b"text=hello", "application/x-www-form-urlencoded"),
        (b"[1]", "application/json"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),  # once a RecursionError 500
        (b'{"text": "lone \\ud800 surrogate"}', "application/json"),
    ],
    ids=["not-json", "form", "array", "deeply-nested", "lone-surrogate"],
)
def test_non_json_bodies_get_400(piper, raw, content_type):
    r = requests.post(piper.predict_url, data=raw, headers={"Content-Type": content_type}, timeout=30)
    assert r.status_code == 400
    assert r.json()["field"] == "body"
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_server_stays_healthy_after_bad_input(piper):
    for body, _, _ in BAD_INPUTS:
        post(piper, body)
    r = post(piper, {"text": "Still here."})
    assert r.status_code == 200 and len(r.content) > 0
