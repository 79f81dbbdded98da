"""End to end: the real truss server serving xtts-streaming on a tiny random XTTS-v2.

The checkpoint is built at test time with the real coqui-tts classes (see
tests/fixtures/tiny_xtts.py): tiny GPT, real HiFi-GAN decoder and speaker encoder,
real file formats, so the production load and inference paths run unchanged.
"""

import base64
import io
import time
import wave

import numpy as np
import pytest
import requests
from audio_checks import pcm16, tone, wav_b64
from conftest import REPO
from metrics_scrape import scrape, value
from xtts_reference import TEXT, VOICE, in_process_pcm


def synth(server, **body) -> requests.Response:
    return requests.post(server.predict_url, json={"text": TEXT, **body}, timeout=300)


def test_stock_decoder_serves_exactly_what_in_process_inference_stream_yields(
    xtts_stock, xtts_python, xtts_checkpoint, tmp_path
):
    served = synth(xtts_stock, voice=VOICE, seed=7)
    assert served.status_code == 200, served.text
    reference, chunks = in_process_pcm(xtts_python, xtts_checkpoint, tmp_path / "reference.pcm", 7, "stock")
    assert chunks >= 2
    assert served.content == reference


def test_audio_arrives_in_chunks_before_generation_ends(xtts):
    start = time.perf_counter()
    arrivals = []
    with requests.post(xtts.predict_url, json={"text": TEXT, "seed": 1}, stream=True, timeout=300) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "audio/pcm;rate=24000"
        for chunk in r.iter_content(chunk_size=None):
            arrivals.append((time.perf_counter() - start, len(chunk)))
    assert len(arrivals) >= 2
    total = arrivals[-1][0]
    assert arrivals[0][0] < 0.8 * total  # the first audio left long before the last
    assert arrivals[0][1] < sum(n for _, n in arrivals)


def test_same_seed_same_audio_other_seed_other_audio(xtts):
    a, b, c = synth(xtts, seed=11), synth(xtts, seed=11), synth(xtts, seed=12)
    assert a.content == b.content
    assert a.content != c.content


def test_built_in_voices_differ(xtts):
    a = synth(xtts, voice="Tiny Speaker A", seed=5)
    b = synth(xtts, speaker="Tiny Speaker B", seed=5)  # `speaker` is an alias of `voice`
    assert a.status_code == b.status_code == 200
    assert a.headers["x-voice"] == "Tiny Speaker A" and b.headers["x-voice"] == "Tiny Speaker B"
    assert a.content != b.content


def test_folder_voice_and_the_same_clip_cloned_sound_the_same(xtts):
    """data/speakers/joe.wav is pinned at load; sending the same clip clones the same voice."""
    folder = synth(xtts, voice="joe", seed=9)
    clip = base64.b64encode((REPO / "xtts-streaming/data/speakers/joe.wav").read_bytes()).decode()
    cloned = synth(xtts, speaker_wav=clip, seed=9)
    assert folder.status_code == cloned.status_code == 200
    assert cloned.headers["x-voice"] == "cloned"
    assert cloned.content == folder.content
    assert folder.content != synth(xtts, voice="Tiny Speaker A", seed=9).content


def test_cloned_voice_latents_are_cached_by_content(xtts):
    clip = wav_b64(tone(2.5, 22050), 22050)
    before = scrape(xtts)
    first = synth(xtts, speaker_wav=clip, seed=3)
    second = synth(xtts, speaker_wav=clip, seed=3)
    assert first.headers["x-voice-cache"] == "miss"
    assert second.headers["x-voice-cache"] == "hit"
    assert first.content == second.content
    after = scrape(xtts)
    for result in ("hit", "miss"):
        lookups = [
            value(s, "tts_voice_cache_lookups_total", "xtts-streaming", result=result)
            for s in (before, after)
        ]
        assert lookups[1] - lookups[0] == 1, result


def test_pcm_is_resampled_and_formats_apply(xtts):
    r = synth(xtts, seed=4, sample_rate=16000, format="wav")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    reader = wave.open(io.BytesIO(r.content))
    assert reader.getframerate() == 16000
    native = synth(xtts, seed=4)
    n16 = len(r.content[44:]) / 2
    n24 = len(native.content) / 2
    assert abs(n16 / n24 - 16000 / 24000) < 0.01


def test_disconnect_stops_generation_and_frees_the_model(xtts):
    """A generation nobody listens to stops soon and gives its slot back."""
    long_text = " ".join(f"Sentence number {i} keeps the model busy for a while." for i in range(12))
    log_before = xtts.log_path.read_text().count("generation cancelled")
    with requests.post(xtts.predict_url, json={"text": long_text}, stream=True, timeout=300) as r:
        next(r.iter_content(chunk_size=1024))
    follow_up = synth(xtts, seed=1)
    assert follow_up.status_code == 200, follow_up.text
    log = xtts.log_path.read_text()
    assert log.count("generation cancelled") == log_before + 1
    # The abandoned stream stopped after a few chunks, far from its 12 sentences.
    cancelled = [line for line in log.splitlines() if "generation cancelled" in line][-1]
    assert int(cancelled.split("after ")[1].split()[0]) < 6


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


