"""Every knob a Truss reads, in one place: typed, with its default, read once at load.

Environment variables come from config.yaml's `environment_variables` (a deployment
changes them without a rebuild); `model_metadata` holds what describes the model
itself. Each class reads one Truss's (or one shared module's) knobs; the README's
settings table lists the same names and defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Final, Self

_TRUE: Final = ("1", "true", "yes")


# Counts that may be zero (every other number must be positive).
_ZERO_ALLOWED: Final = frozenset({"TTS_CPU_SPARE_LANES"})


def _number(name: str, raw: str, kind: type[int] | type[float]) -> int | float:
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a {kind.__name__}, not {raw!r}") from None
    if value < 0 or (value == 0 and name not in _ZERO_ALLOWED):
        raise ValueError(
            f"{name} must be {'at least 0' if name in _ZERO_ALLOWED else 'positive'}, not {raw!r}"
        )
    return value


def _read(cls: type[Any], names: Mapping[str, str], source: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `cls` found in `source` under `names[field]`, converted to the
    field's declared type; absent or blank values keep the class default."""
    values: dict[str, Any] = {}
    for spec in fields(cls):
        name = names.get(spec.name)
        if name is None or source.get(name) is None:
            continue
        raw = str(source[name]).strip()
        if not raw:
            continue
        kind = str(spec.type).replace(" | None", "")
        if kind == "bool":
            values[spec.name] = raw.lower() in _TRUE
        elif kind in ("int", "float"):
            values[spec.name] = _number(name, raw, int if kind == "int" else float)
        else:
            values[spec.name] = raw
    return values


