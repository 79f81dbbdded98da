"""Validation and decoding of a reference clip sent for zero-shot voice cloning."""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np

from .contract import field_error

MIN_REFERENCE_S = 1.0
MAX_REFERENCE_S = 30.0
MAX_REFERENCE_BYTES = 8 * 1024 * 1024  # 30 s of 48 kHz stereo 16-bit is 5.5 MB


def decode_reference_wav(
    encoded: str, field: str = "speaker_wav"
) -> tuple[bytes, np.ndarray, int]:
    """Base64 WAV -> (raw bytes, mono float32 samples, sample rate), or a 422."""
    import soundfile  # only the cloning Trusses need it

    if len(encoded) > MAX_REFERENCE_BYTES * 4 // 3 + 4:
        raise field_error(field, f"larger than {MAX_REFERENCE_BYTES // (1024 * 1024)} MB")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise field_error(field, "is not valid base64")
    try:
        samples, rate = soundfile.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    except Exception:  # soundfile raises its own error types per format
        raise field_error(field, "is not a readable audio file (send a base64 WAV)")
    mono = samples.mean(axis=1)
    seconds = len(mono) / rate
    if not MIN_REFERENCE_S <= seconds <= MAX_REFERENCE_S:
        raise field_error(
            field,
            f"is {seconds:.2f} s long; a reference clip must be "
            f"{MIN_REFERENCE_S:g} to {MAX_REFERENCE_S:g} s",
        )
    if not np.isfinite(mono).all() or np.max(np.abs(mono)) < 1e-4:
        raise field_error(field, "is silent")
    return raw, mono, rate

