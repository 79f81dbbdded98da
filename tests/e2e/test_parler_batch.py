"""parler-batch: truss's strict config check, and end to end on a tiny random Parler-TTS.

The checkpoint is built at test time with the real parler_tts classes (see
tests/fixtures/tiny_parler.py) in the Truss's own environment, then the real truss
server serves parler-batch on it over real HTTP. The model is built with a lifted
end-of-speech logit, so items of one batch end at different lengths, as real
speech does, and per-item trimming is exercised.
"""

import base64
import io
import subprocess
import wave

import numpy as np
import pytest
import requests
from conftest import REPO
from metrics_scrape import requests_total, scrape, value
from truss.base.truss_config import TrussConfig
from truss.truss_handle.truss_handle import TrussHandle

from local_truss.paths import cache_dir
from local_truss.server import LocalTrussServer
from tts_common.contract import SAMPLE_RATES

TRUSS = REPO / "parler-batch"
EOS_LOGIT = 2.0
HOP = 512  # DAC 44.1 kHz: samples per codec frame
# tiny_parler: max_length 32 = BOS + 4 - 1 delay steps + 28 frames at most.
MAX_SAMPLES = 28 * HOP
MAX_ITEMS = 16  # parler-batch/config.yaml model_metadata.max_batch_items

DESCRIPTIONS = [
    "Jon's voice is monotone yet slightly fast in delivery, with a very close recording "
    "that almost has no background noise.",
    "A female speaker delivers a slightly expressive and animated speech with a moderate speed and pitch.",
    "Laura speaks with a high-pitched voice at a moderate pace, and the recording is very clear.",
    "A male speaker with a low-pitched voice speaks slowly in a very confined sounding environment.",
    "Gary speaks in a deep voice, a little noisy, with some reverberation in the background.",
]
TEXTS = [
    "Hi.",
    "Good morning, sir. How can I help you?",
    "It was a bright cold day in April, and the clocks were striking thirteen, "
    "so we went to the train station.",
    "Thank you very much for listening.",
    "The weather today is sunny with a light breeze from the west.",
]


def item(i: int, seed: int) -> dict:
    return {"text": TEXTS[i], "description": DESCRIPTIONS[i], "seed": seed}


OK = item(0, 1)


# ---- config ------------------------------------------------------------------


def test_config_passes_truss_strict_check():
    config = TrussConfig.from_yaml(TRUSS / "config.yaml")
    config.validate_forbid_extra()  # what `truss push` runs
    TrussHandle(TRUSS)
    assert config.resources.use_gpu and config.resources.accelerator.accelerator.value in ("A10G", "T4")
    (weights,) = config.weights.sources
    repo, revision = weights.source.removeprefix("hf://").split("@")
    assert repo == "parler-tts/parler-tts-mini-v1"
    assert len(revision) == 40 and int(revision, 16) >= 0, "pin a commit, not a branch"
    for requirement in config.requirements:
        assert "==" in requirement, f"unpinned requirement {requirement!r}"
    assert config.model_metadata["max_batch_items"] == MAX_ITEMS


def test_mistyped_config_key_is_rejected(tmp_path):
    bad = tmp_path / "config.yaml"
    bad.write_text((TRUSS / "config.yaml").read_text().replace("predict_concurrency:", "predict_concurency:"))
    config = TrussConfig.from_yaml(bad)  # the lenient loader alone would accept the typo
    with pytest.raises(ValueError, match="predict_concurency"):
        config.validate_forbid_extra()


# ---- served Truss ---------------------------------------------------------------


@pytest.fixture(scope="session")
def parler_python():
    server = LocalTrussServer(TRUSS)
    try:
        return server.prepare()
    finally:
        server.stop()  # removes only the app tree; the environment stays cached


@pytest.fixture(scope="session")
def parler_checkpoint(parler_python):
    out = cache_dir() / "models" / f"tiny-parler-eos{EOS_LOGIT:g}-s0"
    subprocess.run(
        [
            str(parler_python),
            str(REPO / "tests/fixtures/tiny_parler.py"),
            str(out),
            "--eos-logit",
            str(EOS_LOGIT),
        ],
        check=True,
    )
    return out


@pytest.fixture(scope="session")
def parler(serve, parler_checkpoint):
    return serve(
        "parler-batch", extra_env={"PARLER_MODEL_DIR": str(parler_checkpoint), "HF_HUB_OFFLINE": "1"}
    )


def post(server, body) -> requests.Response:
    return requests.post(server.predict_url, json=body, timeout=600)