class _Settings:
    """Reads a frozen dataclass's fields: `_ENV` names their environment variables,
    `_METADATA` the fields read from model_metadata (under their own names),
    `_CHOICES` the words a text field takes."""

    _ENV: ClassVar[dict[str, str]] = {}
    _METADATA: ClassVar[tuple[str, ...]] = ()
    _CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def load(cls, metadata: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> Self:
        values = {
            **_read(cls, {key: key for key in cls._METADATA}, metadata),
            **_read(cls, cls._ENV, environ),
        }
        for field, choices in cls._CHOICES.items():
            if field in values:
                values[field] = values[field].lower()
                if values[field] not in choices:
                    raise ValueError(
                        f"{cls._ENV[field]} must be one of {', '.join(choices)}, not {values[field]!r}"
                    )
        return cls(**values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Self:
        return cls.load({}, environ)


@dataclass(frozen=True)
class ServingSettings(_Settings):
    """Admission and stream limits of the shared serving code (`streaming.py`)."""

    # Syntheses at once in one replica; more wait for a slot.
    max_streams: int = 1
    # Longest wait for a slot before 503 (kept under the LiveKit plugin's 10 s read
    # timeout, so the plugin hears the 503 and can retry elsewhere).
    queue_timeout_s: float = 8.0
    # Audio a stream may hold in the server beyond what its connection has taken:
    # synthesis pauses there until the client reads (backpressure).
    max_ahead_s: float = 4.0
    # A client that takes no audio for this long is cut and its slot freed.
    read_timeout_s: float = 30.0
    # A synthesis that yields nothing for this long is aborted; the replica reports
    # unhealthy until that work returns.
    stall_timeout_s: float = 60.0
    # Largest request body (enough for an 8 MB reference clip in base64 plus text).
    max_body_bytes: int = 12 * 1024 * 1024
    # Admission by load, for a model that measures it (piper's CPU lanes): a new
    # request starts at once unless some stream's CPU work is due to be served more
    # than this past its listener's need; then it waits up to `overload_wait_s`
    # for the model to catch up, and is refused (503, Retry-After) after that.
    admit_behind_s: float = 0.25
    overload_wait_s: float = 1.0

    _ENV: ClassVar[dict[str, str]] = {
        "max_streams": "TTS_MAX_STREAMS",
        "queue_timeout_s": "TTS_QUEUE_TIMEOUT_S",
        "max_ahead_s": "TTS_MAX_AHEAD_S",
        "read_timeout_s": "TTS_READ_TIMEOUT_S",
        "stall_timeout_s": "TTS_STALL_TIMEOUT_S",
        "max_body_bytes": "TTS_MAX_BODY_BYTES",
        "admit_behind_s": "TTS_ADMIT_BEHIND_S",
        "overload_wait_s": "TTS_OVERLOAD_WAIT_S",
    }


@dataclass(frozen=True)
class RealtimeSettings(_Settings):
    """The WebSocket (realtime) sessions' own bounds (`realtime_session.py`); their
    admission, backpressure, read and stall limits are ServingSettings'."""

    # A socket that has sent no valid session.config this long after it opened is closed.
    config_timeout_s: float = 10.0
    # A configured session with nothing in flight that hears nothing this long is closed
    # (the LiveKit plugin keeps a parked socket alive with an empty input.done every 15 s).
    idle_timeout_s: float = 30.0
    # Largest client message (UTF-8 bytes of one text frame).
    max_message_bytes: int = 1024 * 1024
    # Text received but not yet synthesized, in characters: input.text beyond it is refused.
    max_buffered_chars: int = 20000
    # While the listener has less audio in hand than this, a sentence still arriving is
    # started at a clause break it already has (a comma, say) instead of waiting for its end.
    eager_below_s: float = 1.0

    _ENV: ClassVar[dict[str, str]] = {
        "config_timeout_s": "TTS_WS_CONFIG_TIMEOUT_S",
        "idle_timeout_s": "TTS_WS_IDLE_TIMEOUT_S",
        "max_message_bytes": "TTS_WS_MAX_MESSAGE_BYTES",
        "max_buffered_chars": "TTS_WS_MAX_BUFFERED_CHARS",
        "eager_below_s": "TTS_WS_EAGER_BELOW_S",
    }


@dataclass(frozen=True)
class CpuSettings(_Settings):
    """CPU lanes for model work on CPU-only Trusses (`cpu_lanes.py`)."""

    # Lanes (one ONNX run each) at once; None: the cores this process may run on.
    lanes: int | None = None
    # Extra lanes an urgent stream may take when every lane is busy.
    spare_lanes: int = 1

    _ENV: ClassVar[dict[str, str]] = {"lanes": "TTS_CPU_LANES", "spare_lanes": "TTS_CPU_SPARE_LANES"}


@dataclass(frozen=True)
class PiperSettings(_Settings):
    """piper-streaming's own knobs."""

    # Most ONNX threads one run may use; None: one per CPU lane.
    max_threads: int | None = None
    # The name requests may give as `voice`; the weights are always the bundled voice.
    voice: str = "en_US-joe-medium"

    _ENV: ClassVar[dict[str, str]] = {"max_threads": "PIPER_MAX_THREADS"}
    _METADATA: ClassVar[tuple[str, ...]] = ("voice",)


XTTS_STREAM_DECODERS: Final = ("incremental", "stock")


@dataclass(frozen=True)
class XttsSettings(_Settings):
    """xtts-streaming's own knobs (environment and model_metadata)."""

    # DeepSpeed inference on CUDA (deepspeed must be in the requirements).
    deepspeed: bool = False
    # fp16 autocast on CUDA.
    half: bool = False
    # "incremental": constant-cost chunk decode; "stock": Xtts.inference_stream.
    stream_decoder: str = "incremental"
    # Voice used when a request names none ("": the first voice found).
    default_voice: str = ""
    # Cloned voices (reference clips) kept in the speaker cache.
    max_cloned_voices: int = 64

    _ENV: ClassVar[dict[str, str]] = {
        "deepspeed": "XTTS_DEEPSPEED",
        "half": "XTTS_HALF",
        "stream_decoder": "XTTS_STREAM_DECODER",
    }
    _METADATA: ClassVar[tuple[str, ...]] = ("default_voice", "max_cloned_voices")
    _CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"stream_decoder": XTTS_STREAM_DECODERS}


PARLER_DTYPES: Final = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ParlerSettings(_Settings):
    """parler-batch's own knobs (environment and model_metadata); its queue timeout
    and body limit are ServingSettings'."""

    # "auto": bfloat16 on GPUs that have it, float16 on others, float32 on CPU.
    dtype: str = "auto"
    # torch.compile the decoder with a static cache; each new batch shape compiles once.
    compile: bool = False
    compile_mode: str = "reduce-overhead"
    # Items one request may carry.
    max_batch_items: int = 16
    # Items one generate() call may carry.
    max_generate_batch: int = 16
    # Prompts are left-padded to a multiple of this many tokens (reproducible seeds).
    prompt_bucket_tokens: int = 32

    _ENV: ClassVar[dict[str, str]] = {
        "dtype": "PARLER_DTYPE",
        "compile": "PARLER_COMPILE",
        "compile_mode": "PARLER_COMPILE_MODE",
    }
    _METADATA: ClassVar[tuple[str, ...]] = ("max_batch_items", "max_generate_batch", "prompt_bucket_tokens")
    _CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"dtype": PARLER_DTYPES}