BAD_INPUTS = [
    ({"language": "xx"}, "language"),
    ({"language": "en-GB"}, "language"),
    ({"voice": "nobody"}, "voice"),
    ({"voice": "joe", "speaker_wav": "AAAA"}, "speaker_wav"),
    ({"speaker_wav": "this is not base64!"}, "speaker_wav"),
    ({"speaker_wav": b64(b"definitely not audio" * 100)}, "speaker_wav"),
    ({"speaker_wav": wav_b64(tone(0.5), 16000)}, "speaker_wav"),
    ({"speaker_wav": wav_b64(tone(31), 16000)}, "speaker_wav"),
    ({"speaker_wav": wav_b64(np.zeros(32000), 16000)}, "speaker_wav"),
    ({"speaker_wav": "A" * (11 * 1024 * 1024)}, "speaker_wav"),  # over 8 MB decoded
    ({"speaker_wav": wav_b64(tone(3, 4000), 4000)}, "speaker_wav"),  # rate below 8 kHz
    ({"speaker_wav": b64(b"fLaC" + bytes(4000))}, "speaker_wav"),  # not a WAV
    ({"text": "\u200b\u200c\u200d"}, "text"),  # nothing speakable
    ({"text": "Call " + "7" * 21 + " now."}, "text"),  # a number past MAX_DIGITS
    ({"language": "ja"}, "language"),  # its text front end (cutlet) is not installed
    ({"language": "hi", "text": "Room 12."}, "text"),  # Hindi's front end spells no numbers
    ({"temperature": 0}, "temperature"),
    ({"temperature": 3.5}, "temperature"),
    ({"top_k": 0}, "top_k"),
    ({"top_p": 1.5}, "top_p"),
    ({"repetition_penalty": 0.5}, "repetition_penalty"),
    ({"length_penalty": 100}, "length_penalty"),
    ({"speed": 0.1}, "speed"),
    ({"chunk_size": 1}, "chunk_size"),
    ({"stream_chunk_size": 10_000}, "stream_chunk_size"),
    ({"seed": -1}, "seed"),
    ({"seed": "7"}, "seed"),
    ({"text": ""}, "text"),
    ({"format": "ogg"}, "format"),
    ({"sample_rate": 32000}, "sample_rate"),
    ({"vocie": "joe"}, "vocie"),
]


@pytest.mark.parametrize("fields, field", BAD_INPUTS, ids=[f for _, f in BAD_INPUTS])
def test_bad_input_gets_422_naming_the_field(xtts, fields, field):
    r = requests.post(xtts.predict_url, json={"text": TEXT, **fields}, timeout=120)
    assert r.status_code == 422, r.text[:200]
    assert r.json()["field"] == field


def test_healthy_after_bad_input(xtts):
    r = synth(xtts, seed=2)
    assert r.status_code == 200
    assert np.sqrt(np.mean(pcm16(r.content) ** 2)) > 0


def test_a_unit_over_the_gpts_token_limit_is_split_by_tokens(xtts):
    """Ten 20-digit numbers: 230 characters, under English's 250-character unit, but
    about 1,300 tokens once spelled out, past the GPT's 402: split by tokens, spoken."""
    text = " ".join(["12345678901234567890"] * 10) + "."
    r = requests.post(xtts.predict_url, json={"text": text, "seed": 1}, timeout=600)
    assert r.status_code == 200, r.text[:300]
    assert len(pcm16(r.content)) > 0


def test_basetens_default_shape_is_spoken_and_max_tokens_caps_a_sentence(xtts):
    """{prompt, voice, language, temperature, max_tokens}, as LiveKit's Baseten plugins
    send it: temperature samples, max_tokens caps each sentence's audio tokens."""
    body = {"prompt": "Hello from the default shape.", "voice": "Tiny Speaker A", "language": "en"}
    whole = requests.post(xtts.predict_url, json={**body, "temperature": 0.6, "seed": 3}, timeout=600)
    capped = requests.post(
        xtts.predict_url, json={**body, "temperature": 0.6, "seed": 3, "max_tokens": 4}, timeout=600
    )
    assert whole.status_code == capped.status_code == 200, capped.text[:200]
    # 4 audio tokens are about 0.19 s at 24 kHz (1024 samples a token at 22.05 kHz)
    assert 0 < len(capped.content) < len(whole.content)
    assert len(pcm16(capped.content)) < 0.5 * 24000
