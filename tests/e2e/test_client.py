"""client/call.py as a user runs it: a real process against real servers."""

import http.server
import os
import subprocess
import sys
import threading
import wave

import pytest
from audio_checks import assert_speech_like, decode, ffprobe, pcm16
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
    assert ffprobe(out.read_bytes()) == {"codec_name": "pcm_s16le", "sample_rate": "16000"}


@pytest.mark.parametrize(("fmt", "codec"), [("opus", "opus"), ("mp3", "mp3")])
def test_a_compressed_format_is_saved_as_streamed(piper, tmp_path, fmt, codec):
    out = tmp_path / f"hello.{fmt}"
    text = "Hello from the client test, one two three."
    result = run(text, "--url", piper.base_url, "--format", fmt, "--out", str(out))
    assert result.returncode == 0, result.stderr.decode()
    assert ffprobe(out.read_bytes())["codec_name"] == codec
    assert_speech_like(decode(out.read_bytes(), 24000), 24000, words=len(text.split()))


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


@pytest.mark.parametrize("url", ["http://192.0.2.1:8080", "ws://tts.example.invalid:8080"])
def test_the_key_is_refused_in_the_clear_to_another_host_unless_allowed(url):
    """192.0.2.1 (TEST-NET) would hang, an .invalid name would not resolve: the
    refusal comes first, naming the way out."""
    refused = run("Hi", "--url", url, "--api-key", "k-secret", "--out", "/dev/null", timeout=20)
    assert refused.returncode == 3 and b"refusing to send the API key" in refused.stderr
    assert b"--allow-insecure" in refused.stderr
    allowed = run(
        "Hi",
        "--url",
        url,
        "--api-key",
        "k-secret",
        "--allow-insecure",
        "--timeout",
        "2",
        "--out",
        "/dev/null",
    )
    assert allowed.returncode in (2, 3) and b"refusing" not in allowed.stderr  # tried, and could not reach


def test_a_redirect_to_another_host_does_not_carry_the_key(tmp_path):
    """127.0.0.1 redirects (307) to localhost: another host to the client, which
    must not forward Authorization there."""
    seen: dict[str, str | None] = {}

    class Target(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen["authorization"] = self.headers.get("Authorization")
            self.send_response(200)
            self.send_header("Content-Length", "4800")
            self.end_headers()
            self.wfile.write(bytes(4800))

        def log_message(self, *args):
            pass

    target = http.server.ThreadingHTTPServer(("localhost", 0), Target)
    target_url = f"http://localhost:{target.server_address[1]}/v1/models/model:predict"

    class Redirect(Target):
        def do_POST(self):
            self.send_response(307)
            self.send_header("Location", target_url)
            self.send_header("Content-Length", "0")
            self.end_headers()

    origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    for server in (target, origin):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = tmp_path / "redirected.wav"
        url = f"http://127.0.0.1:{origin.server_address[1]}"
        result = run("Hi", "--url", url, "--api-key", "k-secret", "--out", str(out), timeout=30)
    finally:
        for server in (target, origin):
            server.shutdown()
    assert result.returncode == 0, result.stderr.decode()
    assert seen == {"authorization": None}
