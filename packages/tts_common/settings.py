"""Serving limits, read once from the environment (config.yaml's
`environment_variables`, so a deployment changes them without a rebuild).

Every knob the shared serving code reads is declared here, with its default; the
README's settings table lists the same names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ServingSettings:
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

    _ENV = {
        "max_streams": "TTS_MAX_STREAMS",
        "queue_timeout_s": "TTS_QUEUE_TIMEOUT_S",
        "max_ahead_s": "TTS_MAX_AHEAD_S",
        "read_timeout_s": "TTS_READ_TIMEOUT_S",
        "stall_timeout_s": "TTS_STALL_TIMEOUT_S",
        "max_body_bytes": "TTS_MAX_BODY_BYTES",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServingSettings:
        values: dict[str, float | int] = {}
        for spec in fields(cls):
            name = cls._ENV[spec.name]
            raw = environ.get(name, "").strip()
            if not raw:
                continue
            kind = int if spec.type == "int" else float
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"{name} must be a {kind.__name__}, not {raw!r}") from None
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {raw!r}")
            values[spec.name] = value
        return cls(**values)  # type: ignore[arg-type]
