"""The shared streaming machinery under faults, served by the real truss server.

The fault-streaming test Truss streams a synthetic tone through tts_common, with
faults the test picks, and can also stream through truss's own generator path so
the baseline behaviour is measured in the same run.
"""

import time

import requests
from stream_checks import assert_cut_mid_stream, events, open_stream, read_all


def test_baseline_truss_generator_hides_a_mid_stream_failure(faults):
    """Measured: truss's own generator path ends a failed stream as a clean 200."""
    with requests.post(
        faults.predict_url + "?native", json={"text": "x", "chunks": 6, "fail_after": 2}, timeout=60
    ) as r:
        status, body = r.status_code, r.content
    assert status == 200
    assert len(body) == 2 * 1600 * 2  # two 100 ms chunks at 16 kHz, then a clean end


def test_mid_stream_failure_aborts_the_body(faults):
    assert_cut_mid_stream(faults, {"text": "x", "chunks": 6, "fail_after": 2})


def test_failure_before_audio_is_a_500_with_json(faults):
    r = requests.post(faults.predict_url, json={"text": "x", "fail_after": 0}, timeout=60)
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    assert "synthesis failed" in r.json()["error"]


def test_disconnect_stops_generation_and_frees_the_slot(faults):
    """TTS_MAX_STREAMS is 1: after the client leaves, the next caller gets the slot."""
    with open_stream(faults, {"text": "x", "chunks": 300, "chunk_ms": 100}) as r:
        assert r.status_code == 200
        next(r.iter_content(chunk_size=1024))
        left_at = time.time()
    # The slot is the only one; TTS_QUEUE_TIMEOUT_S is 1, so a held slot means 503.
    deadline = time.time() + 10
    while True:
        status, _ = read_all(faults, {"text": "x", "chunks": 1, "chunk_ms": 10})
        if status == 200 or time.time() > deadline:
            break
    assert status == 200
    stopped = [e for e in events(faults) if e["event"] == "stopped" and e["of"] == 300]
    assert stopped, "the long generation never ended"
    assert stopped[-1]["cancelled"]
    assert stopped[-1]["produced"] < 100  # stopped long before its 300 chunks
    assert stopped[-1]["t"] - left_at < 3


def test_busy_server_answers_503_after_a_bounded_wait(faults):
    with open_stream(faults, {"text": "x", "chunks": 40, "chunk_ms": 100}) as holder:
        assert holder.status_code == 200
        # Keep the iterator: dropping it makes urllib3 close the connection.
        holding = holder.iter_content(chunk_size=1024)
        next(holding)
        r = requests.post(faults.predict_url, json={"text": "x", "chunks": 1}, timeout=30)
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert "busy" in r.json()["error"]


def test_config_environment_variables_and_secrets_apply(faults):
    r = requests.post(faults.predict_url + "?env", json={}, timeout=30)
    assert r.json() == {"greeting": "set-from-config", "secret": "s3cret"}
