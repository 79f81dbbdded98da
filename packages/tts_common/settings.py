"""Every knob a Truss reads, in one place: typed, bounded, with its default.

Environment variables come from config.yaml's `environment_variables` (a deployment
changes them without a rebuild); `model_metadata` holds what describes the model
itself. Each class is a frozen pydantic model of one concern's knobs (a model's own
beside its engine, on the `Settings` base here): pydantic does
the types and bounds; `load` maps each field to where it is read and turns a bad
value into a startup error naming the variable. A Truss loads its settings once,
when it starts, and passes them down: this is the only module that reads
`os.environ`. The settings table in docs/operations.md lists the same names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError


def lower(value: Any) -> Any:
    """A before-validator: words such as a dtype are read case-insensitively."""
    return value.lower() if isinstance(value, str) else value


class Settings(BaseModel):
    """`_ENV` names the environment variable of each field read from the
    environment; `_METADATA` the fields read from model_metadata (under their own
    names). Blank or absent values keep the default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    _ENV: ClassVar[dict[str, str]] = {}
    _METADATA: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def load(cls, metadata: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> Self:
        where: dict[str, str] = {}  # field -> the name it was read under, for errors
        values: dict[str, Any] = {}
        sources = [({name: name for name in cls._METADATA}, metadata), (cls._ENV, environ)]
        for names, source in sources:
            for field, name in names.items():
                raw = source.get(name)
                if raw is None or (isinstance(raw, str) and not raw.strip()):
                    continue
                values[field] = raw.strip() if isinstance(raw, str) else raw
                where[field] = name
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = [
                f"{where.get(str(err['loc'][0]), err['loc'][0])}: {err['msg']} (got {err['input']!r})"
                for err in exc.errors(include_url=False)
            ]
            raise ValueError("bad setting: " + "; ".join(problems)) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Self:
        return cls.load({}, environ)


class ServingSettings(Settings):
    """Admission and stream limits of the serving core (`synthesis.py`), on every transport."""

    # Syntheses at once in one replica; more wait for a slot.
    max_streams: int = Field(1, ge=1)
    # Longest wait for a slot before 503 (kept under the LiveKit plugin's 10 s read
    # timeout, so the plugin hears the 503 and can retry elsewhere).
    queue_timeout_s: float = Field(8.0, gt=0)
    # Audio a stream may hold in the server beyond what its connection has taken:
    # synthesis pauses there until the client reads (backpressure).
    max_ahead_s: float = Field(4.0, gt=0)
    # A client that takes no audio for this long is cut and its slot freed.
    read_timeout_s: float = Field(30.0, gt=0)
    # A run whose audio waits for its client holds a slot for that client alone: the
    # client must take audio at this rate x real time or more, with at most
    # `drain_grace_s` of waiting to spare, or it is cut and the slot freed (0: no minimum).
    min_drain_rate: float = Field(0.5, ge=0, le=1)
    drain_grace_s: float = Field(3.0, gt=0)
    # A synthesis that yields nothing for this long is aborted; the replica reports
    # unhealthy until that work returns.
    stall_timeout_s: float = Field(60.0, gt=0)
    # Largest request body (enough for an 8 MB reference clip in base64 plus text).
    max_body_bytes: int = Field(12 * 1024 * 1024, ge=1)
    # Admission by load, for a model that measures it (piper's CPU lanes): a new
    # request starts at once unless some stream's CPU work is due to be served more
    # than this past its listener's need; then it waits up to `overload_wait_s`
    # for the model to catch up, and is refused (503, Retry-After) after that.
    admit_behind_s: float = Field(0.25, gt=0)
    overload_wait_s: float = Field(1.0, gt=0)

    _ENV: ClassVar[dict[str, str]] = {
        "max_streams": "TTS_MAX_STREAMS",
        "queue_timeout_s": "TTS_QUEUE_TIMEOUT_S",
        "max_ahead_s": "TTS_MAX_AHEAD_S",
        "read_timeout_s": "TTS_READ_TIMEOUT_S",
        "min_drain_rate": "TTS_MIN_DRAIN_RATE",
        "drain_grace_s": "TTS_DRAIN_GRACE_S",
        "stall_timeout_s": "TTS_STALL_TIMEOUT_S",
        "max_body_bytes": "TTS_MAX_BODY_BYTES",
        "admit_behind_s": "TTS_ADMIT_BEHIND_S",
        "overload_wait_s": "TTS_OVERLOAD_WAIT_S",
    }


class RealtimeSettings(Settings):
    """The WebSocket sessions' own bounds (`realtime_session.py`); their admission,
    backpressure, read and stall limits are ServingSettings'."""

    # A socket that has sent no valid session.config this long after it opened is closed.
    config_timeout_s: float = Field(10.0, gt=0)
    # A configured session with nothing in flight that hears nothing this long is closed
    # (the LiveKit plugin keeps a parked socket alive with an empty input.done every 15 s).
    idle_timeout_s: float = Field(30.0, gt=0)
    # Largest client message (UTF-8 bytes of one text frame).
    max_message_bytes: int = Field(1024 * 1024, ge=1)
    # Text received but not yet synthesized, in characters: input.text beyond it is refused.
    max_buffered_chars: int = Field(20000, ge=1)
    # Sessions open at once in one replica; more are closed at once with 1013 (try again).
    max_sessions: int = Field(128, ge=1)
    # Client messages a socket may send: `max_messages_per_s` on average, in bursts of up
    # to `message_burst` (an LLM's tokens, one input.text each); beyond, it is closed (1008).
    max_messages_per_s: float = Field(200.0, gt=0)
    message_burst: int = Field(1000, ge=1)
    # Units (sentences, and input.done flushes) queued and not yet synthesized; beyond,
    # input.text and input.done are refused until the session catches up.
    max_pending_units: int = Field(64, ge=1)
    # While the listener has less audio in hand than this, a sentence still arriving is
    # started at a clause break it already has (a comma, say) instead of waiting for its end.
    eager_below_s: float = Field(1.0, gt=0)

    _ENV: ClassVar[dict[str, str]] = {
        "config_timeout_s": "TTS_WS_CONFIG_TIMEOUT_S",
        "idle_timeout_s": "TTS_WS_IDLE_TIMEOUT_S",
        "max_message_bytes": "TTS_WS_MAX_MESSAGE_BYTES",
        "max_buffered_chars": "TTS_WS_MAX_BUFFERED_CHARS",
        "eager_below_s": "TTS_WS_EAGER_BELOW_S",
        "max_sessions": "TTS_WS_MAX_SESSIONS",
        "max_messages_per_s": "TTS_WS_MAX_MESSAGES_PER_S",
        "message_burst": "TTS_WS_MESSAGE_BURST",
        "max_pending_units": "TTS_WS_MAX_PENDING_UNITS",
    }


class CpuSettings(Settings):
    """CPU lanes for model work on CPU-only Trusses (`cpu_lanes.py`)."""

    # Lanes (one ONNX run each) at once; None: the cores this process may run on.
    lanes: int | None = Field(None, ge=1)
    # Extra lanes an urgent stream may take when every lane is busy.
    spare_lanes: int = Field(1, ge=0)

    _ENV: ClassVar[dict[str, str]] = {"lanes": "TTS_CPU_LANES", "spare_lanes": "TTS_CPU_SPARE_LANES"}


class ServerSettings(Settings):
    """Where a `docker_server` Truss's own server listens (openai_server.py)."""

    # The container listens on every interface; the local runner binds 127.0.0.1.
    host: str = "0.0.0.0"
    # None: config.yaml's docker_server.server_port (the local runner picks a free one).
    port: int | None = Field(None, ge=1, le=65535)

    _ENV: ClassVar[dict[str, str]] = {"host": "LOCAL_TRUSS_HOST", "port": "TTS_SERVER_PORT"}


def truss_secrets(
    names: Mapping[str, Any], environ: Mapping[str, str] = os.environ, folder: Path = Path("/secrets")
) -> dict[str, str]:
    """A `docker_server` Truss's secrets, as truss reads them for a Model class:
    `TRUSS_SECRET_<name>` from the environment, else the file Baseten mounts at
    /secrets/<name>. Secrets set nowhere are left out."""
    found = {}
    for name in names:
        path = folder / name
        value = environ.get(f"TRUSS_SECRET_{name}")
        if value is None and path.is_file():
            value = path.read_text()
        if value is not None:
            found[name] = value
    return found