def wav_samples(data: bytes, rate: int) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, rate)
        frames = reader.readframes(reader.getnframes())
        assert len(frames) == reader.getnframes() * 2 == len(data) - 44  # exact sizes, not streaming
    return np.frombuffer(frames, dtype="<i2")


def decode(result: dict) -> np.ndarray:
    samples = wav_samples(base64.b64decode(result["audio"]), result["sample_rate"])
    assert result["duration_s"] == pytest.approx(len(samples) / result["sample_rate"])
    return samples


def assert_same_audio(a: np.ndarray, b: np.ndarray) -> None:
    # Same codes decode to the same float audio up to ~1e-8 (DAC on a batch vs one
    # item), which can move a PCM16 rounding by one step: allow 1 LSB, no more.
    assert a.shape == b.shape
    assert np.abs(a.astype(np.int32) - b.astype(np.int32)).max(initial=0) <= 1


def test_batch_returns_one_wav_per_item_trimmed_to_its_own_length(parler):
    body = {"items": [item(i, 10 + i) for i in range(5)], "sample_rate": 44100}
    before = scrape(parler)
    r = post(parler, body)
    after = scrape(parler)
    assert r.status_code == 200, r.text
    results = r.json()["items"]
    assert len(results) == 5

    def delta(name: str, **labels: str) -> float:
        return value(after, name, "parler-batch", **labels) - value(before, name, "parler-batch", **labels)

    assert (
        requests_total(after, "ok", 200, "parler-batch") - requests_total(before, "ok", 200, "parler-batch")
        == 1
    )
    assert delta("tts_batch_items_count") == 1 and delta("tts_batch_items_sum") == 5
    assert delta("tts_audio_seconds_total", transport="http") == pytest.approx(
        sum(res["duration_s"] for res in results)
    )
    assert value(after, "tts_streams_in_flight", "parler-batch") == 0
    lengths = [len(decode(res)) for res in results]
    for n in lengths:  # the model's own rate: whole codec frames, within the cap
        assert n % HOP == 0 and HOP <= n <= MAX_SAMPLES
    assert len(set(lengths)) > 1, "each item keeps its own length, not the longest one's"
    assert [res["seed"] for res in results] == [10, 11, 12, 13, 14]


def test_item_in_a_batch_equals_the_same_item_alone(parler):
    batch = post(parler, {"items": [item(i, 100 + i) for i in range(5)]}).json()["items"]
    for i, in_batch in enumerate(batch):
        alone = post(parler, item(i, 100 + i))
        assert alone.status_code == 200, alone.text
        alone = alone.json()
        assert alone["codes_sha256"] == in_batch["codes_sha256"], f"item {i}: different codes"
        assert_same_audio(decode(alone), decode(in_batch))


def test_item_is_independent_of_its_batch_mates(parler):
    first = post(parler, {"items": [item(1, 7), item(2, 8)]}).json()["items"][0]
    other = post(parler, {"items": [item(3, 9), item(1, 7), item(4, 5), item(0, 6)]}).json()["items"][1]
    assert first["codes_sha256"] == other["codes_sha256"]
    assert_same_audio(decode(first), decode(other))


def test_same_seed_twice_gives_the_same_audio_and_another_seed_does_not(parler):
    body = {"items": [item(0, 42), item(3, 43)], "sample_rate": 24000}
    a, b = post(parler, body).json()["items"], post(parler, body).json()["items"]
    for x, y in zip(a, b, strict=True):
        assert x["codes_sha256"] == y["codes_sha256"]
        assert np.array_equal(decode(x), decode(y))
    c = post(parler, {**item(0, 4242), "sample_rate": 24000}).json()
    assert c["codes_sha256"] != a[0]["codes_sha256"]


def test_a_seed_is_chosen_and_reported_when_not_given(parler):
    first = post(parler, {"text": TEXTS[1], "description": DESCRIPTIONS[1]}).json()
    assert isinstance(first["seed"], int)
    again = post(parler, {"text": TEXTS[1], "description": DESCRIPTIONS[1], "seed": first["seed"]}).json()
    assert again["codes_sha256"] == first["codes_sha256"]


def test_description_naming_a_speaker_steers_the_voice(parler):
    jon = post(parler, {"text": TEXTS[1], "description": DESCRIPTIONS[0], "seed": 3})
    laura = post(parler, {"text": TEXTS[1], "description": DESCRIPTIONS[2], "seed": 3})
    assert jon.status_code == laura.status_code == 200
    assert jon.json()["codes_sha256"] != laura.json()["codes_sha256"]


