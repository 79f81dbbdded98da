"""Validation and decoding of a reference clip sent for zero-shot voice cloning.

The header is read first: format, sample rate, channels and duration are checked
before a sample is decoded, so a clip's cost is bounded before any work is done.
Resampling uses soxr, whose cost is linear in the clip's length whatever the
rate (a polyphase resampler's kernel grows with the rates' least common multiple:
a 3 s clip at 96001 Hz once took 23 GB).
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

import numpy as np

from .audio import resample_clip
from .contract import field_error

MIN_REFERENCE_S = 1.0
MAX_REFERENCE_S = 30.0
MAX_REFERENCE_BYTES = 8 * 1024 * 1024  # 30 s of 48 kHz stereo 16-bit is 5.5 MB
MIN_REFERENCE_RATE = 8000
MAX_REFERENCE_RATE = 192000
MAX_REFERENCE_CHANNELS = 2
# WAV (plain or WAVE_FORMAT_EXTENSIBLE) holding integer PCM or float samples.
_WAV_FORMATS = frozenset({"WAV", "WAVEX"})
_WAV_SUBTYPES = frozenset({"PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"})


@dataclass(frozen=True)
class ReferenceClip:
    raw: bytes  # the file as sent: its hash keys the speaker cache
    samples: np.ndarray  # mono float32 at `rate`
    rate: int


def to_mono(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """(frames, channels) float samples -> mono float32 at `target_rate`."""
    return resample_clip(np.ascontiguousarray(samples.mean(axis=1), dtype=np.float32), rate, target_rate)


def decode_reference_wav(encoded: str, target_rate: int, field: str = "speaker_wav") -> ReferenceClip:
    """Base64 WAV -> ReferenceClip at `target_rate`, or a 422 naming `field`."""
    import soundfile  # only the cloning Trusses need it

    if len(encoded) > MAX_REFERENCE_BYTES * 4 // 3 + 4:
        raise field_error(field, f"larger than {MAX_REFERENCE_BYTES // (1024 * 1024)} MB")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise field_error(field, "is not valid base64") from None
    try:
        info = soundfile.info(io.BytesIO(raw))
    except Exception:  # soundfile raises its own error types per format
        raise field_error(field, "is not a readable audio file (send a base64 WAV)") from None
    if info.format not in _WAV_FORMATS or info.subtype not in _WAV_SUBTYPES:
        raise field_error(
            field, f"is {info.format} {info.subtype}; send a WAV file of integer PCM or float samples"
        )
    if not MIN_REFERENCE_RATE <= info.samplerate <= MAX_REFERENCE_RATE:
        raise field_error(
            field,
            f"has a sample rate of {info.samplerate} Hz; "
            f"{MIN_REFERENCE_RATE} to {MAX_REFERENCE_RATE} Hz is accepted",
        )
    if not 1 <= info.channels <= MAX_REFERENCE_CHANNELS:
        raise field_error(field, f"has {info.channels} channels; mono or stereo is accepted")
    seconds = info.frames / info.samplerate
    if not MIN_REFERENCE_S <= seconds <= MAX_REFERENCE_S:
        raise field_error(
            field,
            f"is {seconds:.2f} s long; a reference clip must be {MIN_REFERENCE_S:g} to {MAX_REFERENCE_S:g} s",
        )
    try:
        samples, rate = soundfile.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    except Exception:
        raise field_error(field, "could not be decoded (a damaged WAV file?)") from None
    if len(samples) / rate < MIN_REFERENCE_S:  # the header promised more than the file holds
        raise field_error(field, f"holds only {len(samples) / rate:.2f} s of audio")
    if not np.isfinite(samples).all() or np.max(np.abs(samples)) < 1e-4:
        raise field_error(field, "is silent")
    return ReferenceClip(raw=raw, samples=to_mono(samples, rate, target_rate), rate=target_rate)
