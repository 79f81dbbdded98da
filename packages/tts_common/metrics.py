"""TTS metrics in prometheus_client's default registry, which truss's server
serves at `/metrics` next to its own.

Names follow Prometheus conventions: a `tts_` prefix, base units (seconds),
`_total` on counters. Labels stay few and bounded: `model` is the Truss's
`model_name` from config.yaml; `transport`, `outcome` and `code` come from fixed
sets. No text, no voice names from requests.

Three counters say how things ended, each counted in one place:
- `tts_utterances_total{transport, outcome}`: every synthesis run, counted by the
  serving core (`synthesis.py`) whatever the transport: an HTTP request's stream
  or a WebSocket unit (UtteranceOutcome);
- `tts_requests_total{outcome, code}`: HTTP requests, counted by the HTTP
  transport (Outcome);
- `tts_sessions_total{outcome}`: WebSocket sessions, counted by the WebSocket
  transport (SessionOutcome).
"""

from __future__ import annotations

import enum
from typing import Final

from prometheus_client import Counter, Gauge, Histogram


class Transport(enum.Enum):
    http = "http"  # our contract (streaming.py)
    websocket = "websocket"  # the realtime protocol (realtime_session.py)
    openai = "openai"  # OpenAI's speech API, over the HTTP transport (openai_speech.py)


class Outcome(enum.Enum):
    """How an HTTP request ended."""

    ok = "ok"  # the whole answer was sent (200)
    rejected = "rejected"  # refused before any work (400, 413, 422)
    unauthorized = "unauthorized"  # no or wrong API key (401)
    busy = "busy"  # no synthesis slot within the queue timeout (503)
    error = "error"  # failed before its first audio (500)
    client_gone = "client_gone"  # left while waiting (499) or mid-stream (200)
    cut = "cut"  # a started stream the server cut: failed, stalled, or unread (200)


class SessionOutcome(enum.Enum):
    """How a WebSocket session ended."""

    ok = "ok"  # the client closed it, or sent session.close
    client_gone = "client_gone"  # the connection dropped, or failed while sending
    error = "error"  # a fatal error event: a stalled synthesis, a failed session
    timeout = "timeout"  # no session.config, idle, or a client that read nothing in time
    unauthorized = "unauthorized"  # no or wrong API key
    rejected = "rejected"  # closed for breaking the protocol: a frame over its size limit
    cut = "cut"  # the client took audio too slowly while holding a slot (minimum drain rate)
    busy = "busy"  # refused: the replica had TTS_WS_MAX_SESSIONS sessions open


class UtteranceOutcome(enum.Enum):
    """How one synthesis run ended (the serving core's view)."""

    ok = "ok"  # all its audio was made
    cancelled = "cancelled"  # stopped early: the client left, barged in or was cut
    error = "error"  # the model raised
    stalled = "stalled"  # the watchdog abandoned it
    cut = "cut"  # its client took audio too slowly (minimum drain rate): stopped, slot freed
    busy = "busy"  # refused admission: no slot, or the model stayed overloaded


# Seconds: first audio is worth resolving from 50 ms to a few seconds.
_LATENCY_BUCKETS: Final = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
# Real-time factor: under 1 is faster than real time.
_RTF_BUCKETS: Final = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)
_BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64)

REQUESTS: Final = Counter(
    "tts_requests_total",
    "HTTP requests by outcome (ok, rejected, unauthorized, busy, error, client_gone, cut) and status code.",
    ["model", "outcome", "code"],
)
SESSIONS: Final = Counter(
    "tts_sessions_total",
    "WebSocket sessions by how they ended "
    "(ok, client_gone, error, timeout, unauthorized, rejected, cut, busy).",
    ["model", "outcome"],
)
UTTERANCES: Final = Counter(
    "tts_utterances_total",
    "Synthesis runs (HTTP streams, WebSocket units) by outcome (ok, cancelled, error, stalled, busy, cut).",
    ["model", "transport", "outcome"],
)
TIME_TO_FIRST_AUDIO: Final = Histogram(
    "tts_time_to_first_audio_seconds",
    "To a run's first audio ready to send: HTTP from the request's arrival, WebSocket from the unit's "
    "text being complete (queue wait included).",
    ["model", "transport"],
    buckets=_LATENCY_BUCKETS,
)
AUDIO: Final = Counter("tts_audio_seconds_total", "Seconds of audio synthesized.", ["model", "transport"])
REAL_TIME_FACTOR: Final = Histogram(
    "tts_real_time_factor",
    "Per run: seconds in the model per second of audio it produced (under 1: faster than real time).",
    ["model", "transport"],
    buckets=_RTF_BUCKETS,
)
IN_FLIGHT: Final = Gauge(
    "tts_streams_in_flight", "Syntheses holding a slot now (at most TTS_MAX_STREAMS).", ["model"]
)
SESSIONS_OPEN: Final = Gauge(
    "tts_sessions_open", "WebSocket sessions open now (at most TTS_WS_MAX_SESSIONS).", ["model"]
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
        self.in_flight = IN_FLIGHT.labels(model)
        self.waiting = WAITING.labels(model)
        self.sessions_open = SESSIONS_OPEN.labels(model)
        self.queue_wait = QUEUE_WAIT.labels(model)
        self.batch_items = BATCH_ITEMS.labels(model)

    def request(self, outcome: Outcome, code: int) -> None:
        REQUESTS.labels(self.model, outcome.value, str(code)).inc()

    def session(self, outcome: SessionOutcome) -> None:
        SESSIONS.labels(self.model, outcome.value).inc()

    def utterance(self, transport: Transport, outcome: UtteranceOutcome) -> None:
        UTTERANCES.labels(self.model, transport.value, outcome.value).inc()

    def first_audio(self, transport: Transport, seconds: float) -> None:
        TIME_TO_FIRST_AUDIO.labels(self.model, transport.value).observe(seconds)

    def audio(self, transport: Transport, seconds: float) -> None:
        AUDIO.labels(self.model, transport.value).inc(seconds)

    def real_time_factor(self, transport: Transport, factor: float) -> None:
        REAL_TIME_FACTOR.labels(self.model, transport.value).observe(factor)

    def voice_cache(self, hit: bool) -> None:
        VOICE_CACHE.labels(self.model, "hit" if hit else "miss").inc()


def outcome_of(code: int) -> Outcome:
    """The outcome of a request answered with `code` before any audio."""
    if code == 200:
        return Outcome.ok
    if code == 401:
        return Outcome.unauthorized
    if code == 503:
        return Outcome.busy
    if code == 499:
        return Outcome.client_gone
    if code >= 500:
        return Outcome.error
    return Outcome.rejected