@pytest.mark.parametrize("fmt, content_type", [("wav", "audio/wav"), ("pcm", "audio/pcm;rate=16000")])
def test_single_item_binary_formats_match_the_json_audio(parler, fmt, content_type):
    reference = decode(post(parler, {**item(1, 5), "sample_rate": 16000}).json())
    r = post(parler, {**item(1, 5), "sample_rate": 16000, "format": fmt})
    assert r.status_code == 200
    assert r.headers["content-type"] == content_type
    assert r.headers["x-sample-rate"] == "16000" and r.headers["x-seed"] == "5"
    samples = wav_samples(r.content, 16000) if fmt == "wav" else np.frombuffer(r.content, dtype="<i2")
    assert np.array_equal(samples, reference)


def test_every_sample_rate_resamples_the_same_clip(parler):
    native = decode(post(parler, {**item(4, 77), "sample_rate": 44100}).json())
    for rate in SAMPLE_RATES:
        result = post(parler, {**item(4, 77), "sample_rate": rate}).json()
        assert result["sample_rate"] == rate
        samples = decode(result)
        assert abs(len(samples) - len(native) * rate / 44100) <= 1
        assert np.abs(samples).max() > 0
    default = post(parler, item(4, 77)).json()
    assert default["sample_rate"] == 44100  # the checkpoint's own rate
    assert np.array_equal(decode(default), native)


TOO_MANY = {"items": [OK] * (MAX_ITEMS + 1)}
BAD_INPUTS = [
    ({"description": DESCRIPTIONS[0]}, "text"),
    ({"text": TEXTS[0]}, "description"),
    ({"items": [OK, {"text": TEXTS[1]}]}, "items.1.description"),
    ({"items": [OK, OK, {"description": DESCRIPTIONS[2]}]}, "items.2.text"),
    ({"items": [OK, {**OK, "text": "   "}]}, "items.1.text"),
    ({**OK, "description": "\u200b\u200c"}, "description"),  # nothing speakable
    ({"items": []}, "items"),
    (TOO_MANY, "items"),
    ({"items": OK}, "items"),
    ({**OK, "text": "x" * 401}, "text"),
    ({"items": [OK, OK, {**OK, "text": "x" * 401}]}, "items.2.text"),
    ({**OK, "description": "y" * 501}, "description"),
    ({"items": [{**OK, "description": "y" * 501}]}, "items.0.description"),
    ({**OK, "seed": -1}, "seed"),
    ({**OK, "seed": "7"}, "seed"),
    ({**OK, "seed": 1.5}, "seed"),
    ({**OK, "seed": True}, "seed"),
    ({"items": [OK, {**OK, "seed": 2**63}]}, "items.1.seed"),
    ({**OK, "format": "mp3"}, "format"),
    ({**OK, "format": "mulaw"}, "format"),
    ({"items": [OK], "format": "wav"}, "format"),
    ({**OK, "sample_rate": 11025}, "sample_rate"),
    ({**OK, "sample_rate": "24000"}, "sample_rate"),
    ({"items": [OK], "sample_rate": 12345}, "sample_rate"),
    ({**OK, "voice": "Jon"}, "voice"),
    ({"items": [OK, {**OK, "speed": 1.2}]}, "items.1.speed"),
    ({"items": [OK], "text": "hi"}, "text"),
]


@pytest.mark.parametrize("body, field", BAD_INPUTS)
def test_bad_input_gets_422_naming_the_field_and_item(parler, body, field):
    r = post(parler, body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/json")
    answer = r.json()
    assert answer["field"] == field, answer
    assert field in answer["error"]
    assert [e["field"] for e in answer["errors"]] == [field]
    assert "audio" not in answer and "items" not in answer  # nothing generated


def test_oversized_batch_is_refused_by_count(parler):
    answer = post(parler, TOO_MANY).json()
    assert answer["errors"][0]["message"] == f"at most {MAX_ITEMS} items per request, got {MAX_ITEMS + 1}"


@pytest.mark.parametrize(
    "raw",
    [b"{oops", b"[1, 2]", b"\xff\xfe", b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"],
    ids=["not-json", "array", "not-utf8", "deeply-nested"],
)
def test_non_json_bodies_get_400(parler, raw):
    r = requests.post(parler.predict_url, data=raw, headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 400
    assert r.json()["field"] == "body"
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_server_stays_healthy_after_bad_input(parler):
    for body, _ in BAD_INPUTS:
        assert post(parler, body).status_code == 422
    r = post(parler, {"items": [OK, item(2, 2)]})
    assert r.status_code == 200 and len(r.json()["items"]) == 2
