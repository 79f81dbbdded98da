"""The TTS metrics truss's server serves at /metrics, after known traffic to the
fault-streaming test Truss. The server is shared by the session's other tests, so
every check compares a scrape before with one after."""

from __future__ import annotations

import threading

import pytest
import requests
from metrics_scrape import Samples, requests_total, scrape, settled, value


def test_metrics_count_known_traffic_exactly(faults):
    before = scrape(faults)
    # Three complete streams of 3 x 50 ms, one 422, one stream cut after 2 chunks, one 500.
    ok = {"text": "metrics-private-words", "chunks": 3, "chunk_ms": 50, "fast": True}
    for _ in range(3):
        r = requests.post(faults.predict_url, json=ok, timeout=30)
        assert r.status_code == 200 and len(r.content) == 2 * 24000 * 150 // 1000  # PCM16 at 24 kHz
    assert requests.post(faults.predict_url, json={"text": "x", "chunks": 0}, timeout=30).status_code == 422
    with requests.post(
        faults.predict_url,
        json={"text": "x", "chunks": 4, "chunk_ms": 50, "fail_after": 2},
        stream=True,
        timeout=30,
    ) as r:
        assert r.status_code == 200
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            b"".join(r.iter_content(chunk_size=None))
    assert (
        requests.post(faults.predict_url, json={"text": "x", "fail_after": 0}, timeout=30).status_code == 500
    )

    def delta(samples: Samples, name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    after = settled(
        faults,
        lambda s: (
            delta(s, "tts_requests_total", outcome="ok", code="200") >= 3
            and delta(s, "tts_requests_total", outcome="cut", code="200") >= 1
            and delta(s, "tts_real_time_factor_count", transport="http") >= 4
        ),
    )
    assert requests_total(after, "ok", 200) - requests_total(before, "ok", 200) == 3
    assert requests_total(after, "rejected", 422) - requests_total(before, "rejected", 422) == 1
    assert requests_total(after, "cut", 200) - requests_total(before, "cut", 200) == 1
    assert requests_total(after, "error", 500) - requests_total(before, "error", 500) == 1
    for outcome, code in (("busy", 503), ("client_gone", 499), ("client_gone", 200)):
        assert requests_total(after, outcome, code) == requests_total(before, outcome, code)
    # Audio: 3 x 150 ms complete, plus the cut stream's 2 x 50 ms; the 500 made none.
    assert delta(after, "tts_audio_seconds_total", transport="http") == pytest.approx(0.55)
    # First audio and real-time factor: the four streams that sent audio.
    assert delta(after, "tts_time_to_first_audio_seconds_count", transport="http") == 4
    assert delta(after, "tts_real_time_factor_count", transport="http") == 4
    # The core counts each run: 3 whole, the cut one and the 500 failed in the model.
    for outcome, runs in (("ok", 3), ("error", 2)):
        assert delta(after, "tts_utterances_total", transport="http", outcome=outcome) == runs
    # Queue wait: every admitted request (the 422 never asked for a slot).
    assert delta(after, "tts_queue_wait_seconds_count") == 5
    assert value(after, "tts_streams_in_flight") == 0
    assert value(after, "tts_streams_waiting") == 0
    # The fast streams ran faster than real time (no sleeping between chunks).
    assert delta(after, "tts_real_time_factor_sum", transport="http") < 4
    assert "metrics-private-words" not in requests.get(faults.base_url + "/metrics", timeout=10).text


def test_metrics_show_streams_in_flight_waiting_busy_and_client_gone(faults):
    """TTS_MAX_STREAMS is 1 and TTS_QUEUE_TIMEOUT_S 1: one stream holds the slot, a
    second waits, then gets 503; the first's client leaves mid-stream."""
    before = scrape(faults)
    with requests.post(
        faults.predict_url, json={"text": "x", "chunks": 60, "chunk_ms": 100}, stream=True, timeout=30
    ) as holder:
        assert holder.status_code == 200
        holding = holder.iter_content(chunk_size=1024)
        next(holding)
        answers: list[int] = []
        waiter = threading.Thread(
            target=lambda: answers.append(
                requests.post(faults.predict_url, json={"text": "x", "chunks": 1}, timeout=30).status_code
            )
        )
        waiter.start()
        during = settled(faults, lambda s: value(s, "tts_streams_waiting") >= 1, timeout_s=5)
        assert value(during, "tts_streams_in_flight") == 1
        assert value(during, "tts_streams_waiting") == 1
        waiter.join()
        assert answers == [503]
    after = settled(
        faults,
        lambda s: (
            requests_total(s, "client_gone", 200) > requests_total(before, "client_gone", 200)
            and value(s, "tts_streams_in_flight") == 0
        ),
    )
    assert requests_total(after, "busy", 503) - requests_total(before, "busy", 503) == 1
    assert requests_total(after, "client_gone", 200) - requests_total(before, "client_gone", 200) == 1
    assert requests_total(after, "ok", 200) == requests_total(before, "ok", 200)
    assert value(after, "tts_streams_in_flight") == 0
    assert value(after, "tts_streams_waiting") == 0


def test_piper_counts_under_its_model_name(piper):
    before = scrape(piper)
    r = requests.post(piper.predict_url, json={"text": "Counted once."}, timeout=60)
    assert r.status_code == 200 and r.content

    def ok(s: Samples) -> float:
        return requests_total(s, "ok", 200, "piper-streaming") - requests_total(
            before, "ok", 200, "piper-streaming"
        )

    after = settled(piper, lambda s: ok(s) >= 1)
    assert ok(after) == 1
    first_audio = [
        value(s, "tts_time_to_first_audio_seconds_count", "piper-streaming", transport="http")
        for s in (before, after)
    ]
    assert first_audio[1] - first_audio[0] == 1
    audio = value(after, "tts_audio_seconds_total", "piper-streaming", transport="http") - value(
        before, "tts_audio_seconds_total", "piper-streaming", transport="http"
    )
    assert audio == pytest.approx(len(r.content) / 2 / 24000, abs=0.05)  # PCM16 at 24 kHz
