"""TTS metrics in prometheus_client's default registry, which truss's server
serves at `/metrics` next to its own.

Names follow Prometheus conventions: a `tts_` prefix, base units (seconds),
`_total` on counters. Labels stay few and bounded: `model` is the Truss's
`model_name` from config.yaml; `outcome` and `code` come from a fixed set. No
text, no voice names from requests.

Outcomes of a request (`tts_requests_total{outcome, code}`):
  ok           the whole answer was sent (200)
  rejected     refused before any work (4xx: 400, 401, 413, 422)
  busy         no synthesis slot within the queue timeout (503)
  error        failed before its first audio (500)
  client_gone  the client left: while waiting for a slot or its first audio
               (499), or mid-stream (200)
  cut          the server cut a stream it had started: synthesis failed or
               stalled mid-stream, or the client took no audio for the read
               timeout (200, the body ends without its terminating chunk)
"""

from __future__ import annotations

import enum
from typing import Final

from prometheus_client import Counter, Gauge, Histogram


class Outcome(enum.Enum):
    ok = "ok"
    rejected = "rejected"
    busy = "busy"
    error = "error"
    client_gone = "client_gone"
    cut = "cut"


# Seconds: first audio is worth resolving from 50 ms to a few seconds.
_LATENCY_BUCKETS: Final = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
# Real-time factor: under 1 is faster than real time.
_RTF_BUCKETS: Final = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)
_BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64)

REQUESTS: Final = Counter(
    "tts_requests_total",
    "Predict requests by outcome (ok, rejected, busy, error, client_gone, cut) and HTTP status code.",
    ["model", "outcome", "code"],
)
TIME_TO_FIRST_AUDIO: Final = Histogram(
    "tts_time_to_first_audio_seconds",
    "From the request's arrival to its first audio ready to send (validation and queue wait included).",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
AUDIO: Final = Counter("tts_audio_seconds_total", "Seconds of audio synthesized.", ["model"])
REAL_TIME_FACTOR: Final = Histogram(
    "tts_real_time_factor",
    "Per stream: seconds in the model per second of audio it produced (under 1: faster than real time).",
    ["model"],
    buckets=_RTF_BUCKETS,
)
IN_FLIGHT: Final = Gauge(
    "tts_streams_in_flight", "Syntheses holding a slot now (at most TTS_MAX_STREAMS).", ["model"]
)
WAITING: Final = Gauge("tts_streams_waiting", "Requests waiting for a synthesis slot now.", ["model"])
QUEUE_WAIT: Final = Histogram(
    "tts_queue_wait_seconds",
    "Time a request waited for its synthesis slot (admitted requests).",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
VOICE_CACHE: Final = Counter(
    "tts_voice_cache_lookups_total",
    "Cloned-voice (reference clip) cache lookups, by result: hit or miss.",
    ["model", "result"],
)
BATCH_ITEMS: Final = Histogram(
    "tts_batch_items", "Items per batch request (parler-batch).", ["model"], buckets=_BATCH_BUCKETS
)


class ModelMetrics:
    """The metrics above with one model's label applied."""

    def __init__(self, model: str):
        self.model = model
        self.time_to_first_audio = TIME_TO_FIRST_AUDIO.labels(model)
        self.audio_seconds = AUDIO.labels(model)
        self.real_time_factor = REAL_TIME_FACTOR.labels(model)
        self.in_flight = IN_FLIGHT.labels(model)
        self.waiting = WAITING.labels(model)
        self.queue_wait = QUEUE_WAIT.labels(model)
        self.batch_items = BATCH_ITEMS.labels(model)

    def request(self, outcome: Outcome, code: int) -> None:
        REQUESTS.labels(self.model, outcome.value, str(code)).inc()

    def voice_cache(self, hit: bool) -> None:
        VOICE_CACHE.labels(self.model, "hit" if hit else "miss").inc()


def outcome_of(code: int) -> Outcome:
    """The outcome of a request answered with `code` before any audio."""
    if code == 200:
        return Outcome.ok
    if code == 503:
        return Outcome.busy
    if code == 499:
        return Outcome.client_gone
    if code >= 500:
        return Outcome.error
    return Outcome.rejected
