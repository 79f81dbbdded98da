"""piper-streaming admits by CPU load, not by a count of streams, and a short
request is served ahead of long streams that are ahead of their listeners.
Real truss server, real HTTP; the assertions are about order and outcome, not
wall-clock limits (bench/sessions.py measures the times)."""

import threading
import time

import pytest
import requests

SHORT = "This is a test of the real-time text-to-speech synthesis system."
LONG = ("The quick brown fox jumps over the lazy dog, and keeps on running. " * 80)[:5000]
# One long sentence: a stream's first turn runs the prior over all of it (about 330
# characters), so a burst of them is far more first-turn work than one lane can start
# in time, however fast the machine is that day.
LONG_SENTENCE = ", ".join(["the quick brown fox jumps over the lazy dog and keeps on running"] * 5) + "."


class LongStream:
    """A client reading a 5000-character stream as fast as it can (every CPU lane
    wanted, all the time), until told to stop."""

    def __init__(self, url: str):
        self.url = url
        self.received = 0
        self.status: int | None = None
        self.finished = False  # the whole answer arrived
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with requests.post(self.url, json={"text": LONG}, stream=True, timeout=120) as r:
                self.status = r.status_code
                for chunk in r.iter_content(chunk_size=None):
                    self.received += len(chunk)
                    if self.stop.is_set():
                        return
                self.finished = True
        except BaseException as exc:  # reported by the test
            self.error = exc


def first_audio(url: str, body: dict) -> tuple[int, requests.structures.CaseInsensitiveDict, bytes, float]:
    """Status, headers, the whole body, and the moment its first bytes came."""
    with requests.post(url, json=body, stream=True, timeout=120) as r:
        chunks, first = [], None
        for chunk in r.iter_content(chunk_size=None):
            first = first if first is not None else time.monotonic()
            chunks.append(chunk)
        return r.status_code, r.headers, b"".join(chunks), first or time.monotonic()


def test_a_fifth_short_request_is_served_while_four_long_streams_run(piper):
    longs = [LongStream(piper.predict_url) for _ in range(4)]
    try:
        while not all(s.received or s.error for s in longs):
            time.sleep(0.05)
        assert all(s.status == 200 for s in longs), [(s.status, s.error) for s in longs]
        before = [s.received for s in longs]
        status, _, body, _ = first_audio(piper.predict_url, {"text": SHORT})
        # Admitted at once and spoken whole while every long stream still streams:
        # no count of four streams holds it back, and the long streams' work does
        # not starve it (its chunks go ahead of theirs: they are ahead of playback).
        assert status == 200
        assert len(body) / 2 / 24000 > 2.0
        assert not any(s.finished or s.error for s in longs)
        # and they go on streaming
        give_up = time.monotonic() + 60
        while not all(s.received > b for s, b in zip(longs, before, strict=True)):
            assert time.monotonic() < give_up and not any(s.error for s in longs)
            time.sleep(0.05)
    finally:
        for s in longs:
            s.stop.set()
        for s in longs:
            s.thread.join(30)


@pytest.fixture(scope="module")
def piper_one_lane(serve):
    """One CPU lane and no spare: a burst of new streams is more work than it can
    start in time."""
    return serve(
        "piper-streaming",
        extra_env={
            "TTS_CPU_LANES": "1",
            "TTS_CPU_SPARE_LANES": "0",
            "PIPER_MAX_THREADS": "1",
            "TTS_ADMIT_BEHIND_S": "0.1",
            "TTS_OVERLOAD_WAIT_S": "0.5",
        },
        name="piper-one-lane",
    )


def test_true_overload_is_refused_quickly_with_retry_after(piper_one_lane):
    url = piper_one_lane.predict_url
    burst: list[tuple[int, float]] = []

    def new_stream() -> None:
        status, _, _, first = first_audio(url, {"text": LONG_SENTENCE})
        burst.append((status, first))

    threads = [threading.Thread(target=new_stream) for _ in range(20)]
    for thread in threads:
        thread.start()
    time.sleep(0.4)  # the burst's first turns now wait on the one lane
    sent = time.monotonic()
    status, headers, body, answered = first_audio(url, {"text": SHORT})
    for thread in threads:
        thread.join(120)
    assert status == 503, body
    assert headers.get("Retry-After") == "1"
    assert b"overloaded" in body
    # refused before the queue timeout (8 s) a fixed slot count would wait, and
    # before the burst it arrived behind had all started speaking
    assert answered - sent < 8.0
    assert answered < max(first for _, first in burst)
    # the work it was refused for was served
    assert [s for s, _ in burst].count(200) >= 1
    # once the burst is over, the same replica takes requests again
    assert first_audio(url, {"text": SHORT})[0] == 200
