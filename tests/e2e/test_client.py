"""client/call.py as a user runs it: a real process against real servers."""

import os
import subprocess
import sys
import wave

from audio_checks import assert_speech_like, pcm16
from conftest import REPO, free_port

CALL = [sys.executable, str(REPO / "client" / "call.py")]


def run(*args, env=None, timeout=120):
    return subprocess.run([*CALL, *args], capture_output=True, timeout=timeout, env=env or os.environ.copy())


def test_out_writes_a_playable_wav(piper, tmp_path):
    out = tmp_path / "hello.wav"
    text = "Hello from the client test, one two three."
    result = run(text, "--url", piper.base_url, "--out", str(out), "--sample-rate", "16000")
    assert result.returncode == 0, result.stderr.decode()
    stderr = result.stderr.decode()
    assert "first audio byte:" in stderr and "total:" in stderr
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        samples = pcm16(w.readframes(w.getnframes()))
    assert_speech_like(samples, 16000, words=len(text.split()))
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,sample_rate",
            "-of",
            "csv=p=0",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "pcm_s16le,16000"


def test_raw_writes_pcm_to_stdout(piper):
    result = run("Raw output.", "--url", piper.predict_url, "--raw")
    assert result.returncode == 0
    assert_speech_like(pcm16(result.stdout), 24000, words=2)


def test_extra_fields_reach_the_model(piper):
    slow = run("Measure my length.", "--url", piper.base_url, "--raw", "--field", "speed=0.6")
    fast = run("Measure my length.", "--url", piper.base_url, "--raw", "--field", "speed=1.8")
    assert len(fast.stdout) < 0.6 * len(slow.stdout)


def test_unreachable_server(tmp_path):
    result = run("Hi", "--url", f"http://127.0.0.1:{free_port()}", "--out", str(tmp_path / "x.wav"))
    assert result.returncode == 2
    assert b"cannot reach" in result.stderr and b"local_truss serve" in result.stderr
    assert not (tmp_path / "x.wav").exists()


def test_http_error_shows_the_server_message(piper, tmp_path):
    result = run("Hi", "--url", piper.base_url, "--voice", "nobody", "--out", str(tmp_path / "x.wav"))
    assert result.returncode == 3
    assert b"HTTP 422" in result.stderr and b"unknown voice 'nobody'" in result.stderr


def test_missing_ffplay_says_how_to_fix_it(piper):
    env = {**os.environ, "PATH": "/nonexistent"}
    result = run("Hi", "--url", piper.base_url, env=env)
    assert result.returncode == 4
    assert b"apt-get install ffmpeg" in result.stderr and b"--out" in result.stderr


def test_stream_cut_short_is_an_error_and_leaves_no_file(faults, tmp_path):
    out = tmp_path / "cut.wav"
    result = run(
        "x", "--url", faults.base_url, "--out", str(out), "--field", "chunks=10", "--field", "fail_after=3"
    )
    assert result.returncode == 5
    assert b"cut short" in result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_baseten_url_and_key_handling():
    sys.path.insert(0, str(REPO / "client"))
    import call

    assert call.predict_url(None, "abc123") == (
        "https://model-abc123.api.baseten.co/environments/production/predict"
    )
    assert call.predict_url("http://localhost:8080", None).endswith("/v1/models/model:predict")
    full = "https://model-x.api.baseten.co/environments/production/predict"
    assert call.predict_url(full, None) == full
    env = {k: v for k, v in os.environ.items() if k != "BASETEN_API_KEY"}
    result = run("Hi", "--model-id", "abc123", "--out", "/dev/null", env=env)
    assert result.returncode == 3 and b"BASETEN_API_KEY" in result.stderr


def test_api_key_reaches_a_self_hosted_server(faults_with_key, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "BASETEN_API_KEY"}
    out = tmp_path / "key.wav"
    args = ("x", "--url", faults_with_key.base_url, "--out", str(out), "--field", "chunks=2")
    refused = run(*args, env=env)
    assert refused.returncode == 3 and b"HTTP 401" in refused.stderr and b"API key" in refused.stderr
    assert not out.exists()
    result = run(*args, "--api-key", faults_with_key.api_key, env=env)
    assert result.returncode == 0, result.stderr.decode()
    with wave.open(str(out)) as w:
        assert w.getnframes() == 2 * 2400  # two 100 ms chunks at 24 kHz
