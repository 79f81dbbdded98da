"""Assertions about audio bytes, shared by the end-to-end tests."""

import numpy as np


def pcm16(data: bytes) -> np.ndarray:
    assert len(data) % 2 == 0, "PCM16 body has an odd number of bytes"
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def assert_speech_like(samples: np.ndarray, rate: int, words: int) -> None:
    """Not silence, and a duration a human voice could take for `words` words."""
    seconds = len(samples) / rate
    rms = float(np.sqrt(np.mean(samples**2)))
    assert rms > 0.01, f"audio is (near) silence: rms={rms:.4f}"
    assert 0.15 * words < seconds < 1.0 * words + 1.0, f"{seconds:.2f} s is implausible for {words} words"
